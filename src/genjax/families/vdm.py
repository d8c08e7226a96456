"""Variational diffusion model (Kingma et al. 2021): learned schedule, continuous-time ELBO.

Training minimises the ELBO of the 8-bit data in bits/dim, the sum of a prior KL,
a 256-way reconstruction term and the continuous-time diffusion loss
(:mod:`genjax.objectives.vdm`). The noise schedule ``γ(t)`` is learned
(``config.vdm.schedule="learned"``): its endpoints γ₀, γ₁ by the ELBO, its shape by
the gradient of the diffusion loss's second moment (variance minimisation). With
``"fixed"`` it is the line from ``gamma_min`` to ``gamma_max``.

Times: the example at global position ``i`` of a batch of ``B`` gets
``t = (u + i / B) mod 1`` with one uniform ``u`` per step from the run's batch
stream (``time_sampling="low_discrepancy"``), or its own uniform (``"uniform"``).

The score network is the DDPM U-Net of ``config.unet`` predicting ε from ``z_t``
concatenated with base-2 Fourier features, with ``z_t`` added to its output (the
official code's "base measure": ε̂ = z_t is optimal as SNR → 0), and conditioned on
``1000 (γ(t) - gamma_min) / (gamma_max - gamma_min)``, the official normalised γ.

Evaluation reports the ELBO in nats and bits/dim per test example with
``num_samples`` stratified times ``t_k = (u + k / K) mod 1`` per example (an
unbiased estimate of the diffusion term; prior and reconstruction have one noise
draw each). Sampling is ancestral with ``config.vdm.sample_steps`` steps on the
learned γ, then the decoder's most likely level per pixel.
"""

import functools
import math

import jax
import jax.numpy as jnp
import ml_collections
from jax import lax

from genjax.core import fields
from genjax.core import random as genjax_random
from genjax.families import diffusion
from genjax.families.base import Family, image_data_errors, register
from genjax.models import unet as unet_models
from genjax.objectives import vdm as vdm_lib
from genjax.objectives.reductions import bits_per_dim

PICTURE_COLUMNS = 8
F = fields.Field
VDM = {
  "schedule": F("learned", "noise schedule gamma(t)", choices=vdm_lib.SCHEDULES),
  "gamma_min": F(-13.3, "gamma(0) (learned: its initial value); -log SNR_max", ge=-30, le=0),
  "gamma_max": F(5.0, "gamma(1) (learned: its initial value); -log SNR_min", ge=0, le=30),
  "schedule_features": F(
    1024, "hidden units of the learned schedule's monotone MLP", integer=True, ge=1
  ),
  "fourier_exponents": F(
    (6, 7), "n of the sin/cos(2^n 2 pi z) input features; () for none", positive_ints=True
  ),
  "time_sampling": F("low_discrepancy", "how training draws t", choices=vdm_lib.TIME_SAMPLINGS),
  "sample_steps": F(1000, "ancestral sampling steps T", integer=True, ge=1),
}


@register("vdm")
class VDMFamily(Family):
  """Variational diffusion model on 8-bit images; see the module docstring.

  Config: ``config.vdm`` (schedule, Fourier features, times, sampling steps) and
  ``config.unet`` (the ε network, shared with ``ddpm``).
  """

  can_sample = True
  sections = {"vdm": VDM, "unet": diffusion.UNET}

  def __init__(self, config: ml_collections.ConfigDict, data):
    super().__init__(config, data)
    v = config.vdm
    self.learned = v.schedule == "learned"
    self.gamma_range = (float(v.gamma_min), float(v.gamma_max))
    self.exponents = tuple(int(n) for n in v.fourier_exponents)
    self.dims = math.prod(data.shape)
    self.model = diffusion.unet(config.unet, data, 0, self.dtype, out_channels=data.shape[-1])
    self.uses_dropout = config.unet.dropout > 0

  @classmethod
  def validate(cls, c):
    errors = image_data_errors(c)
    if c.data.preprocess != "scale_pm1":
      errors.append(
        f"config.data.preprocess={c.data.preprocess!r}: the VDM's levels are read from "
        "images in [-1, 1]; use 'scale_pm1'"
      )
    return errors

  # -- network ----------------------------------------------------------------

  def init_params(self, key, batch):
    score_key, schedule_key = jax.random.split(key)
    x = batch["x"]
    inputs = self._inputs(x)
    t = jnp.zeros((x.shape[0],), jnp.float32)
    score = self.model.init(score_key, inputs, t, None, train=False)["params"]
    params = {"score": score}
    if self.learned:
      features = int(self.config.vdm.schedule_features)
      params["schedule"] = vdm_lib.init_schedule(schedule_key, *self.gamma_range, features)
    return params, {}

  def _inputs(self, z):
    if not self.exponents:
      return z
    return jnp.concatenate([z, unet_models.base2_fourier_features(z, self.exponents)], axis=-1)

  def eps_hat(self, score_params, z_t, gamma_t, keys=None):
    """ε̂(z_t; γ(t)) ``[B, ...]`` (dropout per example when ``keys`` are given)."""
    lo, hi = self.gamma_range
    t_net = 1000.0 * (gamma_t - lo) / (hi - lo)
    inputs = self._inputs(z_t)
    if keys is None or not self.uses_dropout:
      out = self.model.apply({"params": score_params}, inputs, t_net, None, train=False)
    else:

      def one(x, t, key):  # Per-example dropout masks: independent of the device split.
        variables = {"params": score_params}
        return self.model.apply(variables, x[None], t[None], train=True, rngs={"dropout": key})[0]

      out = jax.vmap(one)(inputs, t_net, keys)
    return z_t + out

  def endpoints(self, params):
    """``(γ₀, γ₁)``."""
    if not self.learned:
      return tuple(jnp.float32(g) for g in self.gamma_range)
    return params["schedule"]["gamma0"], params["schedule"]["gamma1"]

  def gamma(self, params, t):
    """γ(t) for times ``t`` (any shape)."""
    if not self.learned:
      lo, hi = self.gamma_range
      return lo + (hi - lo) * jnp.asarray(t, jnp.float32)
    return vdm_lib.gamma(params["schedule"], t)

  def _fraction_and_slope(self, params, t):
    if not self.learned:
      return t, jnp.ones_like(t)
    return vdm_lib.fraction_and_slope(params["schedule"]["shape"], t)

  # -- the bound --------------------------------------------------------------

  def _diffusion_bpd(self, params, f, t, keys, dropout_keys=None, variance=False):
    """Per-example diffusion loss at times ``t`` in bits/dim, ``[B]``."""
    eps = genjax_random.normal(keys, f.shape[1:])
    u, du = self._fraction_and_slope(params, t)
    g01 = jnp.stack(self.endpoints(params))

    def loss(u, du, g01, score, f, eps, dropout_keys):
      gamma_t = g01[0] + (g01[1] - g01[0]) * u
      eps_hat = self.eps_hat(score, vdm_lib.diffuse(f, gamma_t, eps), gamma_t, dropout_keys)
      nats = vdm_lib.diffusion_loss(eps, eps_hat, (g01[1] - g01[0]) * du)
      return bits_per_dim(nats, self.dims)

    args = (g01, params["score"], f, eps, dropout_keys)
    if variance and self.learned:
      return vdm_lib.variance_weighted(loss, u, du, *args)
    return loss(u, du, *args)

  def _edge_terms(self, params, x, keys):
    """``(levels, f, prior nats, reconstruction nats)`` per example."""
    gamma0, gamma1 = self.endpoints(params)
    levels = vdm_lib.to_levels(x)
    f = vdm_lib.encode(levels)
    eps0 = genjax_random.normal(keys, f.shape[1:])
    recon = vdm_lib.reconstruction_loss(levels, f + jnp.exp(0.5 * gamma0) * eps0, gamma0)
    return levels, f, vdm_lib.prior_kl(f, gamma1), recon

  def _train_times(self, batch, keys, step):
    if self.config.vdm.time_sampling == "uniform":
      return genjax_random.uniform(keys, ())
    stream = genjax_random.stream_key(int(self.config.seed), genjax_random.BATCH_STREAM)
    offset = jax.random.uniform(jax.random.fold_in(stream, step))
    return vdm_lib.low_discrepancy_times(offset, batch["index"], int(self.config.train.batch_size))

  def loss_fn(self, params, batch, keys, step):
    recon_keys, time_keys, noise_keys, dropout_keys = genjax_random.split(keys, 4)
    _, f, prior, recon = self._edge_terms(params, batch["x"], recon_keys)
    t = self._train_times(batch, time_keys, step)
    diff = self._diffusion_bpd(params, f, t, noise_keys, dropout_keys, variance=True)
    prior_bpd, recon_bpd = bits_per_dim(prior, self.dims), bits_per_dim(recon, self.dims)
    # The reported bound uses the diffusion loss's value; only its gradient is reshaped.
    bpd = jnp.mean(prior_bpd + recon_bpd + diff)
    gamma0, gamma1 = self.endpoints(params)
    metrics = {
      "bits_per_dim": lax.stop_gradient(bpd),
      "diffusion_bpd": lax.stop_gradient(jnp.mean(diff)),
      "recon_bpd": lax.stop_gradient(jnp.mean(recon_bpd)),
      "prior_bpd": lax.stop_gradient(jnp.mean(prior_bpd)),
      "gamma_0": lax.stop_gradient(gamma0),
      "gamma_1": lax.stop_gradient(gamma1),
    }
    return bpd, metrics

  def eval_fn(self, params, batch, keys, num_samples):
    """Per-example ELBO: ``nll`` (nats), ``bits_per_dim`` and its three terms in bits/dim.

    The diffusion term averages ``num_samples`` stratified times per example.
    """
    edge_keys, u_keys, noise_keys = genjax_random.split(keys, 3)
    _, f, prior, recon = self._edge_terms(params, batch["x"], edge_keys)
    count = max(int(num_samples), 1)
    u = genjax_random.uniform(u_keys, ())

    def body(total, k):
      t = jnp.mod(u + k / count, 1.0)
      step_keys = genjax_random.fold_in(noise_keys, k)
      return total + self._diffusion_bpd(params, f, t, step_keys), None

    diff, _ = lax.scan(body, jnp.zeros_like(prior), jnp.arange(count))
    diff = diff / count
    prior_bpd, recon_bpd = bits_per_dim(prior, self.dims), bits_per_dim(recon, self.dims)
    bpd = prior_bpd + recon_bpd + diff
    return {
      "nll": bpd * self.dims * math.log(2.0),
      "bits_per_dim": bpd,
      "diffusion_bpd": diff,
      "recon_bpd": recon_bpd,
      "prior_bpd": prior_bpd,
    }

  # -- sampling ---------------------------------------------------------------

  def sampler_description(self) -> str:
    steps = int(self.config.vdm.sample_steps)
    return f"ancestral, {steps} steps on the {self.config.vdm.schedule} gamma(t), decoder mode"

  def generate(self, params, keys, steps: int | None = None):
    """Ancestral samples ``[B, *shape]`` in [-1, 1] from ``z₁ ~ N(0, I)``, one per key."""
    steps = int(steps or self.config.vdm.sample_steps)
    start_keys, keys = genjax_random.split(keys, 2)
    z = genjax_random.normal(start_keys, self.data.shape)
    ones = jnp.ones((z.shape[0],), jnp.float32)

    def body(i, z):
      gamma_t = self.gamma(params, (steps - i) / steps * ones)
      gamma_s = self.gamma(params, (steps - i - 1) / steps * ones)
      eps_hat = self.eps_hat(params["score"], z, gamma_t)
      noise = genjax_random.normal(genjax_random.fold_in(keys, i), self.data.shape)
      return vdm_lib.ancestral_step(z, eps_hat, gamma_t, gamma_s, noise)

    z0 = lax.fori_loop(0, steps, body, z)
    gamma0, _ = self.endpoints(params)
    alpha0 = jnp.sqrt(vdm_lib.alpha_sigma_sq(gamma0)[0])
    levels = jnp.argmax(vdm_lib.decoder_log_probs(z0 / alpha0, gamma0), axis=-1)
    return vdm_lib.from_levels(levels)

  def sample(self, params, keys, labels):
    del labels
    return self.generate(params, keys)

  def captions(self):
    return {"samples": self.sampler_description()}

  def pictures(self, params, batch, key):
    del batch
    sample = self.compiled(("generate",), lambda: functools.partial(self.generate))
    x = sample(params, jax.random.split(key, PICTURE_COLUMNS**2))
    return {"samples": self.grid(x, PICTURE_COLUMNS)}

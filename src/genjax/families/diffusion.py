"""Denoising diffusion (Ho et al. 2020; Song et al. 2021): training, bound, samplers, pictures.

Training draws one timestep per example uniformly, noises the example with
``q(x_t | x_0)`` and regresses the network's output (ε, x₀ or v, see
``config.diffusion.parameterization``) with the weighting λ_t chosen by
``config.diffusion.weighting``. Conditional models (``config.model.conditional``)
see each label replaced by the null label with probability ``p_uncond``, which
is what classifier-free guidance needs at sampling time. With
``training_time="continuous"`` the timestep is a real t ~ U(1/T, 1) on the VP SDE
whose marginals are the schedule's, the loss is denoising score matching
(``weighting`` "simple", or "likelihood", Song et al. 2021's g(t)²), and the
network sees the fractional step of the same noise level; both kinds of model are
then sampled by the discrete and the continuous samplers alike.

Evaluation reports the full variational bound ``L_T + Σ_t L_{t-1} + L_0`` in
bits/dim on the test split (images: uint8 mapped to [-1, 1], discretized
Gaussian decoder ``L_0``). With ``num_samples >= T`` every timestep's term is
computed (the exact bound of Ho et al.'s ``calc_bpd_loop``); with fewer, ``L_T``
and ``L_0`` stay exact and the middle sum is a stratified unbiased estimate
from ``num_samples - 1`` timesteps per example.

Samples come from the sampler named in the config (DDPM ancestral or DDIM), with
classifier-free guidance for conditional models. Network randomness (dropout) is
drawn per example, so a global batch trains identically on any number of devices.
"""

import functools
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax import lax

from genjax.core import fields
from genjax.core import random as genjax_random
from genjax.data import sources
from genjax.evaluation import images as image_lib
from genjax.families import diffusion_sde
from genjax.families.base import Family, register
from genjax.models import unet as unet_models
from genjax.objectives import diffusion as diffusion_lib
from genjax.objectives import sde as sdes
from genjax.objectives.reductions import bits_per_dim
from genjax.samplers import diffusion as samplers

# Rows of the sampler comparison picture: DDIM step counts (beside DDPM with all T steps).
DDIM_PICTURE_STEPS = (10, 20, 50, 100)
PICTURE_COLUMNS = 10


TRAINING_TIMES = ("discrete", "continuous")

F = fields.Field
DIFFUSION = {
  "schedule": F("linear", "noise schedule", choices=diffusion_lib.SCHEDULES),
  "num_steps": F(1000, "T, training timesteps", integer=True, ge=2),
  "beta_start": F(1e-4, "linear schedule's first beta (Ho et al. 2020)", gt=0, lt=1),
  "beta_end": F(0.02, "linear schedule's last beta", gt=0, lt=1),
  "parameterization": F(
    "eps", "what the network predicts", choices=diffusion_lib.PARAMETERIZATIONS
  ),
  "training_time": F(
    "discrete",
    "timesteps of the loss: discrete k ~ U{0..T-1}, or continuous t ~ U(1/T, 1) on the VP SDE "
    "(denoising score matching; the network sees the fractional step of the same noise level)",
    choices=TRAINING_TIMES,
  ),
  "weighting": F(
    "simple",
    "lambda_t of the loss (discrete time: simple, vlb, min_snr; continuous: simple, likelihood)",
    choices=tuple(dict.fromkeys(diffusion_lib.WEIGHTINGS + sdes.WEIGHTINGS)),
  ),
  "min_snr_gamma": F(5.0, "gamma of the min-SNR weighting (Hang et al. 2023)", gt=0),
  "model_variance": F("beta", "reverse-process variance", choices=diffusion_lib.MODEL_VARIANCES),
  "p_uncond": F(0.1, "label dropout for classifier-free guidance", ge=0, le=1),
  "sampler": F(
    "ddim",
    "sampler of evaluation and pictures: discrete (ddpm, ddim) or on the VP SDE (sde, pc, ode_*)",
    choices=samplers.SAMPLERS + tuple(diffusion_sde.SAMPLERS),
  ),
  "sample_steps": F(50, "DDIM steps (at most num_steps), or steps of sde, pc, ode_euler, ode_heun"),
  "spacing": F("trailing", "DDIM timestep spacing", choices=samplers.SPACINGS),
  "eta": F(0.0, "DDIM stochasticity (0 = deterministic, 1 = DDPM-like)", ge=0, le=1),
  "guidance_scale": F(1.0, "classifier-free guidance: 1 = conditional, 0 = unconditional"),
  "guidance_scales": F((0.0, 1.0, 2.0, 4.0), "rows of images/guidance.png"),
  "clip_x0": F(True, "clip predicted x0 to [-1, 1] while sampling with ddpm or ddim"),
  **diffusion_sde.FIELDS,
}
UNET = {
  "channels": F(64, "base width", integer=True, ge=1),
  "channel_mults": F(
    (1, 2, 2), "width multiplier per resolution", positive_ints=True, nonempty=True
  ),
  "num_res_blocks": F(2, "residual blocks per resolution", integer=True, ge=0),
  "attention_resolutions": F((7,), "image sides with self-attention", positive_ints=True),
  "dropout": F(0.1, "dropout in the residual blocks", ge=0, lt=1),
  "num_groups": F(16, "GroupNorm groups", integer=True, ge=1),
  "conditioning": F(
    "scale_shift", "time/class conditioning", choices=unet_models.UNET_CONDITIONINGS
  ),
  "remat": F(
    False,
    "recompute the residual and attention blocks' activations in the backward pass "
    "(less memory, more compute; same parameters, so it may change on resume)",
  ),
}


def unet(u: ml_collections.ConfigDict, data, num_classes: int, dtype, **kwargs) -> unet_models.UNet:
  """The U-Net of ``config.unet`` for images of ``data``; ``kwargs`` set its other fields.

  Raises:
    ValueError: the image side does not halve as often as ``channel_mults`` asks.
  """
  side = data.shape[0]
  levels = len(u.channel_mults)
  if side % 2 ** (levels - 1):
    raise ValueError(
      f"config.unet.channel_mults={tuple(u.channel_mults)}: {levels} resolutions halve the "
      f"{side}-pixel side {levels - 1} times; it must divide by {2 ** (levels - 1)}"
    )
  return unet_models.UNet(
    channels=int(u.channels),
    channel_mults=tuple(u.channel_mults),
    num_res_blocks=int(u.num_res_blocks),
    attention_resolutions=tuple(u.attention_resolutions),
    dropout=float(u.dropout),
    num_groups=int(u.num_groups),
    num_classes=num_classes,
    conditioning=u.conditioning,
    dtype=dtype,
    remat=bool(u.get("remat", False)),
    **kwargs,
  )


def _errors(c: ml_collections.ConfigDict) -> list[str]:
  d, errors = c.diffusion, []
  continuous = d.sampler in diffusion_sde.SAMPLERS
  if continuous and not (isinstance(d.sample_steps, int) and d.sample_steps >= 1):
    errors.append(f"config.diffusion.sample_steps={d.sample_steps!r}: must be an integer >= 1")
  elif (
    not continuous
    and isinstance(d.num_steps, int)
    and not (isinstance(d.sample_steps, int) and 1 <= d.sample_steps <= d.num_steps)
  ):
    errors.append(
      f"config.diffusion.sample_steps={d.sample_steps!r}: must be an integer in "
      f"[1, config.diffusion.num_steps={d.num_steps}]"
    )
  if not d.beta_start < d.beta_end:
    errors.append(
      f"config.diffusion.beta_start={d.beta_start!r}, beta_end={d.beta_end!r}: "
      "need 0 < beta_start < beta_end < 1"
    )
  allowed = sdes.WEIGHTINGS if d.training_time == "continuous" else diffusion_lib.WEIGHTINGS
  if d.training_time in TRAINING_TIMES and d.weighting not in allowed:
    errors.append(
      f"config.diffusion.weighting={d.weighting!r}: not a weighting of "
      f"config.diffusion.training_time={d.training_time!r}; use one of {list(allowed)}"
    )
  points = c.data.name in sources.POINT_DATASETS
  if points:
    if d.clip_x0:
      errors.append(
        "config.diffusion.clip_x0=True: 2-D point data is not confined to [-1, 1]; set False"
      )
    if d.weighting == "vlb":
      errors.append(
        "config.diffusion.weighting='vlb': the bound's decoder L_0 is for uint8 images; "
        "use 'simple' or 'min_snr' on 2-D points"
      )
  else:
    if c.data.preprocess != "scale_pm1":
      errors.append(
        f"config.data.preprocess={c.data.preprocess!r}: diffusion runs on images in [-1, 1]; "
        "use 'scale_pm1'"
      )
  return errors


@register("ddpm")
class DiffusionFamily(Family):
  """Denoising diffusion probabilistic models with DDPM and DDIM samplers.

  Config: ``config.diffusion`` (schedule, objective, sampler, guidance),
  ``config.unet`` (image denoiser) and ``config.model.hidden_sizes`` (the MLP
  denoiser for 2-D points); ``config.model.conditional`` for class-conditional
  models with classifier-free guidance.
  """

  can_sample = True
  sections = {"diffusion": DIFFUSION, "unet": UNET}

  def __init__(self, config: ml_collections.ConfigDict, data):
    super().__init__(config, data)
    d = config.diffusion
    self.conditional = bool(config.model.conditional)
    self.num_classes = self.label_classes(self.conditional)
    self.null_label = self.num_classes  # The embedding's extra row.
    betas = diffusion_lib.make_betas(d.schedule, d.num_steps, d.beta_start, d.beta_end)
    self.noise = diffusion_lib.make_schedule(betas)
    self._alphas_cumprod = np.cumprod(1.0 - betas)  # float64: the continuous time mapping
    self.num_steps = int(d.num_steps)
    self.sde = diffusion_sde.continuous_sde(
      d.schedule, self.num_steps, float(d.beta_start), float(d.beta_end)
    )
    self.parameterization, self.weighting = d.parameterization, d.weighting
    self.model_variance = d.model_variance
    self.clip_x0 = bool(d.clip_x0) and data.kind == "image"
    self.model = self._build_model(config, data)
    self.uses_dropout = data.kind == "image" and config.unet.dropout > 0

  def _build_model(self, config, data):
    if data.kind == "points":
      sizes = tuple(config.model.hidden_sizes)
      return unet_models.MLPDenoiser(
        hidden_size=sizes[0], num_layers=len(sizes), num_classes=self.num_classes, dtype=self.dtype
      )
    return unet(config.unet, data, self.num_classes, self.dtype)

  @classmethod
  def validate(cls, c):
    return _errors(c)

  # -- network ----------------------------------------------------------------

  def init_params(self, key, batch):
    x = batch["x"]
    t = jnp.zeros((x.shape[0],), jnp.int32)
    labels = batch["label"] if self.conditional else None
    variables = self.model.init(key, x, t, labels, train=False)
    return variables["params"], {}

  def denoise(self, params, x_t, t, labels=None, keys=None):
    """The network's output for ``x_t`` at timesteps ``t`` (dropout when ``keys`` are given).

    Args:
      params: network parameters.
      x_t: ``[B, ...]`` noisy inputs.
      t: ``[B]`` int32 timesteps (0-indexed).
      labels: ``[B]`` labels (``null_label`` = unconditional); ignored if unconditional.
      keys: ``[B]`` per-example dropout keys, or None for the deterministic network.
    """
    labels = labels if self.conditional else None
    if keys is None or not self.uses_dropout:
      return self.model.apply({"params": params}, x_t, t, labels, train=False)

    def one(x, t, y, key):  # Per-example dropout masks: independent of the device split.
      y = None if y is None else y[None]
      out = self.model.apply(
        {"params": params}, x[None], t[None], y, train=True, rngs={"dropout": key}
      )
      return out[0]

    return jax.vmap(one)(x_t, t, labels, keys)

  # -- training ---------------------------------------------------------------

  def _noised(self, x0, keys):
    t_keys, noise_keys = genjax_random.split(keys, 2)
    t = diffusion_lib.sample_timesteps(t_keys, self.num_steps)
    eps = genjax_random.normal(noise_keys, x0.shape[1:])
    return t, eps, diffusion_lib.q_sample(self.noise, x0, t, eps)

  def _loss_terms(self, output, x0, eps, t, x_t, weighting):
    d = self.config.diffusion
    return diffusion_lib.per_example_loss(
      self.noise,
      self.parameterization,
      weighting,
      output,
      x0,
      eps,
      t,
      x_t,
      model_variance=self.model_variance,
      min_snr_gamma=float(d.min_snr_gamma),
    )

  def _noised_continuous(self, x0, keys):
    """``(t, network step, ε, x_t)`` with t ~ U(1/T, 1) on the VP SDE."""
    t_keys, noise_keys = genjax_random.split(keys, 2)
    t = sdes.sample_time(t_keys, t_min=diffusion_sde.t_min(self.num_steps))
    eps = genjax_random.normal(noise_keys, x0.shape[1:])
    step = diffusion_sde.network_step(self.sde, self._alphas_cumprod, t)
    return t, step, eps, sdes.perturb(self.sde, x0, t, eps)

  def loss_fn(self, params, batch, keys, step):
    del step
    x0, labels = batch["x"], batch["label"]
    noise_keys, drop_keys, dropout_keys = genjax_random.split(keys, 3)
    if self.conditional:
      p_uncond = float(self.config.diffusion.p_uncond)
      labels = diffusion_lib.drop_labels(drop_keys, labels, p_uncond, self.null_label)
    if self.config.diffusion.training_time == "continuous":
      t, net_step, eps, x_t = self._noised_continuous(x0, noise_keys)
      output = self.denoise(params, x_t, net_step, labels, dropout_keys)
      loss = sdes.dsm_loss(
        self.sde,
        output,
        x0,
        eps,
        t,
        parameterization=self.parameterization,
        weighting=self.weighting,
      )
      return jnp.mean(loss), {}
    t, eps, x_t = self._noised(x0, noise_keys)
    output = self.denoise(params, x_t, t, labels, dropout_keys)
    per_example = self._loss_terms(output, x0, eps, t, x_t, self.weighting)
    metrics = {}
    if self.weighting != "simple":  # L_simple alongside, comparable across weightings.
      simple = self._loss_terms(output, x0, eps, t, x_t, "simple")
      metrics["mse"] = jnp.mean(lax.stop_gradient(simple))
    return jnp.mean(per_example), metrics

  # -- evaluation -------------------------------------------------------------

  def eval_fn(self, params, batch, keys, num_samples):
    """Per-example ``mse`` (L_simple) and, for images, the bound in nats and bits/dim.

    ``num_samples`` is the number of timesteps per example the bound uses
    (all T when it is at least T).
    """
    x0, labels = batch["x"], batch["label"]
    mse_keys, bound_keys = genjax_random.split(keys, 2)
    t, eps, x_t = self._noised(x0, mse_keys)
    output = self.denoise(params, x_t, t, labels)
    out = {"mse": self._loss_terms(output, x0, eps, t, x_t, "simple")}
    if self.data.kind == "image":
      out.update(self._bound(params, x0, labels, bound_keys, num_samples))
    if self.config.diffusion.ode_likelihood:
      # A stream of its own: the metrics above keep their noise.
      out.update(self._ode_likelihood(params, x0, labels, genjax_random.fold_in(keys, 2)))
    return out

  def _score_fn(self, model_fn):
    ac = self._alphas_cumprod
    return diffusion_sde.score_fn(self.sde, model_fn, self.parameterization, ac)

  def _ode_likelihood(self, params, x0, labels, keys):
    """``ode_nll``, ``ode_bits_per_dim`` and ``ode_nfe`` of the conditional model."""
    score = self._score_fn(lambda x, t: self.denoise(params, x, t, labels))
    images = self.data.kind == "image"
    return diffusion_sde.ode_likelihood(score, self.sde, x0, keys, self.config, images=images)

  def _vlb_term(self, params, x0, labels, t, keys):
    eps = genjax_random.normal(keys, x0.shape[1:])
    x_t = diffusion_lib.q_sample(self.noise, x0, t, eps)
    output = self.denoise(params, x_t, t, labels)
    x0_hat, _ = diffusion_lib.predict_x0_eps(self.noise, self.parameterization, x_t, t, output)
    if self.clip_x0:
      x0_hat = jnp.clip(x0_hat, -1.0, 1.0)
    return diffusion_lib.vlb_term(self.noise, self.model_variance, x0, x_t, t, x0_hat)

  def _bound(self, params, x0, labels, keys, num_samples):
    """``L_T + L_0 + Σ_{t≥1} L_t`` (stratified over ``num_samples - 1`` timesteps when < T)."""
    num_t = self.num_steps
    strata = min(max(int(num_samples), 2), num_t) - 1  # Middle timesteps 1 .. T-1.
    edges = np.floor(np.linspace(1, num_t, strata + 1)).astype(np.int32)
    lo, width = jnp.asarray(edges[:-1]), jnp.asarray(np.diff(edges).astype(np.float32))
    zero = jnp.zeros((x0.shape[0],), jnp.int32)
    decoder = self._vlb_term(params, x0, labels, zero, genjax_random.fold_in(keys, 0))

    def body(total, k):
      step_keys = genjax_random.fold_in(keys, k + 1)
      u_keys, noise_keys = genjax_random.split(step_keys, 2)
      offset = jnp.floor(genjax_random.uniform(u_keys, ()) * width[k]).astype(jnp.int32)
      t = lo[k] + jnp.minimum(offset, width[k].astype(jnp.int32) - 1)
      return total + width[k] * self._vlb_term(params, x0, labels, t, noise_keys), None

    middle, _ = lax.scan(body, jnp.zeros_like(decoder), jnp.arange(strata))
    prior = diffusion_lib.prior_kl(self.noise, x0)
    nll = prior + decoder + middle
    dims = math.prod(self.data.shape)
    return {
      "nll": nll,
      "bits_per_dim": bits_per_dim(nll, dims),
      "prior_bpd": bits_per_dim(prior, dims),
      "decoder_bpd": bits_per_dim(decoder, dims),
    }

  # -- sampling ---------------------------------------------------------------

  def _model_fn(self, params, labels, scale: float):
    def conditional(x, t, y):
      return self.denoise(params, x, t, y)

    if not self.conditional or (isinstance(scale, float) and scale == 1.0):
      return lambda x, t: conditional(x, t, labels)
    if isinstance(scale, float) and scale == 0.0:
      return lambda x, t: conditional(x, t, jnp.full_like(labels, self.null_label))
    return samplers.guided_model_fn(conditional, labels, self.null_label, scale)

  def sampler_description(self) -> str:
    """E.g. "DDIM, 50 trailing steps, eta 0, x0 clipped to [-1, 1]"."""
    d = self.config.diffusion
    if d.sampler in diffusion_sde.SAMPLERS:
      out = diffusion_sde.describe(self.config)
      return out + (f", guidance scale {float(d.guidance_scale):g}" if self.conditional else "")
    if d.sampler == "ddpm":
      variance = "beta_t" if self.model_variance == "beta" else "posterior beta tilde_t"
      out = f"DDPM ancestral, {self.num_steps} steps, sigma_t^2 = {variance}"
    else:
      out = f"DDIM, {d.sample_steps} {d.spacing} steps, eta {float(d.eta):g}"
    if self.clip_x0:
      out += ", x0 clipped to [-1, 1]"
    if self.conditional:
      out += f", guidance scale {float(d.guidance_scale):g}"
    return out

  def generate(
    self,
    params,
    keys,
    labels,
    *,
    sampler: str,
    steps: int | None = None,
    scale: float | jax.Array | None = None,
    trajectory: bool = False,
    return_nfe: bool = False,
  ):
    """Samples with a named sampler (``steps`` for DDIM and the fixed-step continuous
    samplers, ``scale`` for guidance).

    A Python ``scale`` of 1 (0) runs only the conditional (unconditional) model;
    any other scale, or a traced one, runs both in one batched call.

    Returns ``x_0 [B, ...]``, or ``(x_0, trajectory [S, B, ...])`` when asked, and
    the network evaluations per sample ``nfe [B]`` last with ``return_nfe``
    (guidance runs each on a doubled batch).
    """
    d = self.config.diffusion
    scale = d.guidance_scale if scale is None else scale
    scale = scale if isinstance(scale, jax.Array) else float(scale)  # Traced: one program.
    model_fn = self._model_fn(params, labels, scale)
    start_keys, keys = genjax_random.split(keys, 2)
    x_T = genjax_random.normal(start_keys, self.data.shape)
    if sampler in diffusion_sde.SAMPLERS:
      score = self._score_fn(model_fn)
      options = dict(trajectory=trajectory, trajectory_steps=PICTURE_COLUMNS, return_nfe=return_nfe)
      return diffusion_sde.generate(
        score, self.sde, x_T, keys, self.config, sampler, steps, **options
      )
    kwargs = dict(parameterization=self.parameterization, clip_x0=self.clip_x0)
    if sampler == "ddpm":
      result = samplers.ddpm_sample(
        model_fn,
        self.noise,
        x_T,
        keys,
        model_variance=self.model_variance,
        return_trajectory=trajectory,
        trajectory_steps=PICTURE_COLUMNS,
        **kwargs,
      )
    else:
      times = samplers.timesteps(self.num_steps, int(steps or d.sample_steps), d.spacing)
      result = samplers.ddim_sample(
        model_fn,
        self.noise,
        x_T,
        keys,
        timesteps=times,
        eta=float(d.eta),
        return_trajectory=trajectory,
        **kwargs,
      )
    if not return_nfe:
      return result
    count = self.num_steps if sampler == "ddpm" else int(steps or d.sample_steps)
    nfe = jnp.full((x_T.shape[0],), count, jnp.int32)
    return (result, nfe) if not trajectory else (*result, nfe)

  def sample(self, params, keys, labels):
    x = self.generate(params, keys, labels, sampler=self.config.diffusion.sampler)
    return jnp.clip(x, -1.0, 1.0) if self.data.kind == "image" else x

  def _jitted(self, **options):
    """``generate`` compiled once per option set (pictures reuse it at every evaluation)."""
    key = ("generate",) + tuple(sorted(options.items()))
    return self.compiled(key, lambda: functools.partial(self.generate, **options))

  # -- pictures ---------------------------------------------------------------

  def trajectory_times(self) -> list[str]:
    """The t of each column of the trajectory picture: T (or 1) is noise, 0 the sample."""
    d, T = self.config.diffusion, self.num_steps
    if d.sampler in diffusion_sde.SAMPLERS:
      steps = PICTURE_COLUMNS if d.sampler == "ode_adaptive" else int(d.sample_steps)
      times = diffusion_sde.frame_times(self.config, d.sampler, PICTURE_COLUMNS, steps)
      return [f"{t:.3g}" for t in times]
    if d.sampler == "ddpm":  # PICTURE_COLUMNS states recorded, after evenly spaced steps.
      taken = np.round(np.arange(1, PICTURE_COLUMNS + 1) * T / PICTURE_COLUMNS).astype(int)
      return [str(T - n) for n in taken]
    # DDIM records the state after each step; the state after step n is x at the
    # next timestep of its sequence (1-based, as in the papers), x_0 after the last.
    sequence = np.append(samplers.timesteps(T, int(d.sample_steps), d.spacing) + 1, 0)
    pick = np.linspace(0, int(d.sample_steps) - 1, PICTURE_COLUMNS).round().astype(int)
    return [str(t) for t in sequence[pick + 1]]

  def captions(self):
    d = self.config.diffusion
    # q_sample's 0-based step k is the papers' x_{k+1}.
    forward = np.linspace(0, self.num_steps - 1, PICTURE_COLUMNS).round().astype(int) + 1
    ddim = [s for s in DDIM_PICTURE_STEPS if s < self.num_steps]
    return {
      "samples": self.sampler_description(),
      "samples_by_class": f"row c: class c; {self.sampler_description()}",
      "trajectory": "each row: one sample on its way from noise; columns: x_t at t = "
      + ", ".join(self.trajectory_times())
      + f" ({self._time_range()}; {self.sampler_description()})",
      "forward": "each row: a test image; columns: x_t ~ q(x_t | x_0) at t = "
      + ", ".join(map(str, forward))
      + f" of T = {self.num_steps}",
      "samplers": "rows: DDIM with "
      + ", ".join(map(str, ddim))
      + f" steps, then DDPM with {self.num_steps}; the same noise down each column",
      "guidance": "rows: guidance scale "
      + ", ".join(f"{float(s):g}" for s in d.guidance_scales)
      + "; columns: classes 0, 1, ...",
    }

  def _time_range(self) -> str:
    if self.config.diffusion.sampler in diffusion_sde.SAMPLERS:
      return "x_1 is noise, x_0 the denoised sample"
    return f"x_{self.num_steps} is noise, x_0 the sample"

  def pictures(self, params, batch, key):
    if self.data.kind == "points":
      return self._point_pictures(params, key)
    return self._image_pictures(params, batch, key)

  def _image_pictures(self, params, batch, key):
    d = self.config.diffusion
    out = {}
    # One compiled sampler draws the sample grid and keeps the trajectories of its rows.
    sample = self._jitted(sampler=d.sampler, trajectory=True)
    if self.conditional:
      labels = jnp.repeat(jnp.arange(self.num_classes), PICTURE_COLUMNS)
      keys = jnp.tile(jax.random.split(key, PICTURE_COLUMNS), self.num_classes)
      x0, path = sample(params, keys, labels)
      out["samples_by_class"] = self.grid(jnp.clip(x0, -1.0, 1.0), PICTURE_COLUMNS)
      out["guidance"] = self._guidance_picture(params, key, tuple(d.guidance_scales))
      rows = np.arange(min(8, self.num_classes)) * PICTURE_COLUMNS + 1  # One per class.
    else:
      keys = jax.random.split(key, 64)
      x0, path = sample(params, keys, jnp.zeros((64,), jnp.int32))
      out["samples"] = self.grid(jnp.clip(x0, -1.0, 1.0), 8)
      rows = np.arange(8)
    out["trajectory"] = self._trajectory_picture(path[:, rows])
    out["forward"] = self._forward_picture(batch, key)
    out["samplers"] = self._sampler_picture(params, key)
    return out

  def _columns(self, key):
    keys = jax.random.split(jax.random.fold_in(key, 1), PICTURE_COLUMNS)
    labels = jnp.arange(PICTURE_COLUMNS, dtype=jnp.int32) % max(self.num_classes, 1)
    return keys, labels

  def _trajectory_picture(self, path):
    """Rows: samples; columns: x_t from pure noise (left) to x_0 (right).

    Args:
      path: a sampler's trajectory ``[S, rows, ...]``.
    """
    pick = np.linspace(0, path.shape[0] - 1, PICTURE_COLUMNS).round().astype(int)
    path = jnp.clip(path[pick], -1.0, 1.0)  # [columns, rows, ...]
    return self.grid(jnp.swapaxes(path, 0, 1).reshape((-1,) + self.data.shape), PICTURE_COLUMNS)

  def _forward_picture(self, batch, key, rows: int = 8):
    """Rows: test images; columns: q(x_t | x_0) at evenly spaced t from 0 to T-1."""
    x0 = jnp.asarray(batch["x"][:rows])
    t = np.linspace(0, self.num_steps - 1, PICTURE_COLUMNS).round().astype(np.int32)
    t = jnp.tile(jnp.asarray(t), x0.shape[0])
    x0 = jnp.repeat(x0, PICTURE_COLUMNS, axis=0)
    keys = jax.random.split(jax.random.fold_in(key, 3), x0.shape[0])
    eps = genjax_random.normal(keys, self.data.shape)
    x_t = diffusion_lib.q_sample(self.noise, x0, t, eps)
    return self.grid(jnp.clip(x_t, -1.0, 1.0), PICTURE_COLUMNS)

  def _sampler_picture(self, params, key):
    """Rows: DDIM with 10, 20, 50, 100 steps, then DDPM with all T; same noise per column."""
    keys, labels = self._columns(key)
    rows = [
      self._jitted(sampler="ddim", steps=s)(params, keys, labels)
      for s in DDIM_PICTURE_STEPS
      if s < self.num_steps
    ]
    rows.append(self._jitted(sampler="ddpm")(params, keys, labels))
    return self.grid(jnp.clip(jnp.concatenate(rows), -1.0, 1.0), PICTURE_COLUMNS)

  def _guidance_picture(self, params, key, scales):
    """Rows: guidance scales; columns: classes, the same noise down each column."""
    keys = jax.random.split(jax.random.fold_in(key, 4), self.num_classes)
    labels = jnp.arange(self.num_classes, dtype=jnp.int32)
    guided = self._jitted(sampler=self.config.diffusion.sampler)
    # The scale is a traced argument: one program for every row.
    rows = [guided(params, keys, labels, scale=jnp.float32(s)) for s in scales]
    return self.grid(jnp.clip(jnp.concatenate(rows), -1.0, 1.0), self.num_classes)

  def _point_pictures(self, params, key, n: int = 2000):
    keys = jax.random.split(key, n)
    labels = jnp.zeros((n,), jnp.int32)
    sampler = self.config.diffusion.sampler
    x0, path = self._jitted(sampler=sampler, trajectory=True)(params, keys, labels)
    modes = self.data.modes
    # Structure appears late in the chain: show the middle, three quarters and the step before x_0.
    frames = path.shape[0]
    pick = sorted({frames // 2, (3 * frames) // 4, frames - 2})
    panels = [
      image_lib.render_points(np.asarray(path[i]), modes, f"frame {i + 1} of {frames}, x_T to x_0")
      for i in pick
    ]
    panels.append(image_lib.render_points(np.asarray(x0), modes, f"{n} samples"))
    return {
      "samples": panels[-1],
      "trajectory": np.concatenate(panels, axis=1),
    }

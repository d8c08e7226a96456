"""Autoencoder families: AE and DAE (deterministic codes), VAE, β-VAE, cVAE, IWAE.

All of them share one Flax module, :class:`genjax.models.Autoencoder`; they
differ only in the objective bound to it.
"""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from genjax.core import fields
from genjax.core import random as genjax_random
from genjax.evaluation import images as image_lib
from genjax.families.base import DataInfo, Family, image_data_errors, register
from genjax.models import Autoencoder, build_autoencoder
from genjax.models.autoencoder import ARCHITECTURES
from genjax.objectives import ae as ae_objectives
from genjax.objectives import vae as vae_objectives

F = fields.Field
OBJECTIVE = {
  "beta": F(1.0, "KL weight (beta-VAE)", ge=0),
  "kl_warmup_steps": F(0, "linear KL annealing from 0 to beta", ge=0),
  "free_bits": F(
    0.0,
    "KL floor in nats per latent dimension (free bits): a dimension whose batch-mean "
    "KL is below it is not pushed further towards the prior; 0 for none",
    ge=0,
    only_with=("objective.bound", ("elbo",)),
  ),
  "bound": F("elbo", "what a VAE maximises: the ELBO or the IWAE bound", choices=("elbo", "iwae")),
  "num_samples": F(
    1,
    "importance samples k of the IWAE bound",
    integer=True,
    ge=1,
    only_with=("objective.bound", ("iwae",)),
  ),
  "recon_loss": F("bce", "AE/DAE reconstruction", choices=ae_objectives.RECONSTRUCTION_KINDS),
  "corruption": F("none", "DAE corruption", choices=sorted(ae_objectives.CORRUPTIONS)),
  "corruption_level": F(0.0, "DAE corruption strength", ge=0),
}


def recon_loss_errors(field: str, kind: str, preprocess: str) -> list[str]:
  """Errors of a reconstruction loss (``l2`` or ``bce``) given the data's preprocessing."""
  if kind == "bce" and preprocess == "scale_pm1":
    return [
      f"config.{field}='bce': needs data in [0, 1]; "
      "config.data.preprocess='scale_pm1' gives [-1, 1] (use 'l2')"
    ]
  return []


class _AutoencoderBase(Family):
  """Module construction and pictures shared by deterministic and variational AEs."""

  sections = {"objective": OBJECTIVE}
  narrowed = {"model.architecture": F("mlp", choices=ARCHITECTURES)}

  stochastic = True
  num_decoder_params = 1

  def __init__(self, config: ml_collections.ConfigDict, data: DataInfo):
    super().__init__(config, data)
    if data.kind != "image":
      raise ValueError(
        f"config.family={config.family!r} needs an image dataset; "
        f"config.data.name={data.name!r} holds {data.kind}"
      )
    self.conditional = bool(config.model.conditional)
    self.num_classes = self.label_classes(self.conditional)
    self.module = self.build_module(config, data)

  def build_module(self, config: ml_collections.ConfigDict, data: DataInfo):
    """The Flax module of this family, from its config fields."""
    m = config.model
    return build_autoencoder(
      m.architecture,
      data_shape=data.shape,
      latent_dim=m.latent_dim,
      hidden_sizes=tuple(m.hidden_sizes),
      conv_channels=tuple(m.conv_channels),
      activation=m.activation,
      num_params=self.num_decoder_params,
      num_classes=self.num_classes,
      stochastic=self.stochastic,
      dtype=self.dtype,
    )

  def _labels(self, batch):
    return batch["label"] if self.conditional else None

  def init_params(self, key, batch):
    variables = self.module.init(key, batch["x"], self._labels(batch))
    return variables["params"], {}

  def encode(self, params, x, labels=None):
    return self.module.apply({"params": params}, x, labels, method=Autoencoder.encode)

  def decode(self, params, z, labels=None):
    return self.module.apply({"params": params}, z, labels, method=Autoencoder.decode)

  def decode_mean(self, params, z, labels=None):
    """Mean image in data space, ``[B, H, W, C]``."""
    raise NotImplementedError

  def _code_compiled(self, params, x, labels=None):
    return self.compiled("code", lambda: self.code)(params, x, labels)

  def _mean_compiled(self, params, z, labels=None):
    return self.compiled("decode_mean", lambda: self.decode_mean)(params, z, labels)

  def code(self, params, x, labels=None):
    """Deterministic code of ``x``: the posterior mean for a VAE. ``[B, D]``."""
    out = self.encode(params, x, labels)
    return out[0] if isinstance(out, tuple) else out

  def captions(self):
    return {
      "reconstructions": "column pairs: test input | its reconstruction",
      "interpolations": "each row: decoded codes on the line from one test input's code to "
      "another's (ends: their reconstructions)",
      "denoising": "rows: corrupted input | denoised | clean input",
      "samples": "decoder means of z ~ N(0, I)",
      "samples_by_class": "row c: class c; the same z down each column",
      "traversals": "row k: latent k set to -3, -2.4, ..., 3 (columns), the others at the "
      "code of a test input",
      "manifold": "decoder means over a 20 x 20 grid of normal quantiles of the 2-D latent",
    }

  def pictures(self, params, batch, key):
    x, labels = batch["x"], self._labels(batch)
    n = min(32, x.shape[0])
    codes = self._code_compiled(params, x[:n], None if labels is None else labels[:n])
    recon = self._mean_compiled(params, codes, None if labels is None else labels[:n])
    pairs = jnp.stack([x[:n], recon], axis=1).reshape((2 * n,) + x.shape[1:])
    out = {"reconstructions": self.grid(pairs, nrow=16)}
    if n >= 2:
      out["interpolations"] = self._interpolations(params, codes, labels)
    return out

  def _interpolations(self, params, codes, labels, rows=8, steps=10):
    rows = min(rows, codes.shape[0] // 2)
    path = np.concatenate(
      [
        image_lib.interpolation_codes(np.asarray(codes[2 * i]), np.asarray(codes[2 * i + 1]), steps)
        for i in range(rows)
      ]
    )
    row_labels = None if labels is None else jnp.repeat(labels[0 : 2 * rows : 2], steps)
    return self.grid(self._mean_compiled(params, jnp.asarray(path), row_labels), nrow=steps)


@register("dae")
@register("ae")
class AutoencoderFamily(_AutoencoderBase):
  """Deterministic autoencoder; with a corruption, a denoising autoencoder.

  Loss: reconstruction error of the *clean* input from the encoding of a
  corrupted copy (Vincent et al. 2008); with ``corruption="none"`` a plain AE.
  """

  stochastic = False

  def __init__(self, config, data):
    super().__init__(config, data)
    o = config.objective
    self.recon_loss = o.recon_loss
    self.corruption = o.corruption
    self.level = float(o.corruption_level)

  @classmethod
  def validate(cls, c):
    errors = image_data_errors(c)
    o = c.objective
    errors += recon_loss_errors("objective.recon_loss", o.recon_loss, c.data.preprocess)
    if c.family == "dae" and (o.corruption == "none" or o.corruption_level <= 0):
      errors.append(
        f"config.objective.corruption={o.corruption!r} with corruption_level="
        f"{o.corruption_level!r}: family 'dae' needs a corruption "
        "(gaussian, mask, salt_pepper) and a level > 0"
      )
    return errors

  def _reconstruct(self, params, x, labels):
    return self.decode(params, self.code(params, x, labels), labels)[..., 0]

  def decode_mean(self, params, z, labels=None):
    out = self.decode(params, z, labels)[..., 0]
    return jax.nn.sigmoid(out) if self.recon_loss == "bce" else out

  def _errors(self, params, batch, keys):
    x, labels = batch["x"], self._labels(batch)
    x_tilde = ae_objectives.corrupt(self.corruption, keys, x, self.level)
    return ae_objectives.reconstruction_error(
      x, self._reconstruct(params, x_tilde, labels), self.recon_loss
    )

  def loss_fn(self, params, batch, keys, step):
    del step
    recon = jnp.mean(self._errors(params, batch, keys))
    return recon, {"recon": recon}

  def eval_fn(self, params, batch, keys, num_samples):
    del num_samples
    x, labels = batch["x"], self._labels(batch)
    mean = self.decode_mean(params, self.code(params, x, labels), labels)
    out = {
      "recon": self._errors(params, batch, keys),
      "mse": jnp.mean(jnp.square(mean - x).reshape(x.shape[0], -1), axis=1),
    }
    if self.corruption != "none":
      out["recon_clean_input"] = ae_objectives.reconstruction_error(
        x, self._reconstruct(params, x, labels), self.recon_loss
      )
    return out

  def pictures(self, params, batch, key):
    out = super().pictures(params, batch, key)
    if self.corruption != "none":
      x, labels = batch["x"][:16], self._labels(batch)
      labels = None if labels is None else labels[:16]
      keys = jax.random.split(key, x.shape[0])
      x_tilde = ae_objectives.corrupt(self.corruption, keys, x, self.level)
      codes = self._code_compiled(params, x_tilde, labels)
      rows = jnp.concatenate([x_tilde, self._mean_compiled(params, codes, labels), x])
      out["denoising"] = self.grid(rows, nrow=x.shape[0])  # corrupted / denoised / clean
    return out


@register("iwae", objective__bound="iwae")
@register("cvae", model__conditional=True)
@register("vae")
class VAEFamily(_AutoencoderBase):
  """Variational autoencoder (Kingma & Welling 2014) and its variants.

  * ``vae``: ELBO with weight ``beta`` on the KL (β-VAE when beta != 1) and
    optional linear KL warm-up.
  * ``cvae``: the label conditions encoder and decoder (Sohn et al. 2015).
  * ``iwae``: the importance-weighted bound with ``objective.num_samples``
    samples (Burda et al. 2016).

  Evaluation reports ``elbo``, ``recon`` (= −E_q log p(x|z), nats), ``kl``
  and ``nll`` (−IWAE bound with ``num_samples`` samples, nats), plus
  ``bits_per_dim``; ``elbo = −(recon + kl)``.
  """

  narrowed = dict(
    _AutoencoderBase.narrowed,
    **{"model.likelihood": F("bernoulli", choices=sorted(vae_objectives.LIKELIHOODS))},
  )

  can_sample = True

  def __init__(self, config, data):
    self.likelihood = config.model.likelihood
    self.num_decoder_params = vae_objectives.LIKELIHOOD_NUM_PARAMS[self.likelihood]
    super().__init__(config, data)
    o = config.objective
    self.log_likelihood = vae_objectives.get_likelihood(self.likelihood)
    self.beta = float(o.beta)
    self.kl_warmup_steps = int(o.kl_warmup_steps)
    self.free_bits = float(o.free_bits)
    self.num_train_samples = int(o.num_samples) if o.bound == "iwae" else 1
    self.nll_chunk = int(config.eval.nll_chunk)

  @classmethod
  def validate(cls, c):
    errors, lik = image_data_errors(c), c.model.likelihood
    if lik in vae_objectives.LIKELIHOODS:
      want = vae_objectives.LIKELIHOOD_DATA_RANGE[lik]
      have = (-1.0, 1.0) if c.data.preprocess == "scale_pm1" else (0.0, 1.0)
      if want != have:
        errors.append(
          f"config.model.likelihood={lik!r}: models data in {want}, but "
          f"config.data.preprocess={c.data.preprocess!r} gives {have}"
        )
    return errors

  def _bound_fns(self, params, labels):
    return dict(
      encode=lambda x: self.encode(params, x, labels),
      decode=lambda z: self.decode(params, z, labels),
      log_likelihood=self.log_likelihood,
    )

  def decode_mean(self, params, z, labels=None):
    return vae_objectives.likelihood_mean(
      self.likelihood, self.decode(params, z, labels), self.data.data_range
    )

  def _elbo(self, params, x, keys, labels, **options):
    """Per-example ELBO terms (``elbo``, ``recon``, ``kl``, ``loss``), each ``[B]``."""
    return vae_objectives.elbo(x, keys, **self._bound_fns(params, labels), **options)

  def _iwae(self, params, x, keys, labels, **options):
    """The importance-weighted bound ``[B]``."""
    return vae_objectives.iwae_bound(x, keys, **self._bound_fns(params, labels), **options)

  def _kl_terms(self, terms) -> dict[str, jax.Array]:
    """Named parts of the KL (a hierarchy's layers), each ``[B]``; none for one layer."""
    del terms
    return {}

  def loss_fn(self, params, batch, keys, step):
    x, labels = batch["x"], self._labels(batch)
    if self.num_train_samples > 1:
      bound = self._iwae(params, x, keys, labels, num_samples=self.num_train_samples)
      loss = -jnp.mean(bound)
      return loss, {"iwae_bound": -loss}
    beta = self.beta * vae_objectives.kl_warmup_weight(step, self.kl_warmup_steps)
    terms = self._elbo(params, x, keys, labels, beta=beta, free_bits=self.free_bits)
    metrics = {
      "elbo": jnp.mean(terms["elbo"]),
      "recon": -jnp.mean(terms["recon"]),
      "kl": jnp.mean(terms["kl"]),
      "beta": beta,
    }
    metrics.update({k: jnp.mean(v) for k, v in self._kl_terms(terms).items()})
    return jnp.mean(terms["loss"]), metrics

  def eval_fn(self, params, batch, keys, num_samples):
    x, labels = batch["x"], self._labels(batch)
    terms = self._elbo(params, x, keys, labels)
    chunk = math.gcd(num_samples, self.nll_chunk)
    nll = -self._iwae(
      params, x, genjax_random.fold_in(keys, 1), labels, num_samples=num_samples, chunk_size=chunk
    )
    dims = math.prod(self.data.shape)
    codes = self.code(params, x, labels)
    return {
      "elbo": terms["elbo"],
      "recon": -terms["recon"],
      "kl": terms["kl"],
      **self._kl_terms(terms),
      "nll": nll,
      "bits_per_dim": nll / (dims * math.log(2.0)),
      # Vectors [B, D], summed over the test split: their means give Cov_x(E_q[z]).
      "posterior_mean": codes,
      "posterior_mean_sq": jnp.square(codes),
    }

  def summarize_eval(self, means):
    means = dict(means)
    mu, mu_sq = means.pop("posterior_mean"), means.pop("posterior_mean_sq")
    out = super().summarize_eval(means)
    out["active_units"] = float(vae_objectives.active_units(mu, mu_sq))
    return out

  @classmethod
  def couples_examples(cls, config):
    if config.objective.bound == "elbo" and config.objective.free_bits > 0:
      return "free bits compare each dimension's KL averaged over the batch with its floor"
    return super().couples_examples(config)

  def sample(self, params, keys, labels):
    z = genjax_random.normal(keys, (self.config.model.latent_dim,))
    return self.decode_mean(params, z, labels if self.conditional else None)

  def pictures(self, params, batch, key):
    out = super().pictures(params, batch, key)
    d = self.config.model.latent_dim
    if self.conditional:
      per_class = 10
      z = jax.random.normal(key, (per_class, d))
      z = jnp.tile(z, (self.num_classes, 1))
      labels = jnp.repeat(jnp.arange(self.num_classes), per_class)
      out["samples_by_class"] = self.grid(self._mean_compiled(params, z, labels), per_class)
    else:
      z = jax.random.normal(key, (64, d))
      out["samples"] = self.grid(self._mean_compiled(params, z), 8)
    labels = self._labels(batch)
    base = np.asarray(
      self._code_compiled(params, batch["x"][:1], None if labels is None else labels[:1])[0]
    )
    dims = list(range(min(d, 10)))
    values = np.linspace(-3.0, 3.0, 11)
    traversal = image_lib.latent_traversal_codes(base, dims, values)
    t_labels = None if labels is None else jnp.full((len(traversal),), labels[0])
    out["traversals"] = self.grid(
      self._mean_compiled(params, jnp.asarray(traversal), t_labels), len(values)
    )
    if d == 2 and not self.conditional:
      grid = image_lib.manifold_grid_codes(20)
      out["manifold"] = self.grid(self._mean_compiled(params, jnp.asarray(grid)), 20)
    return out

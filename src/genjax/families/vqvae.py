"""VQ-VAE (van den Oord et al. 2017): discrete codes, straight-through gradients, EMA codebook.

The loss per example is ``recon + codebook_loss + β · commitment_loss`` with the
reconstruction error averaged over pixels (``l2``: squared error in data space;
``bce``: Bernoulli cross-entropy of [0, 1] pixels). With ``config.vq.ema`` the
codebook is not learned by gradients: its moving averages (cluster sizes and
sums, summed over all devices, so replicas stay equal) live in
``TrainState.model_state["vq_ema"]`` and are updated once per step, and the
codebook loss is reported only. Codes whose average use per step falls below
``config.vq.restart_threshold`` are restarted at encoder outputs drawn from
the step's global batch (the same draw on every device).

Evaluation reports reconstruction ``mse`` (per pixel), the two VQ losses and,
over the whole test split, the codebook ``perplexity`` (exp of the entropy of
code use: K when all codes are used equally) and ``codes_used``.
"""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax import lax

from genjax.core import fields
from genjax.core.parallel import AXIS
from genjax.evaluation import images as image_lib
from genjax.families.autoencoders import recon_loss_errors
from genjax.families.base import Family, image_data_errors, register
from genjax.models.vqvae import EMA_COLLECTION, VQVAE
from genjax.objectives import ae as ae_objectives
from genjax.objectives import vq as vq_lib

# Seed stream of the (replica-shared) dead-code restart draws.
_RESTART_STREAM = 7


def build_vqvae(
  v: ml_collections.ConfigDict,
  out_channels: int,
  axis_name=None,
  cls=VQVAE,
  dtype=jnp.float32,
  **extra,
) -> VQVAE:
  """The :class:`VQVAE` module (or subclass ``cls`` with attributes ``extra``) of ``config.vq``."""
  return cls(
    channels=tuple(v.channels),
    num_res_blocks=int(v.num_res_blocks),
    res_channels=int(v.res_channels),
    num_embeddings=int(v.num_embeddings),
    embedding_dim=int(v.embedding_dim),
    beta=float(v.beta),
    ema=bool(v.ema),
    decay=float(v.decay),
    epsilon=float(v.epsilon),
    out_channels=out_channels,
    axis_name=axis_name,
    dtype=dtype,
    **extra,
  )


F = fields.Field
VQ = {
  "num_embeddings": F(512, "codebook size K", integer=True, ge=1),
  "embedding_dim": F(64, "code size D", integer=True, ge=1),
  "beta": F(0.25, "commitment weight (van den Oord et al. 2017)", ge=0),
  "ema": F(True, "EMA codebook updates instead of the codebook loss"),
  "decay": F(0.99, "EMA decay", gt=0, lt=1),
  "epsilon": F(1e-5, "EMA Laplace smoothing", gt=0),
  "restart_threshold": F(0.0, "restart codes used less than this per step (0 = never)", ge=0),
  "channels": F((32, 64), "encoder stride-2 stages", positive_ints=True, nonempty=True),
  "num_res_blocks": F(2, "residual blocks", integer=True, ge=0),
  "res_channels": F(32, "residual block width", integer=True, ge=1),
  "recon_loss": F("l2", "l2 | bce (pixels in [0, 1])", choices=ae_objectives.RECONSTRUCTION_KINDS),
}


def vq_errors(c: ml_collections.ConfigDict) -> list[str]:
  """Errors of ``config.vq`` that involve other fields, and of the data a VQ-VAE needs."""
  v, errors = c.vq, image_data_errors(c)
  if v.restart_threshold > 0 and not v.ema:
    errors.append(
      f"config.vq.restart_threshold={v.restart_threshold!r}: dead-code restarts act on the "
      "EMA codebook's usage; set config.vq.ema=True or restart_threshold=0"
    )
  errors += recon_loss_errors("vq.recon_loss", v.recon_loss, c.data.preprocess)
  return errors


@register("vqvae")
class VQVAEFamily(Family):
  """Vector-quantised autoencoder; its code maps feed the ``vqvae_prior`` family.

  Config: ``config.vq`` (codebook, EMA, restarts, encoder/decoder sizes,
  reconstruction loss).
  """

  sections = {"vq": VQ}

  def __init__(self, config: ml_collections.ConfigDict, data):
    super().__init__(config, data)
    if data.kind != "image":
      raise ValueError(f"family {config.family!r} needs images; {data.name!r} holds {data.kind}")
    v = config.vq
    factor = 2 ** len(v.channels)
    if data.shape[0] % factor or data.shape[1] % factor:
      raise ValueError(
        f"config.vq.channels={tuple(v.channels)}: {len(v.channels)} stride-2 stages need image "
        f"sides divisible by {factor}, got {data.shape[:2]}"
      )
    self.recon_loss = v.recon_loss
    self.ema = bool(v.ema)
    self.num_embeddings = int(v.num_embeddings)
    self.restart_threshold = float(v.restart_threshold)
    self.module = self.build_module(AXIS)
    # Outside the data axis (pictures, the second stage): no collective.
    self.host_module = self.module.clone(axis_name=None)
    self.code_shape = (data.shape[0] // factor, data.shape[1] // factor)
    # Code levels: (suffix of the module's output keys and of metrics, quantizer, codebook size).
    self.levels = (("", "quantizer", self.num_embeddings),)

  def build_module(self, axis_name):
    """The Flax module, its EMA statistics summed over ``axis_name``."""
    return build_vqvae(self.config.vq, self.data.shape[-1], axis_name=axis_name, dtype=self.dtype)

  @classmethod
  def validate(cls, c):
    return vq_errors(c)

  @classmethod
  def couples_examples(cls, c):
    if c.vq.ema:
      return "the EMA codebook moves once per step, by the whole batch's code assignments"
    return None

  # -- network ----------------------------------------------------------------

  def init_params(self, key, batch):
    variables = self.host_module.init(key, batch["x"])
    model_state = {EMA_COLLECTION: variables[EMA_COLLECTION]} if self.ema else {}
    return variables["params"], model_state

  def eval_params(self, state):
    """Parameters (EMA where kept) with the codebook's moving averages."""
    return {"params": super().eval_params(state), **state.model_state}

  def decode_mean(self, output):
    """Decoder output -> reconstruction in data space."""
    return jax.nn.sigmoid(output) if self.recon_loss == "bce" else output

  def _terms(self, out, x):
    dims = math.prod(x.shape[1:])
    recon = ae_objectives.reconstruction_error(x, out["output"], self.recon_loss) / dims
    return recon, out["codebook_loss"], out["commitment_loss"]

  # -- training ---------------------------------------------------------------

  def stateful_loss_fn(self, params, model_state, batch, keys, step):
    del keys
    x = batch["x"]
    variables = {"params": params, **model_state}
    if self.ema:
      out, updates = self.module.apply(variables, x, update_ema=True, mutable=[EMA_COLLECTION])
      model_state = dict(model_state, **updates)
    else:
      out = self.module.apply(variables, x)
    recon, codebook, commitment = self._terms(out, x)
    # With the EMA codebook the codebook loss has no parameter to move: a metric only.
    vq_loss = commitment + (0.0 if self.ema else codebook)
    loss = jnp.mean(recon + vq_loss)
    metrics = {"recon": jnp.mean(recon)}
    key = jax.random.fold_in(jax.random.key(self.config.seed + _RESTART_STREAM), step)
    for i, (suffix, name, size) in enumerate(self.levels):
      counts = lax.psum(vq_lib.codebook_usage(out["indices" + suffix], size), AXIS)
      metrics |= {
        "codebook_loss" + suffix: jnp.mean(out["codebook_loss" + suffix]),
        "commitment_loss" + suffix: jnp.mean(out["commitment_loss" + suffix]),
        "perplexity" + suffix: vq_lib.perplexity(counts),
        "codes_used" + suffix: jnp.sum(counts > 0).astype(jnp.float32),
      }
      if self.ema and self.restart_threshold > 0:
        level_key = key if i == 0 else jax.random.fold_in(key, i)
        model_state, restarted = self._restart(model_state, out["z_e" + suffix], level_key, name)
        metrics["codes_restarted" + suffix] = restarted.astype(jnp.float32)
    return loss, (metrics, model_state)

  def _restart(self, model_state, z_e, key, name):
    """Restarts dead codes of quantizer ``name`` at encoder outputs of the global batch.

    ``key`` is the same on every device, so every replica restarts the same codes.
    """
    ema = model_state[EMA_COLLECTION][name]
    candidates = lax.stop_gradient(z_e.reshape(-1, z_e.shape[-1]))
    candidates = lax.all_gather(candidates, AXIS, tiled=True)
    state = vq_lib.EMAState(ema["cluster_size"], ema["embed_sum"])
    state, codebook, restarted = vq_lib.ema_restart_dead_codes(
      state, ema["codebook"], candidates, key, self.restart_threshold
    )
    new = {"codebook": codebook, "cluster_size": state.cluster_size, "embed_sum": state.embed_sum}
    collection = dict(model_state[EMA_COLLECTION], **{name: new})
    return dict(model_state, **{EMA_COLLECTION: collection}), restarted

  # -- evaluation -------------------------------------------------------------

  def eval_fn(self, params, batch, keys, num_samples):
    del keys, num_samples
    x = batch["x"]
    out = self.module.apply(params, x)
    recon, codebook, commitment = self._terms(out, x)
    mean = self.decode_mean(out["output"])
    metrics = {
      "recon": recon,
      "mse": jnp.mean(jnp.square(mean - x).reshape(x.shape[0], -1), axis=1),
      "codebook_loss": codebook,
      "commitment_loss": commitment,
    }
    for suffix, _, size in self.levels:
      one_hot = jax.nn.one_hot(out["indices" + suffix].reshape(x.shape[0], -1), size)
      metrics["code_frequency" + suffix] = jnp.mean(one_hot, axis=1)  # [B, K]: see summarize_eval.
      metrics["commitment_loss" + suffix] = out["commitment_loss" + suffix]
    return metrics

  def summarize_eval(self, means):
    means = dict(means)
    frequencies = {
      s: np.asarray(means.pop("code_frequency" + s), np.float64) for s, *_ in self.levels
    }
    out = super().summarize_eval(means)
    for suffix, frequency in frequencies.items():
      out["perplexity" + suffix] = float(vq_lib.perplexity(jnp.asarray(frequency)))
      out["codes_used" + suffix] = float(np.sum(frequency > 0))
    return out

  # -- codes ------------------------------------------------------------------

  def encode(self, params, x):
    """Code maps ``[B, h, w]`` of data-space images (outside the device axis)."""
    return self.host_module.apply(params, x, method=VQVAE.encode)

  def decode(self, params, indices):
    """Images in data space from code maps ``[B, h, w]``."""
    return self.decode_mean(self.host_module.apply(params, indices, method=VQVAE.decode))

  # -- pictures ---------------------------------------------------------------

  def captions(self):
    return {
      "reconstructions": "column pairs: test input | its reconstruction",
      "codebook_usage": "code use on these test images only; eval/perplexity in the "
      "metrics is over the test split",
    }

  def pictures(self, params, batch, key):
    del key
    x = batch["x"]
    n = min(32, x.shape[0])
    out = self.compiled("apply", lambda: self.host_module.apply)(params, x)
    recon = self.decode_mean(out["output"][:n])
    pairs = jnp.stack([x[:n], recon], axis=1).reshape((2 * n,) + x.shape[1:])
    counts = np.asarray(vq_lib.codebook_usage(out["indices"], self.num_embeddings))
    return {
      "reconstructions": self.grid(pairs, nrow=16),
      "codebook_usage": image_lib.render_histogram(
        counts,
        f"code use on {x.shape[0]} test images ({int(np.sum(counts > 0))} of "
        f"{self.num_embeddings} codes, perplexity {float(vq_lib.perplexity(counts)):.1f})",
      ),
    }

"""VQ-VAE encoder, decoder and vector-quantizer layer (van den Oord et al. 2017).

The architecture follows the paper and Sonnet's VQ-VAE example: strided 4x4
convolutions down to a ``4x`` smaller grid (28x28 -> 7x7), residual blocks
(ReLU, 3x3 conv, ReLU, 1x1 conv), and a 1x1 projection to the embedding size.
The decoder mirrors it, upsampling with :class:`SubPixelUpsample` instead of
transposed convolutions (their weight gradient is very slow on XLA-CPU).
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from genjax.models import precision
from genjax.models.layers import SubPixelUpsample, to_float32
from genjax.objectives import vq

EMA_COLLECTION = "vq_ema"


class ResidualStack(nn.Module):
  """``num_blocks`` residual blocks ``x + conv1x1(relu(conv3x3(relu(x))))``, then ReLU.

  Attributes:
    features: channels of the residual stream (must match the input).
    hidden_features: channels inside each block.
    num_blocks: number of blocks.
    dtype: compute dtype (parameters stay float32).
  """

  features: int
  hidden_features: int = 32
  num_blocks: int = 2
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Applies the blocks to ``x`` ``[B, H, W, features]``; same output shape."""
    for i in range(self.num_blocks):
      conv3 = precision.Conv(
        self.hidden_features, (3, 3), padding="SAME", dtype=self.dtype, name=f"block_{i}_conv3"
      )
      h = conv3(nn.relu(x))
      x = x + precision.Conv(self.features, (1, 1), dtype=self.dtype, name=f"block_{i}_conv1")(
        nn.relu(h)
      )
    return nn.relu(x)


class VQEncoder(nn.Module):
  """Strided 4x4 convs -> 3x3 conv -> residual stack -> 1x1 conv to ``embedding_dim``.

  Attributes:
    channels: output channels of each stride-2 stage (two stages: ``H / 4``).
    num_res_blocks: residual blocks after the strided stages.
    res_channels: hidden channels inside each residual block.
    embedding_dim: size ``D`` of the vectors to quantize.
    dtype: compute dtype (parameters stay float32; ``z_e`` is float32).
  """

  channels: Sequence[int] = (32, 64)
  num_res_blocks: int = 2
  res_channels: int = 32
  embedding_dim: int = 64
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Encodes images.

    Args:
      x: images ``[B, H, W, C]`` with ``H, W`` divisible by ``2 ** len(channels)``.

    Returns:
      Pre-quantization vectors ``z_e`` of shape ``[B, H / 4, W / 4, D]`` for two stages.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> enc = VQEncoder(channels=(8, 16), res_channels=8, embedding_dim=4)
      >>> x = jnp.zeros((2, 28, 28, 1))
      >>> enc.apply(enc.init(jax.random.key(0), x), x).shape
      (2, 7, 7, 4)
    """
    factor = 2 ** len(self.channels)
    if x.ndim != 4 or x.shape[1] % factor or x.shape[2] % factor:
      raise ValueError(
        f"VQEncoder needs [B, H, W, C] with H, W divisible by {factor}, got {x.shape}"
      )
    dtype = self.dtype
    h = x.astype(dtype)
    for i, ch in enumerate(self.channels):
      h = nn.relu(precision.Conv(ch, (4, 4), (2, 2), "SAME", dtype=dtype, name=f"down_{i}")(h))
    width = self.channels[-1]
    h = precision.Conv(width, (3, 3), padding="SAME", dtype=dtype, name="conv_in")(h)
    h = ResidualStack(width, self.res_channels, self.num_res_blocks, dtype, name="res")(h)
    # Quantisation compares distances to the codebook: float32, so near ties are not rounded.
    return to_float32(precision.Conv(self.embedding_dim, (1, 1), dtype=dtype, name="pre_vq")(h))


class VQDecoder(nn.Module):
  """3x3 conv -> residual stack -> (SubPixelUpsample x2) per stage, mirroring :class:`VQEncoder`.

  With ``channels=(32, 64)`` the stages are: 3x3 conv to 64 channels at 7x7,
  residual blocks, upsample to 32 channels at 14x14, ReLU, upsample to
  ``out_channels`` at 28x28 (no activation: logits or values).

  Attributes:
    channels: the encoder's stage channels (finest first, as in :class:`VQEncoder`).
    num_res_blocks: residual blocks before upsampling.
    res_channels: hidden channels inside each residual block.
    out_channels: output channels per pixel (e.g. ``C * num_params``).
    dtype: compute dtype (parameters stay float32; the output is float32).
  """

  channels: Sequence[int] = (32, 64)
  num_res_blocks: int = 2
  res_channels: int = 32
  out_channels: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    """Decodes (quantized) latent grids.

    Args:
      z: latents ``[B, h, w, D]``.

    Returns:
      Output ``[B, h * 2**S, w * 2**S, out_channels]`` with ``S = len(channels)``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> dec = VQDecoder(channels=(8, 16), res_channels=8, out_channels=1)
      >>> z = jnp.zeros((2, 7, 7, 4))
      >>> dec.apply(dec.init(jax.random.key(0), z), z).shape
      (2, 28, 28, 1)
    """
    width = self.channels[-1]
    dtype = self.dtype
    h = precision.Conv(width, (3, 3), padding="SAME", dtype=dtype, name="conv_in")(z.astype(dtype))
    h = ResidualStack(width, self.res_channels, self.num_res_blocks, dtype, name="res")(h)
    for i, ch in enumerate(reversed(self.channels[:-1])):
      h = nn.relu(SubPixelUpsample(ch, scale=2, dtype=dtype, name=f"up_{i}")(h))
    return to_float32(SubPixelUpsample(self.out_channels, 2, dtype=dtype, name="output")(h))


def codebook_init(key: jax.Array, shape: tuple[int, int], dtype=jnp.float32) -> jax.Array:
  """Sonnet's codebook initialiser: uniform variance scaling with fan-in ``D``.

  Entries are ``U(-sqrt(3 / D), sqrt(3 / D))``, so each code has expected squared
  norm 1, comparable to encoder outputs at initialisation (the ``U(-1/K, 1/K)``
  alternative puts all codes near the origin).

  Args:
    key: PRNG key.
    shape: ``(K, D)``.
    dtype: dtype of the result.

  Returns:
    Codebook ``[K, D]``.
  """
  init = nn.initializers.variance_scaling(1.0, "fan_in", "uniform", in_axis=-1, out_axis=-2)
  return init(key, shape, dtype)


class VectorQuantizer(nn.Module):
  """Vector-quantization layer: nearest-code lookup, straight-through, VQ losses.

  Two codebook modes:

  * ``ema=False``: the codebook is the parameter ``params/codebook`` ``[K, D]``,
    learned by gradient descent on the codebook loss. Add
    ``codebook_loss + commitment_loss`` to the reconstruction loss.
  * ``ema=True``: the codebook and its moving averages live in the mutable
    collection ``"vq_ema"`` (``codebook`` ``[K, D]``, ``cluster_size`` ``[K]``,
    ``embed_sum`` ``[K, D]``; the last two form a
    :class:`genjax.objectives.vq.EMAState`) and get no gradients. The returned
    ``codebook_loss`` is then only a metric; use ``commitment_loss`` in the loss.
    Contract: the caller updates the collection once per training step, either

      - inside ``apply``: ``model.apply(variables, x, update_ema=True,
        mutable=["vq_ema"])`` returns ``(outputs, {"vq_ema": new})``, to be stored
        like BatchNorm statistics (counts and sums are ``lax.psum``-ed over
        ``axis_name`` if set, so replicas stay identical); or
      - outside: with :func:`genjax.objectives.vq.ema_update` on the ``z_e`` and
        ``indices`` of the step, writing back ``codebook``, ``cluster_size`` and
        ``embed_sum``.

    Dead-code restarts (:func:`genjax.objectives.vq.ema_restart_dead_codes`)
    also act on this collection.

  The quantization of a step always uses the codebook from before its update.

  Attributes:
    num_embeddings: codebook size ``K``.
    embedding_dim: code size ``D``.
    beta: commitment weight.
    ema: use the EMA codebook (see above).
    decay: EMA decay.
    epsilon: Laplace smoothing constant of the EMA update.
    axis_name: mapped device axis to ``psum`` EMA statistics over (``None``: no psum).
  """

  num_embeddings: int = 512
  embedding_dim: int = 64
  beta: float = 0.25
  ema: bool = False
  decay: float = 0.99
  epsilon: float = 1e-5
  axis_name: str | None = None

  def setup(self):
    shape = (self.num_embeddings, self.embedding_dim)
    if self.ema:
      self.ema_codebook = self.variable(
        EMA_COLLECTION, "codebook", lambda: codebook_init(self.make_rng("params"), shape)
      )
      # Initialised lazily from the codebook, as in `vq.ema_init`.
      self.ema_cluster_size = self.variable(
        EMA_COLLECTION, "cluster_size", lambda: vq.ema_init(self.ema_codebook.value).cluster_size
      )
      self.ema_embed_sum = self.variable(
        EMA_COLLECTION, "embed_sum", lambda: vq.ema_init(self.ema_codebook.value).embed_sum
      )
    else:
      self.codebook = self.param("codebook", codebook_init, shape)

  def get_codebook(self) -> jax.Array:
    """The current codebook ``[K, D]`` (from ``params`` or ``vq_ema``)."""
    return self.ema_codebook.value if self.ema else self.codebook

  def lookup(self, indices: jax.Array) -> jax.Array:
    """Codebook vectors of integer ``indices`` ``[...]`` -> ``[..., D]`` (e.g. prior samples).

    Use as ``model.apply(variables, indices, method=VectorQuantizer.lookup)``.
    """
    return jnp.take(self.get_codebook(), indices, axis=0)

  def __call__(
    self, z_e: jax.Array, update_ema: bool = False
  ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Quantizes encoder outputs.

    Args:
      z_e: encoder outputs ``[B, ..., D]``.
      update_ema: with ``ema=True``, write the EMA update of this batch into the
        ``"vq_ema"`` collection (which must be mutable).

    Returns:
      ``(z_q_st, indices, codebook_loss, commitment_loss)``: straight-through
      quantized vectors ``[B, ..., D]``, int32 code indices ``[B, ...]`` and the
      two losses ``[B]`` (see :func:`genjax.objectives.vq.vq_losses`).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> vq_layer = VectorQuantizer(num_embeddings=16, embedding_dim=4)
      >>> z_e = jnp.ones((2, 7, 7, 4))
      >>> params = vq_layer.init(jax.random.key(0), z_e)
      >>> z_q, idx, cb_loss, commit = vq_layer.apply(params, z_e)
      >>> z_q.shape, idx.shape, cb_loss.shape
      ((2, 7, 7, 4), (2, 7, 7), (2,))
    """
    codebook = self.get_codebook()
    z_q, indices, _ = vq.quantize(z_e, codebook)
    codebook_loss, commitment_loss = vq.vq_losses(z_e, z_q, self.beta)
    if update_ema:
      if not self.ema:
        raise ValueError("update_ema=True needs a VectorQuantizer with ema=True")
      if not self.is_mutable_collection(EMA_COLLECTION):
        raise ValueError(f"update_ema=True needs mutable=[{EMA_COLLECTION!r}] in apply")
      if not self.is_initializing():
        state = vq.EMAState(self.ema_cluster_size.value, self.ema_embed_sum.value)
        state, new_codebook = vq.ema_update(
          state,
          z_e.reshape(-1, self.embedding_dim),
          indices.reshape(-1),
          self.decay,
          self.epsilon,
          self.axis_name,
        )
        self.ema_cluster_size.value = state.cluster_size
        self.ema_embed_sum.value = state.embed_sum
        self.ema_codebook.value = new_codebook
    return vq.straight_through(z_e, z_q), indices, codebook_loss, commitment_loss


class VQVAE(nn.Module):
  """Encoder, vector quantizer and decoder in one module (van den Oord et al. 2017).

  Attributes:
    channels: stride-2 stage channels of the encoder (mirrored by the decoder).
    num_res_blocks: residual blocks in encoder and decoder.
    res_channels: hidden channels inside each residual block.
    num_embeddings: codebook size ``K``.
    embedding_dim: code size ``D``.
    beta: commitment weight.
    ema: EMA codebook (collection ``"vq_ema"``) instead of a learned parameter.
    decay: EMA decay.
    epsilon: Laplace smoothing of the EMA update.
    out_channels: decoder output channels per pixel.
    axis_name: device axis the EMA statistics are summed over (``None``: no psum).
    dtype: compute dtype of encoder and decoder; the quantizer and its codebook are float32.
  """

  channels: Sequence[int] = (32, 64)
  num_res_blocks: int = 2
  res_channels: int = 32
  num_embeddings: int = 512
  embedding_dim: int = 64
  beta: float = 0.25
  ema: bool = False
  decay: float = 0.99
  epsilon: float = 1e-5
  out_channels: int = 1
  axis_name: str | None = None
  dtype: Any = jnp.float32

  def setup(self):
    self.encoder = VQEncoder(
      tuple(self.channels), self.num_res_blocks, self.res_channels, self.embedding_dim, self.dtype
    )
    self.quantizer = VectorQuantizer(
      self.num_embeddings,
      self.embedding_dim,
      self.beta,
      self.ema,
      self.decay,
      self.epsilon,
      self.axis_name,
    )
    self.decoder = VQDecoder(
      tuple(self.channels), self.num_res_blocks, self.res_channels, self.out_channels, self.dtype
    )

  def __call__(self, x: jax.Array, update_ema: bool = False) -> dict[str, jax.Array]:
    """Encodes, quantizes and decodes ``x`` ``[B, H, W, C]``.

    Returns:
      ``{"output", "z_e", "indices", "codebook_loss", "commitment_loss"}``: the
      decoder output ``[B, H, W, out_channels]``, encoder outputs ``[B, h, w, D]``,
      int32 codes ``[B, h, w]`` and the two VQ losses ``[B]``.
    """
    z_e = self.encoder(x)
    z_q, indices, codebook_loss, commitment_loss = self.quantizer(z_e, update_ema)
    return {
      "output": self.decoder(z_q),
      "z_e": z_e,
      "indices": indices,
      "codebook_loss": codebook_loss,
      "commitment_loss": commitment_loss,
    }

  def encode(self, x: jax.Array) -> jax.Array:
    """Code maps ``[B, h, w]`` (int32) of images ``x``."""
    return self.quantizer(self.encoder(x))[1]

  def decode(self, indices: jax.Array) -> jax.Array:
    """Decoder output for code maps ``indices`` ``[B, h, w]``."""
    return self.decoder(self.quantizer.lookup(indices))

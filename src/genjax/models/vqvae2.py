"""VQ-VAE-2 (Razavi et al. 2019): a bottom and a top code map, and the bottom prior's network.

Sizes for 28x28 (32x32) images with two stride-2 encoder stages:

  * bottom encoder (:class:`~genjax.models.vqvae.VQEncoder`): image -> features at
    7x7 (8x8);
  * top encoder: one stride-2 4x4 convolution with SAME padding -> 4x4 (4x4),
    residual blocks, 1x1 projection, top quantizer;
  * top decoder (:class:`~genjax.models.vqvae.VQDecoder` with one stage): top
    codes -> 8x8, cropped to the bottom grid; concatenated with the bottom
    features and projected to the bottom quantizer's input (as in the paper);
  * image decoder (:class:`~genjax.models.vqvae.VQDecoder`): the bottom quantized
    map concatenated with the top quantized map upsampled to the bottom grid.

Bottom 7x7 / top 4x4 keeps both priors small (49 + 16 positions to sample,
against 49 for the one-level VQ-VAE): autoregressive sampling on CPU costs one
network pass per position. The crop drops the row and column that the SAME
padding of the 7 -> 4 convolution added.

Both levels use :class:`~genjax.models.vqvae.VectorQuantizer` (EMA codebooks in
the ``"vq_ema"`` collection under ``quantizer_top`` and ``quantizer_bottom``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from genjax.models.layers import SubPixelUpsample
from genjax.models.pixelcnn import GatedPixelCNN
from genjax.models.vqvae import VQVAE, ResidualStack, VectorQuantizer, VQDecoder, VQEncoder


def top_grid(bottom: tuple[int, int]) -> tuple[int, int]:
  """Side lengths of the top map over a bottom map (a SAME stride-2 convolution: ceil(n / 2))."""
  return tuple(-(-n // 2) for n in bottom)


def _crop(x: jax.Array, shape: tuple[int, int]) -> jax.Array:
  return x[:, : shape[0], : shape[1]]


class TopEncoder(nn.Module):
  """Stride-2 4x4 conv (SAME) -> 3x3 conv -> residual stack -> 1x1 conv to ``embedding_dim``."""

  features: int
  num_res_blocks: int = 2
  res_channels: int = 32
  embedding_dim: int = 64

  @nn.compact
  def __call__(self, h: jax.Array) -> jax.Array:
    """Bottom features ``[B, h, w, C]`` -> top vectors ``[B, ceil(h/2), ceil(w/2), D]``."""
    h = nn.relu(nn.Conv(self.features, (4, 4), strides=(2, 2), padding="SAME", name="down")(h))
    h = nn.Conv(self.features, (3, 3), padding="SAME", name="conv_in")(h)
    h = ResidualStack(self.features, self.res_channels, self.num_res_blocks, name="res")(h)
    return nn.Conv(self.embedding_dim, (1, 1), name="pre_vq")(h)


class VQVAE2(VQVAE):
  """Two-level VQ-VAE: bottom and top encoders, quantizers and a decoder reading both.

  Attributes are :class:`VQVAE`'s, with ``num_embeddings`` the bottom codebook's
  size, ``channels`` the bottom encoder's stages, and:

  Attributes:
    top_num_embeddings: top codebook size.
  """

  top_num_embeddings: int = 512

  def setup(self):
    width, d = self.channels[-1], self.embedding_dim
    blocks, res = self.num_res_blocks, self.res_channels
    quantizer = dict(beta=self.beta, ema=self.ema, decay=self.decay, epsilon=self.epsilon)
    quantizer["axis_name"] = self.axis_name
    self.encoder_bottom = VQEncoder(tuple(self.channels), blocks, res, width)
    self.encoder_top = TopEncoder(width, blocks, res, d)
    self.quantizer_top = VectorQuantizer(self.top_num_embeddings, d, **quantizer)
    self.decoder_top = VQDecoder((width,), blocks, res, d)
    self.pre_vq_bottom = nn.Conv(d, (1, 1))
    self.quantizer_bottom = VectorQuantizer(self.num_embeddings, d, **quantizer)
    self.upsample_top = SubPixelUpsample(d, scale=2)
    self.decoder = VQDecoder(tuple(self.channels), blocks, res, self.out_channels)

  def _levels(self, x: jax.Array, update_ema: bool):
    features = self.encoder_bottom(x)
    z_e_top = self.encoder_top(features)
    top = self.quantizer_top(z_e_top, update_ema)
    from_top = _crop(self.decoder_top(top[0]), features.shape[1:3])
    z_e_bottom = self.pre_vq_bottom(jnp.concatenate([features, from_top], axis=-1))
    bottom = self.quantizer_bottom(z_e_bottom, update_ema)
    return z_e_top, top, z_e_bottom, bottom

  def decode_quantized(self, z_q_top: jax.Array, z_q_bottom: jax.Array) -> jax.Array:
    """Decoder output from quantized maps ``[B, h_top, w_top, D]`` and ``[B, h, w, D]``."""
    up = _crop(self.upsample_top(z_q_top), z_q_bottom.shape[1:3])
    return self.decoder(jnp.concatenate([z_q_bottom, up], axis=-1))

  def __call__(self, x: jax.Array, update_ema: bool = False) -> dict[str, jax.Array]:
    """Encodes, quantizes and decodes ``x`` ``[B, H, W, C]``.

    Returns:
      ``output`` ``[B, H, W, out_channels]`` and, per level (suffix ``_top`` or
      ``_bottom``): ``z_e`` ``[B, h, w, D]``, ``z_q`` (straight-through),
      ``indices`` ``[B, h, w]`` int32, ``codebook_loss`` and ``commitment_loss`` ``[B]``;
      ``codebook_loss`` and ``commitment_loss`` without suffix are the sums over levels.
    """
    z_e_top, top, z_e_bottom, bottom = self._levels(x, update_ema)
    out = {"output": self.decode_quantized(top[0], bottom[0])}
    for level, z_e, (z_q, indices, codebook, commitment) in (
      ("top", z_e_top, top),
      ("bottom", z_e_bottom, bottom),
    ):
      out |= {f"z_e_{level}": z_e, f"z_q_{level}": z_q, f"indices_{level}": indices}
      out |= {f"codebook_loss_{level}": codebook, f"commitment_loss_{level}": commitment}
    for loss in ("codebook_loss", "commitment_loss"):  # Both levels' terms enter the loss.
      out[loss] = out[f"{loss}_top"] + out[f"{loss}_bottom"]
    return out

  def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Code maps ``(top [B, h_top, w_top], bottom [B, h, w])`` (int32) of images ``x``."""
    _, top, _, bottom = self._levels(x, False)
    return top[1], bottom[1]

  def decode(self, top: jax.Array, bottom: jax.Array) -> jax.Array:
    """Decoder output for code maps ``top`` and ``bottom``."""
    return self.decode_quantized(
      self.quantizer_top.lookup(top), self.quantizer_bottom.lookup(bottom)
    )


class TopConditioning(nn.Module):
  """The bottom prior's view of the top code map: a conditioning map over the bottom grid.

  Local features (embedding, 3x3 conv, residual blocks, sub-pixel upsampling,
  cropped to the bottom grid) plus a global term, a dense layer of the whole
  flattened map broadcast to every position, so that every bottom position sees
  every top code whatever the map's size.

  Attributes:
    num_embeddings: top codebook size.
    features: channels of the conditioning map.
    num_res_blocks: residual blocks at the top resolution.
  """

  num_embeddings: int
  features: int = 64
  num_res_blocks: int = 2

  @nn.compact
  def __call__(self, top: jax.Array, bottom_shape: tuple[int, int]) -> jax.Array:
    """Top codes ``[B, h_top, w_top]`` -> conditioning ``[B, *bottom_shape, features]``."""
    h = nn.Embed(self.num_embeddings, self.features, name="embed")(top)
    global_term = nn.Dense(self.features, name="global")(h.reshape(h.shape[0], -1))
    h = nn.Conv(self.features, (3, 3), padding="SAME", name="conv_in")(h)
    h = ResidualStack(self.features, self.features, self.num_res_blocks, name="res")(h)
    h = _crop(SubPixelUpsample(self.features, scale=2, name="up")(h), bottom_shape)
    return nn.relu(h + global_term[:, None, None, :])


class BottomPrior(nn.Module):
  """Gated PixelCNN over the bottom code map, conditioned on the top map and the class.

  :meth:`condition` runs once per sample; :meth:`logits` then runs once per
  sampled position with the same conditioning map.

  Attributes:
    bottom_shape: ``(h, w)`` of the bottom map.
    num_embeddings: bottom codebook size (values per position).
    top_num_embeddings: top codebook size.
    num_layers, features, kernel_size, num_classes: as in :class:`GatedPixelCNN`.
  """

  bottom_shape: tuple[int, int]
  num_embeddings: int
  top_num_embeddings: int
  num_layers: int = 8
  features: int = 64
  kernel_size: int = 3
  num_classes: int = 0

  def setup(self):
    self.conditioning = TopConditioning(self.top_num_embeddings, self.features)
    self.pixelcnn = GatedPixelCNN(
      num_layers=self.num_layers,
      features=self.features,
      num_outputs=self.num_embeddings,
      kernel_size=self.kernel_size,
      num_classes=self.num_classes,
      input_kind="categorical",
      num_embeddings=self.num_embeddings,
    )

  def condition(self, top: jax.Array) -> jax.Array:
    """Conditioning map ``[B, h, w, features]`` of top codes ``[B, h_top, w_top]``."""
    return self.conditioning(top, tuple(self.bottom_shape))

  def logits(self, bottom: jax.Array, cond: jax.Array, labels=None) -> jax.Array:
    """Logits ``[B, h, w, K]``; position ``i`` sees bottom codes ``< i`` and all of ``cond``."""
    return self.pixelcnn(bottom, labels, cond)

  def __call__(self, bottom: jax.Array, top: jax.Array, labels=None) -> jax.Array:
    return self.logits(bottom, self.condition(top), labels)

"""PixelCNN autoregressive models (van den Oord et al. 2016).

Two models over single-channel grids ``[B, H, W]`` in raster order (row by row,
left to right), both returning logits ``[B, H, W, V]``:

  * :class:`PixelCNN`: a plain stack of masked convolutions. Kept as a baseline;
    it has the "blind spot" of the original PixelCNN (pixels above and to the
    right of the receptive cone never influence a prediction).
  * :class:`GatedPixelCNN`: the gated PixelCNN of "Conditional Image Generation
    with PixelCNN Decoders", with separate vertical and horizontal stacks and no
    blind spot, optionally class-conditional.

genjax uses these for 1-channel images (binary or 256 levels) and for VQ-VAE code
maps (integer indices embedded to vectors). Each position therefore has a single
value, and masks act per position with no R/G/B sub-channel masking; the
channels of a feature map at one position are treated jointly.

Inputs are integers ``[B, H, W]`` (or ``[B, H, W, 1]``). With
``input_kind="binary"`` they are used as a float feature, so float inputs are
accepted too (and differentiable, e.g. for checking causality with Jacobians);
with ``input_kind="categorical"`` they are embedded with ``nn.Embed``.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from genjax.models import precision
from genjax.models.layers import Conv, check_labels, to_float32

INPUT_KINDS = ("binary", "categorical")
MASK_TYPES = ("A", "B")


def causal_mask(kernel_size: int, mask_type: str) -> np.ndarray:
  """Raster-order mask for a square kernel, shape ``[k, k]``.

  Taps above the centre row, and left of the centre in the centre row, are
  kept. Mask ``"A"`` also drops the centre (the current pixel: first layer);
  ``"B"`` keeps it (later layers, whose input at the centre is already causal).

  Args:
    kernel_size: odd kernel size ``k``.
    mask_type: ``"A"`` or ``"B"``.

  Returns:
    float32 numpy array of zeros and ones, shape ``[k, k]``.

  Example:
    >>> causal_mask(3, "A")
    array([[1., 1., 1.],
           [1., 0., 0.],
           [0., 0., 0.]], dtype=float32)
  """
  if mask_type not in MASK_TYPES:
    raise ValueError(f"mask_type must be one of {MASK_TYPES}, got {mask_type!r}")
  if kernel_size % 2 != 1:
    raise ValueError(f"kernel_size must be odd, got {kernel_size}")
  centre = kernel_size // 2
  mask = np.zeros((kernel_size, kernel_size), np.float32)
  mask[:centre, :] = 1.0
  mask[centre, : centre + (mask_type == "B")] = 1.0
  return mask


class MaskedConv2D(nn.Module):
  """Same-padded 2D convolution whose kernel is masked to raster order.

  The output at a position depends only on input positions before it (mask
  ``"A"``) or before and at it (mask ``"B"``); all input channels of an allowed
  position are used (no sub-channel masking, see the module docstring).

  Attributes:
    features: output channels.
    kernel_size: odd, square kernel size.
    mask_type: ``"A"`` or ``"B"``.
    dtype: compute dtype (the kernel stays float32).
  """

  features: int
  kernel_size: int = 3
  mask_type: str = "B"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Applies the masked convolution.

    Args:
      x: features, shape ``[B, H, W, C]``.

    Returns:
      Array of shape ``[B, H, W, features]``.
    """
    k = self.kernel_size
    mask = causal_mask(k, self.mask_type)
    mask = np.broadcast_to(mask[:, :, None, None], (k, k, x.shape[-1], self.features))
    conv = Conv(
      self.features, (k, k), padding="SAME", mask=jnp.asarray(mask), dtype=self.dtype, name="conv"
    )
    return conv(x)


def _check_kind(input_kind: str, num_embeddings: int) -> None:
  if input_kind not in INPUT_KINDS:
    raise ValueError(f"input_kind must be one of {INPUT_KINDS}, got {input_kind!r}")
  if input_kind == "categorical" and num_embeddings <= 0:
    raise ValueError("input_kind='categorical' needs num_embeddings > 0")


class InputEmbedding(nn.Module):
  """Turns a ``[B, H, W]`` (or ``[B, H, W, 1]``) grid into features ``[B, H, W, C]``.

  Attributes:
    input_kind: ``"binary"`` (the value itself as one float channel) or
      ``"categorical"`` (``nn.Embed`` of integer values).
    num_embeddings: number of categories for ``"categorical"``.
    features: embedding size for ``"categorical"``.
    dtype: compute dtype of the features.
  """

  input_kind: str = "binary"
  num_embeddings: int = 0
  features: int = 32
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    _check_kind(self.input_kind, self.num_embeddings)
    if x.ndim == 4:
      if x.shape[-1] != 1:
        raise ValueError(f"expected one channel, got input of shape {x.shape}")
      x = x[..., 0]
    if x.ndim != 3:
      raise ValueError(f"expected input of shape [B, H, W] or [B, H, W, 1], got {x.shape}")
    if self.input_kind == "binary":
      return x.astype(self.dtype)[..., None]
    if not jnp.issubdtype(x.dtype, jnp.integer):
      raise TypeError(f"categorical inputs must be integers, got {x.dtype}")
    return precision.Embed(self.num_embeddings, self.features, dtype=self.dtype, name="embed")(x)


def _class_bias(labels, num_classes: int, features: int, name: str, dtype) -> jax.Array | float:
  """Learned per-class bias ``[B, 1, 1, features]`` (0.0 when unconditional).

  float32 whatever ``dtype``: its gradient sums over every pixel. Callers round the sum.
  """
  if num_classes <= 0:
    return 0.0
  bias = precision.Embed(num_classes, features, dtype=dtype, name=name)(labels)
  return to_float32(bias)[:, None, None, :]


class _OutputHead(nn.Module):
  """ReLU -> 1x1 conv -> ReLU -> 1x1 conv to ``num_outputs`` logits (layer ``logits``)."""

  features: int
  num_outputs: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, h: jax.Array) -> jax.Array:
    h = Conv(self.features, (1, 1), dtype=self.dtype, name="hidden")(nn.relu(h))
    # float32 logits: the log-softmax of the likelihood and the sampler's draw read them.
    return to_float32(Conv(self.num_outputs, (1, 1), dtype=self.dtype, name="logits")(nn.relu(h)))


class PixelCNN(nn.Module):
  """Plain PixelCNN: masked 'A' conv, then residual masked 'B' convs (has a blind spot).

  Stacking raster-masked ``k x k`` kernels only grows the receptive field along
  up-left/up/up-right diagonals, so e.g. pixel ``(r - 1, c + 2)`` never reaches
  position ``(r, c)`` with 3x3 kernels. :class:`GatedPixelCNN` fixes this.

  Attributes:
    num_layers: number of masked convolutions (the first is type ``"A"``).
    features: channels of the hidden feature maps.
    num_outputs: categories ``V`` per position (binary data: ``V = 2``).
    kernel_size: odd kernel size of every masked convolution.
    num_classes: number of label classes; 0 means unconditional. A per-class bias
      is added after every convolution.
    input_kind: ``"binary"`` or ``"categorical"`` (see :class:`InputEmbedding`).
    num_embeddings: number of input categories for ``"categorical"``.
    dtype: compute dtype (parameters stay float32; the logits are float32).
  """

  num_layers: int = 5
  features: int = 32
  num_outputs: int = 2
  kernel_size: int = 3
  num_classes: int = 0
  input_kind: str = "binary"
  num_embeddings: int = 0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, labels: jax.Array | None = None) -> jax.Array:
    """Computes per-position logits.

    Args:
      x: grid ``[B, H, W]`` or ``[B, H, W, 1]`` (ints; floats allowed for ``"binary"``).
      labels: integer labels ``[B]``; required iff ``num_classes > 0``.

    Returns:
      Logits ``[B, H, W, num_outputs]``; position ``i`` depends only on ``x`` at
      raster positions ``< i``.
    """
    check_labels(labels, self.num_classes, "PixelCNN")
    dtype = self.dtype
    embed = InputEmbedding(self.input_kind, self.num_embeddings, self.features, dtype, name="input")
    h = embed(x)
    for i in range(self.num_layers):
      mask_type = "A" if i == 0 else "B"
      conv = MaskedConv2D(self.features, self.kernel_size, mask_type, dtype, name=f"conv_{i}")
      out = conv(h if i == 0 else nn.relu(h))
      bias = _class_bias(labels, self.num_classes, self.features, f"class_bias_{i}", dtype)
      out = (out + bias).astype(dtype)
      # No residual around the first layer: its input contains the current pixel.
      h = out if i == 0 else h + out
    return _OutputHead(self.features, self.num_outputs, dtype, name="head")(h)


def shift_down(x: jax.Array) -> jax.Array:
  """Shifts ``[B, H, W, C]`` down by one row (zeros enter at the top)."""
  return jnp.pad(x, ((0, 0), (1, 0), (0, 0), (0, 0)))[:, :-1]


def shift_right(x: jax.Array) -> jax.Array:
  """Shifts ``[B, H, W, C]`` right by one column (zeros enter at the left)."""
  return jnp.pad(x, ((0, 0), (0, 0), (1, 0), (0, 0)))[:, :, :-1]


def _gate(pre: jax.Array) -> jax.Array:
  """Gated activation ``tanh(f) * sigmoid(g)`` of ``pre = concat(f, g)``."""
  f, g = jnp.split(pre, 2, axis=-1)
  return jnp.tanh(f) * nn.sigmoid(g)


class GatedBlock(nn.Module):
  """One gated PixelCNN layer with a vertical and a horizontal stack.

  Causality uses padding and shifts instead of masks:

  * vertical stack: a ``(k//2 + 1) x k`` conv padded so row ``r`` sees rows
    ``r - k//2 .. r`` (all columns within ``k//2``). Its features at row ``r``
    therefore include row ``r`` itself, so they reach the horizontal stack only
    after :func:`shift_down` (the v->h 1x1 connection), which makes them depend
    on rows strictly above.
  * horizontal stack: a ``1 x (k//2 + 1)`` conv padded so column ``c`` sees
    columns ``c - k//2 .. c`` of the same row. In the first layer (``"A"``) its
    input is the data shifted right by one, excluding the current pixel; later
    layers (``"B"``) read the already causal horizontal features and add a
    residual connection.

  Together the stacks cover every earlier pixel (no blind spot). Class
  conditioning adds a learned per-class bias to both pre-activations (the
  paper's ``V^T h`` term with a one-hot ``h``). Spatial conditioning adds a
  1x1 convolution of a map ``cond`` (the paper's ``V * s``); the map is an input
  that the grid does not influence, so every position may see all of it.

  Attributes:
    features: channels ``F`` of both stacks (pre-activations have ``2F``).
    kernel_size: odd kernel size ``k``.
    mask_type: ``"A"`` for the first layer, ``"B"`` afterwards.
    num_classes: number of label classes; 0 means unconditional.
    dtype: compute dtype (parameters stay float32).
  """

  features: int
  kernel_size: int = 3
  mask_type: str = "B"
  num_classes: int = 0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(
    self,
    v: jax.Array,
    h: jax.Array,
    labels: jax.Array | None = None,
    cond: jax.Array | None = None,
  ) -> tuple[jax.Array, jax.Array]:
    """Applies the layer.

    Args:
      v: vertical-stack features ``[B, H, W, C]``.
      h: horizontal-stack features ``[B, H, W, C]`` (the data in the first layer).
      labels: integer labels ``[B]`` if ``num_classes > 0``.
      cond: optional conditioning map ``[B, H, W, C_cond]``, not derived from the grid.

    Returns:
      ``(v_out, h_out)``, each ``[B, H, W, F]``.
    """
    if self.mask_type not in MASK_TYPES:
      raise ValueError(f"mask_type must be one of {MASK_TYPES}, got {self.mask_type!r}")
    if self.kernel_size % 2 != 1:
      raise ValueError(f"kernel_size must be odd, got {self.kernel_size}")
    two_f = 2 * self.features
    p = self.kernel_size // 2
    conv = functools.partial(Conv, dtype=self.dtype)
    v_pre = conv(two_f, (p + 1, self.kernel_size), padding=((p, 0), (p, p)), name="v_conv")(v)
    h_in = shift_right(h) if self.mask_type == "A" else h
    h_pre = conv(two_f, (1, p + 1), padding=((0, 0), (p, 0)), name="h_conv")(h_in)
    h_pre = h_pre + conv(two_f, (1, 1), name="v_to_h")(shift_down(v_pre))
    v_pre = v_pre + _class_bias(labels, self.num_classes, two_f, "v_class_bias", self.dtype)
    h_pre = h_pre + _class_bias(labels, self.num_classes, two_f, "h_class_bias", self.dtype)
    if cond is not None:
      v_pre = v_pre + conv(two_f, (1, 1), name="v_cond")(cond)
      h_pre = h_pre + conv(two_f, (1, 1), name="h_cond")(cond)
    v_pre, h_pre = v_pre.astype(self.dtype), h_pre.astype(self.dtype)
    v_out = _gate(v_pre)
    h_out = conv(self.features, (1, 1), name="h_out")(_gate(h_pre))
    if self.mask_type == "B":
      h_out = h_out + h
    return v_out, h_out


class GatedPixelCNN(nn.Module):
  """Gated PixelCNN without blind spot, optionally class-conditional.

  Binary data is modelled with ``V = num_outputs = 2`` logits per position
  (a softmax over {0, 1}) rather than one Bernoulli logit, so binary images,
  256-level images and code maps share :func:`genjax.objectives.autoregressive.categorical_nll`
  and the sampler.

  With ``kernel_size = k`` and ``L`` layers, position ``(r, c)`` sees (at least)
  rows ``r - L * (k//2) - 1 .. r - 1`` over columns ``c - L * (k//2) .. c + L * (k//2)``,
  plus the ``L * (k//2) + 1`` pixels to its left in row ``r``.

  Attributes:
    num_layers: number of gated layers (the first is type ``"A"``).
    features: channels ``F`` of both stacks.
    num_outputs: categories ``V`` per position.
    kernel_size: odd kernel size ``k``.
    num_classes: number of label classes; 0 means unconditional.
    input_kind: ``"binary"`` or ``"categorical"`` (see :class:`InputEmbedding`).
    num_embeddings: number of input categories for ``"categorical"`` (e.g. 256
      grey levels or the VQ-VAE codebook size).
    dtype: compute dtype (parameters stay float32; the logits are float32).
  """

  num_layers: int = 8
  features: int = 64
  num_outputs: int = 2
  kernel_size: int = 3
  num_classes: int = 0
  input_kind: str = "binary"
  num_embeddings: int = 0
  dtype: Any = jnp.float32

  def context_rows(self) -> int:
    """Rows above a position that its logits can depend on: ``num_layers * (k // 2) + 1``.

    The vertical stack reaches ``k // 2`` rows further up per layer and joins
    the horizontal stack one row down; samplers use this to run the network on
    a window of rows instead of the whole image.
    """
    return self.num_layers * (self.kernel_size // 2) + 1

  @nn.compact
  def __call__(
    self, x: jax.Array, labels: jax.Array | None = None, cond: jax.Array | None = None
  ) -> jax.Array:
    """Computes per-position logits.

    Args:
      x: grid ``[B, H, W]`` or ``[B, H, W, 1]`` (ints; floats allowed for ``"binary"``).
      labels: integer labels ``[B]``; required iff ``num_classes > 0``.
      cond: optional spatial conditioning ``[B, H, W, C]`` fed to every layer
        (e.g. a VQ-VAE-2 bottom prior's view of the top code map).

    Returns:
      Logits ``[B, H, W, num_outputs]``; position ``i`` depends only on ``x`` at
      raster positions ``< i`` (and on all of ``cond``).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> model = GatedPixelCNN(num_layers=2, features=8, num_outputs=2, num_classes=10)
      >>> x, y = jnp.zeros((3, 7, 7), jnp.int32), jnp.arange(3)
      >>> params = model.init(jax.random.key(0), x, y)
      >>> model.apply(params, x, y).shape
      (3, 7, 7, 2)
    """
    check_labels(labels, self.num_classes, "GatedPixelCNN")
    if cond is not None and cond.shape[:3] != x.shape[:3]:
      raise ValueError(f"cond must be [B, H, W, C] over the grid {x.shape[:3]}, got {cond.shape}")
    if self.num_layers < 1:
      raise ValueError(f"num_layers must be >= 1, got {self.num_layers}")
    dtype = self.dtype
    x = InputEmbedding(self.input_kind, self.num_embeddings, self.features, dtype, name="input")(x)
    v, h = x, x
    for i in range(self.num_layers):
      v, h = GatedBlock(
        self.features,
        self.kernel_size,
        "A" if i == 0 else "B",
        self.num_classes,
        dtype,
        name=f"gated_{i}",
      )(v, h, labels, cond)
    return _OutputHead(self.features, self.num_outputs, dtype, name="head")(h)

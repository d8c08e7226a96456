"""Shared building blocks for the model zoo: activations, label conditioning, upsampling, Conv."""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn
from jax import lax

from genjax.models.precision import Conv as PreciseConv

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
  "relu": nn.relu,
  "gelu": nn.gelu,
  "tanh": jnp.tanh,
  "silu": nn.silu,
  "leaky_relu": nn.leaky_relu,
  "softplus": nn.softplus,
}


# Compute dtypes a network may run in; parameters are always float32.
DTYPES: dict[str, Any] = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def compute_dtype(name: str) -> Any:
  """The jnp dtype of a ``model.dtype`` name ("float32" or "bfloat16").

  Raises:
      ValueError: If `name` is not a key of `DTYPES`.
  """
  if name not in DTYPES:
    raise ValueError(f"Unknown compute dtype {name!r}; allowed values: {sorted(DTYPES)}.")
  return DTYPES[name]


def to_float32(tree: Any) -> Any:
  """Casts every floating array of `tree` to float32 (integers such as code indices stay).

  Networks end with this, so losses, likelihoods and samplers never see bfloat16.
  """

  def cast(x):
    return x.astype(jnp.float32) if jnp.issubdtype(x.dtype, jnp.floating) else x

  return jax.tree.map(cast, tree)


def get_activation(name: str) -> Callable[[jax.Array], jax.Array]:
  """Looks up an activation function by name.

  Args:
      name: One of the keys of `ACTIVATIONS`.

  Returns:
      The elementwise activation function.

  Raises:
      ValueError: If `name` is not a known activation.
  """
  if name not in ACTIVATIONS:
    raise ValueError(f"Unknown activation {name!r}; allowed values: {sorted(ACTIVATIONS)}.")
  return ACTIVATIONS[name]


def one_hot_concat(x_flat: jax.Array, labels: jax.Array, num_classes: int) -> jax.Array:
  """Appends a one-hot encoding of `labels` to flat features.

  Args:
      x_flat: Features, shape `[B, D]`.
      labels: Integer class labels, shape `[B]`.
      num_classes: Number of classes `K`.

  Returns:
      Array of shape `[B, D + K]` with the dtype of `x_flat`.
  """
  one_hot = jax.nn.one_hot(labels, num_classes, dtype=x_flat.dtype)
  return jnp.concatenate([x_flat, one_hot], axis=-1)


def one_hot_channels(x: jax.Array, labels: jax.Array, num_classes: int) -> jax.Array:
  """Appends a one-hot label, broadcast over space, as extra image channels.

  Args:
      x: Images, shape `[B, H, W, C]`.
      labels: Integer class labels, shape `[B]`.
      num_classes: Number of classes `K`.

  Returns:
      Array of shape `[B, H, W, C + K]`.
  """
  batch, height, width, _ = x.shape
  one_hot = jax.nn.one_hot(labels, num_classes, dtype=x.dtype)
  planes = jnp.broadcast_to(one_hot[:, None, None, :], (batch, height, width, num_classes))
  return jnp.concatenate([x, planes], axis=-1)


def depth_to_space(x: jax.Array, block_size: int) -> jax.Array:
  """Rearranges channel blocks into spatial blocks (pixel shuffle, TF "DCR" order).

  Output pixel `(h * r + i, w * r + j, c)` is input `(h, w, (i * r + j) * C + c)`.

  Args:
      x: Array of shape `[B, H, W, C * r * r]` with `r = block_size`.
      block_size: Spatial upscaling factor `r`.

  Returns:
      Array of shape `[B, H * r, W * r, C]`.

  Raises:
      ValueError: If the channel count is not divisible by `r * r`.
  """
  batch, height, width, depth = x.shape
  r = block_size
  if depth % (r * r):
    raise ValueError(f"depth_to_space: channels {depth} not divisible by block_size^2={r * r}.")
  channels = depth // (r * r)
  x = x.reshape(batch, height, width, r, r, channels)
  x = x.transpose(0, 1, 3, 2, 4, 5)  # [B, H, r, W, r, C]
  return x.reshape(batch, height * r, width * r, channels)


class SubPixelUpsample(nn.Module):
  """Upsampling by a stride-1 convolution followed by `depth_to_space`.

  Used instead of a stride-2 `ConvTranspose`: on XLA-CPU the weight gradient of
  a stride-2 transposed convolution is pathologically slow (measured 508 ms vs
  36 ms forward for 128->64 channels at 14->28 px, batch 64). A stride-1 conv
  plus a pixel shuffle has the same expressiveness and a fast backward pass.

  Attributes:
      features: Output channels after upsampling.
      scale: Spatial upscaling factor.
      kernel_size: Spatial size of the (square) convolution kernel.
      dtype: Compute dtype (parameters stay float32).
  """

  features: int
  scale: int = 2
  kernel_size: int = 3
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Upsamples `x`.

    Args:
        x: Array of shape `[B, H, W, C_in]`.

    Returns:
        Array of shape `[B, H * scale, W * scale, features]`.
    """
    k = self.kernel_size
    x = PreciseConv(self.features * self.scale**2, (k, k), padding="SAME", dtype=self.dtype)(x)
    return depth_to_space(x, self.scale)


_NHWC = ("NHWC", "HWIO", "NHWC")

# Whether `conv_general_dilated` may take its per-tap kernel gradient on XLA:CPU
# (the benchmark switches it off to time XLA's own gradient as the baseline).
TAP_KERNEL_GRADIENT = True
# Strided convolutions and kernels of at most this many taps take it: XLA:CPU's
# own kernel gradient is 4x slower than one matmul for a 1x1 kernel and slow for
# strided convolutions, but faster than the per-tap matmuls for the stride-1 3x3,
# 1x3 and 3x5 kernels of the U-Net and the PixelCNN (benchmarks.md).
TAP_KERNEL_GRADIENT_MAX_TAPS = 1


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _tap_conv(x: jax.Array, kernel: jax.Array, strides: tuple[int, int], pads: tuple) -> jax.Array:
  return lax.conv_general_dilated(x, kernel, strides, pads, dimension_numbers=_NHWC)


def _tap_conv_fwd(x, kernel, strides, pads):
  return _tap_conv(x, kernel, strides, pads), (x, kernel)


def _tap_conv_bwd(strides, pads, residuals, dy):
  x, kernel = residuals
  _, input_vjp = jax.vjp(
    lambda x_: lax.conv_general_dilated(x_, kernel, strides, pads, dimension_numbers=_NHWC), x
  )
  (dx,) = input_vjp(dy)
  # The kernel gradient as one matmul per tap: d kernel[i, j] = sum over batch and
  # output positions of x(shifted by the tap)^T dy, contracted over B*H'*W' rows.
  kh, kw, cin, cout = kernel.shape
  (sh, sw), (_, ho, wo, _) = strides, dy.shape
  xp = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
  dy2 = dy.reshape(-1, cout)
  taps = [
    lax.dot_general(
      xp[:, i : i + sh * (ho - 1) + 1 : sh, j : j + sw * (wo - 1) + 1 : sw, :].reshape(-1, cin),
      dy2,
      (((0,), (0,)), ((), ())),
      preferred_element_type=jnp.float32,  # a sum over B*H'*W' rows: never in bfloat16
    )
    for i in range(kh)
    for j in range(kw)
  ]
  dkernel = jnp.stack(taps).reshape(kh, kw, cin, cout).astype(kernel.dtype)
  return dx, dkernel


_tap_conv.defvjp(_tap_conv_fwd, _tap_conv_bwd)


def conv_general_dilated(
  lhs: jax.Array,
  rhs: jax.Array,
  window_strides: Sequence[int],
  padding: str | Sequence[tuple[int, int]],
  lhs_dilation: Sequence[int] | None = None,
  rhs_dilation: Sequence[int] | None = None,
  dimension_numbers: Any = None,
  feature_group_count: int = 1,
  precision: Any = None,
  **kwargs: Any,
) -> jax.Array:
  """`lax.conv_general_dilated` with a faster kernel gradient on XLA:CPU.

  XLA:CPU computes the kernel gradient of a convolution as another convolution
  whose "kernel" is the whole output map, which is slow (batch 64 at 28x28 with
  64 -> 64 channels: 44 ms for a 1x1 kernel whose forward pass takes 5 ms).
  On the CPU backend, 2D convolutions with NHWC inputs, HWIO kernels, no
  dilation and no feature groups, whose kernel is 1x1 or whose stride is
  above 1, therefore get a custom VJP whose kernel gradient is one matmul per
  kernel tap (6 ms for that 1x1 case); the input gradient stays XLA's. Stride-1
  kernels of several taps keep XLA's gradient, which is faster for them.
  Values and gradients equal `lax.conv_general_dilated`'s up to float
  rounding, and the call signature is the same, so flax's
  `PreciseConv(..., conv_general_dilated=conv_general_dilated)` keeps its
  parameters. Every other case, and every other backend, calls `lax` directly.
  Forward-mode differentiation (`jax.jvp`) is not available on the custom path.
  """
  fast = (
    TAP_KERNEL_GRADIENT
    and jax.default_backend() == "cpu"
    and lhs.ndim == 4
    and dimension_numbers is not None
    and lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
    == lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC)
    and all(d == 1 for d in (lhs_dilation or (1, 1)))
    and all(d == 1 for d in (rhs_dilation or (1, 1)))
    and feature_group_count == 1
    and precision is None
    and kwargs.get("batch_group_count", 1) == 1
    and kwargs.get("preferred_element_type") is None
    and (
      rhs.shape[0] * rhs.shape[1] <= TAP_KERNEL_GRADIENT_MAX_TAPS
      or any(int(s) > 1 for s in window_strides)
    )
  )
  if not fast:
    return lax.conv_general_dilated(
      lhs,
      rhs,
      window_strides,
      padding,
      lhs_dilation=lhs_dilation,
      rhs_dilation=rhs_dilation,
      dimension_numbers=dimension_numbers,
      feature_group_count=feature_group_count,
      precision=precision,
      **kwargs,
    )
  strides = tuple(int(s) for s in window_strides)
  if isinstance(padding, str):
    padding = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], strides, padding)
  pads = tuple((int(lo), int(hi)) for lo, hi in padding)
  return _tap_conv(lhs, rhs, strides, pads)


Conv = functools.partial(PreciseConv, conv_general_dilated=conv_general_dilated)
"""`flax.linen.Conv` using :func:`conv_general_dilated` (same parameters, faster CPU training)."""


def check_labels(labels: jax.Array | None, num_classes: int, name: str) -> None:
  """Refuses a conditional module (``num_classes > 0``) called without labels."""
  if num_classes > 0 and labels is None:
    raise ValueError(f"{name} is conditional (num_classes={num_classes}) but labels is None.")

"""Convolutional encoders and decoders (no ConvTranspose: see `SubPixelUpsample`)."""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from genjax.models import precision
from genjax.models.layers import (
  SubPixelUpsample,
  check_labels,
  get_activation,
  one_hot_channels,
  one_hot_concat,
  to_float32,
)
from genjax.models.mlp import GaussianHeads


def check_divisible(shape: Sequence[int], channels: Sequence[int]) -> tuple[int, int]:
  """Checks that H and W of `shape` survive `len(channels)` halvings exactly.

  Args:
      shape: Data shape `(H, W, C)`.
      channels: One entry per 2x resolution stage.

  Returns:
      The base resolution `(H / 2^n, W / 2^n)`.

  Raises:
      ValueError: If H or W is not divisible by `2^len(channels)`.
  """
  if len(shape) != 3:
    raise ValueError(f"Conv models need an (H, W, C) shape, got {tuple(shape)}.")
  factor = 2 ** len(channels)
  height, width = shape[0], shape[1]
  if height % factor or width % factor:
    raise ValueError(
      f"Data shape {tuple(shape)} is incompatible with conv channels "
      f"{tuple(channels)}: H and W must be divisible by 2^{len(channels)}={factor}."
    )
  return height // factor, width // factor


class ConvEncoder(nn.Module):
  """Stride-2 3x3 convs -> flatten -> Dense hidden -> latent heads.

  Attributes:
      channels: Output channels of each stride-2 conv stage.
      latent_dim: Size `D` of the latent code.
      hidden_size: Width of the Dense layer after flattening (0 = none).
      activation: Name of the activation (see `ACTIVATIONS`).
      num_classes: Number of label classes; 0 means unconditional.
      stochastic: If True output `(mean, log_var)`, else a single code.
      dtype: Compute dtype (parameters stay float32; outputs are float32).
  """

  channels: Sequence[int] = (32, 64)
  latent_dim: int = 16
  hidden_size: int = 256
  activation: str = "relu"
  num_classes: int = 0
  stochastic: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(
    self, x: jax.Array, labels: jax.Array | None = None
  ) -> jax.Array | tuple[jax.Array, jax.Array]:
    """Encodes a batch of images.

    Args:
        x: Images `[B, H, W, C]`.
        labels: Integer labels `[B]`; required iff `num_classes > 0`.

    Returns:
        `(mean, log_var)` each `[B, D]` when stochastic, else a code `[B, D]`.
    """
    check_labels(labels, self.num_classes, "ConvEncoder")
    act = get_activation(self.activation)
    h = x.astype(self.dtype)
    if self.num_classes > 0:
      h = one_hot_channels(h, labels, self.num_classes)
    for ch in self.channels:
      h = act(precision.Conv(ch, (3, 3), strides=(2, 2), padding="SAME", dtype=self.dtype)(h))
    h = h.reshape(h.shape[0], -1)
    if self.hidden_size > 0:
      h = act(precision.Dense(self.hidden_size, dtype=self.dtype)(h))
    return GaussianHeads(self.latent_dim, self.stochastic, self.dtype, name="heads")(h)


class ConvDecoder(nn.Module):
  """Dense -> base feature map -> (SubPixelUpsample x2 + 3x3 conv) per stage -> 3x3 conv.

  Attributes:
      channels: Channels of each upsampling stage, coarsest first.
      output_shape: Data shape `(H, W, C)`; H, W divisible by `2^len(channels)`.
      num_params: Distribution parameters per element (1 or 2).
      hidden_size: Width of the Dense layer before the base map (0 = none).
      activation: Name of the activation (see `ACTIVATIONS`).
      num_classes: Number of label classes; 0 means unconditional.
      dtype: Compute dtype (parameters stay float32; the output is float32).
  """

  channels: Sequence[int] = (64, 32)
  output_shape: Sequence[int] = (28, 28, 1)
  num_params: int = 1
  hidden_size: int = 256
  activation: str = "relu"
  num_classes: int = 0
  dtype: Any = jnp.float32

  def __post_init__(self):
    # Fail at construction, not deep inside a jitted init, on bad shapes.
    check_divisible(self.output_shape, self.channels)
    super().__post_init__()

  @nn.compact
  def __call__(self, z: jax.Array, labels: jax.Array | None = None) -> jax.Array:
    """Decodes a batch of codes.

    Args:
        z: Latent codes `[B, D]`.
        labels: Integer labels `[B]`; required iff `num_classes > 0`.

    Returns:
        Parameters of shape `[B, H, W, C, num_params]`; index 0 of the last axis
        is the mean/logits, index 1 (if present) the log-variance/log-scale.
    """
    check_labels(labels, self.num_classes, "ConvDecoder")
    act = get_activation(self.activation)
    base_h, base_w = check_divisible(self.output_shape, self.channels)
    height, width, out_ch = self.output_shape
    dtype = self.dtype
    h = z.astype(dtype)
    if self.num_classes > 0:
      h = one_hot_concat(h, labels, self.num_classes)
    if self.hidden_size > 0:
      h = act(precision.Dense(self.hidden_size, dtype=dtype)(h))
    h = act(precision.Dense(base_h * base_w * self.channels[0], dtype=dtype)(h))
    h = h.reshape(z.shape[0], base_h, base_w, self.channels[0])
    for ch in self.channels:
      h = act(SubPixelUpsample(ch, scale=2, dtype=dtype)(h))
      h = act(precision.Conv(ch, (3, 3), padding="SAME", dtype=dtype)(h))
    out = precision.Conv(
      out_ch * self.num_params, (3, 3), padding="SAME", dtype=dtype, name="output"
    )(h)
    out = to_float32(out)
    return jnp.reshape(out, (z.shape[0], height, width, out_ch, self.num_params))

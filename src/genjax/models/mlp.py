"""Fully connected encoders and decoders."""

from __future__ import annotations

import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from genjax.models import precision
from genjax.models.layers import check_labels, get_activation, one_hot_concat, to_float32


class GaussianHeads(nn.Module):
  """Linear heads for a diagonal Gaussian posterior, or a single deterministic code.

  Attributes:
      latent_dim: Size `D` of the latent code.
      stochastic: If True return `(mean, log_var)`, else a single code.
      dtype: Compute dtype; the outputs are float32 whatever it is.
  """

  latent_dim: int
  stochastic: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, h: jax.Array) -> jax.Array | tuple[jax.Array, jax.Array]:
    """Maps features `[B, F]` to `(mean, log_var)` each `[B, D]`, or a code `[B, D]`."""
    if not self.stochastic:
      return to_float32(precision.Dense(self.latent_dim, dtype=self.dtype, name="code")(h))
    mean = precision.Dense(self.latent_dim, dtype=self.dtype, name="mean")(h)
    # Zero bias keeps the initial posterior variance near 1 (log_var ~ 0).
    zeros = nn.initializers.zeros
    log_var = precision.Dense(self.latent_dim, bias_init=zeros, dtype=self.dtype, name="log_var")(h)
    return to_float32((mean, log_var))


class MLPEncoder(nn.Module):
  """Flatten -> (one-hot label) -> Dense hidden layers -> latent heads.

  Attributes:
      hidden_sizes: Widths of the hidden Dense layers.
      latent_dim: Size `D` of the latent code.
      activation: Name of the hidden activation (see `ACTIVATIONS`).
      num_classes: Number of label classes; 0 means unconditional.
      stochastic: If True output `(mean, log_var)`, else a single code.
      dtype: Compute dtype (parameters stay float32; outputs are float32).
  """

  hidden_sizes: Sequence[int]
  latent_dim: int
  activation: str = "relu"
  num_classes: int = 0
  stochastic: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(
    self, x: jax.Array, labels: jax.Array | None = None
  ) -> jax.Array | tuple[jax.Array, jax.Array]:
    """Encodes a batch.

    Args:
        x: Inputs of shape `[B, ...]` (e.g. images `[B, H, W, C]`).
        labels: Integer labels `[B]`; required iff `num_classes > 0`.

    Returns:
        `(mean, log_var)` each `[B, D]` when stochastic, else a code `[B, D]`.
    """
    check_labels(labels, self.num_classes, "MLPEncoder")
    act = get_activation(self.activation)
    h = x.reshape(x.shape[0], -1).astype(self.dtype)
    if self.num_classes > 0:
      h = one_hot_concat(h, labels, self.num_classes)
    for width in self.hidden_sizes:
      h = act(precision.Dense(width, dtype=self.dtype)(h))
    return GaussianHeads(self.latent_dim, self.stochastic, self.dtype, name="heads")(h)


class MLPDecoder(nn.Module):
  """Latent (+ one-hot label) -> Dense hidden layers -> per-pixel distribution params.

  Attributes:
      hidden_sizes: Widths of the hidden Dense layers.
      output_shape: Data shape `(H, W, C)` (any shape works).
      num_params: Distribution parameters per element (1 or 2).
      activation: Name of the hidden activation (see `ACTIVATIONS`).
      num_classes: Number of label classes; 0 means unconditional.
      dtype: Compute dtype (parameters stay float32; the output is float32).
  """

  hidden_sizes: Sequence[int]
  output_shape: Sequence[int]
  num_params: int = 1
  activation: str = "relu"
  num_classes: int = 0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z: jax.Array, labels: jax.Array | None = None) -> jax.Array:
    """Decodes a batch of codes.

    Args:
        z: Latent codes `[B, D]`.
        labels: Integer labels `[B]`; required iff `num_classes > 0`.

    Returns:
        Parameters of shape `[B, *output_shape, num_params]`; index 0 of the last
        axis is the mean/logits, index 1 (if present) the log-variance/log-scale.
    """
    check_labels(labels, self.num_classes, "MLPDecoder")
    act = get_activation(self.activation)
    h = z.astype(self.dtype)
    if self.num_classes > 0:
      h = one_hot_concat(h, labels, self.num_classes)
    for width in self.hidden_sizes:
      h = act(precision.Dense(width, dtype=self.dtype)(h))
    size = math.prod(self.output_shape) * self.num_params
    out = to_float32(precision.Dense(size, dtype=self.dtype, name="output")(h))
    return jnp.reshape(out, (z.shape[0], *self.output_shape, self.num_params))

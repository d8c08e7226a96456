"""Encoder/decoder pair shared by AE, DAE and VAE, plus a config-level builder."""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from genjax.models.conv import ConvDecoder, ConvEncoder, check_divisible
from genjax.models.layers import get_activation
from genjax.models.mlp import MLPDecoder, MLPEncoder

ARCHITECTURES = ("mlp", "conv")


def _call(module: nn.Module, inputs: jax.Array, labels: jax.Array | None):
  # Only conditional submodules take labels, so unconditional ones may be any
  # module with a single-argument __call__.
  if getattr(module, "num_classes", 0) > 0:
    return module(inputs, labels)
  return module(inputs)


class Autoencoder(nn.Module):
  """Wraps an encoder and a decoder; the objective decides how they are combined.

  Use `module.apply(params, x, method=Autoencoder.encode)` etc. for the parts.

  Attributes:
      encoder: Maps `[B, H, W, C]` to `(mean, log_var)` or a code `[B, D]`.
      decoder: Maps `[B, D]` to `[B, H, W, C, num_params]`.
  """

  encoder: nn.Module
  decoder: nn.Module

  def encode(self, x: jax.Array, labels: jax.Array | None = None):
    """Encodes images `[B, H, W, C]` to `(mean, log_var)` or a code, each `[B, D]`."""
    return _call(self.encoder, x, labels)

  def decode(self, z: jax.Array, labels: jax.Array | None = None) -> jax.Array:
    """Decodes codes `[B, D]` to distribution parameters `[B, H, W, C, num_params]`."""
    return _call(self.decoder, z, labels)

  def __call__(self, x: jax.Array, labels: jax.Array | None = None) -> jax.Array:
    """Reconstructs `x` (decoding the posterior mean if stochastic); creates all params.

    Args:
        x: Images `[B, H, W, C]`.
        labels: Integer labels `[B]` for conditional models.

    Returns:
        Decoder output `[B, H, W, C, num_params]`.
    """
    code = self.encode(x, labels)
    if isinstance(code, tuple):
      code = code[0]
    return self.decode(code, labels)


def build_autoencoder(
  architecture: str,
  *,
  data_shape: Sequence[int],
  latent_dim: int,
  hidden_sizes: Sequence[int] = (512, 256),
  conv_channels: Sequence[int] = (32, 64),
  activation: str = "relu",
  num_params: int = 1,
  num_classes: int = 0,
  stochastic: bool = True,
  dtype: Any = jnp.float32,
) -> Autoencoder:
  """Builds an `Autoencoder` from config fields.

  The decoder mirrors the encoder: MLP hidden sizes and conv channels are reversed.
  For "conv", `hidden_sizes[0]` is the width of the Dense layer next to the conv
  stack (no Dense hidden layer if `hidden_sizes` is empty).

  Args:
      architecture: "mlp" or "conv".
      data_shape: Data shape `(H, W, C)`.
      latent_dim: Latent size `D`.
      hidden_sizes: Encoder Dense widths, input side first.
      conv_channels: Encoder conv channels, input side first ("conv" only).
      activation: Activation name (see `ACTIVATIONS`).
      num_params: Decoder parameters per element (1 or 2).
      num_classes: Number of classes for conditional models; 0 = unconditional.
      stochastic: Whether the encoder outputs `(mean, log_var)`.
      dtype: Compute dtype of both networks (parameters and outputs stay float32).

  Returns:
      An uninitialized `Autoencoder`.

  Raises:
      ValueError: On an unknown architecture/activation or incompatible shape.
  """
  get_activation(activation)  # Validate early with a clear message.
  data_shape = tuple(int(d) for d in data_shape)
  hidden_sizes = tuple(int(h) for h in hidden_sizes)
  if num_params < 1:
    raise ValueError(f"num_params must be >= 1, got {num_params}.")
  if architecture == "mlp":
    encoder = MLPEncoder(hidden_sizes, latent_dim, activation, num_classes, stochastic, dtype)
    decoder = MLPDecoder(hidden_sizes[::-1], data_shape, num_params, activation, num_classes, dtype)
  elif architecture == "conv":
    channels = tuple(int(c) for c in conv_channels)
    if not channels:
      raise ValueError("conv_channels must be non-empty for architecture 'conv'.")
    check_divisible(data_shape, channels)
    hidden = hidden_sizes[0] if hidden_sizes else 0
    encoder = ConvEncoder(channels, latent_dim, hidden, activation, num_classes, stochastic, dtype)
    decoder = ConvDecoder(
      channels[::-1], data_shape, num_params, hidden, activation, num_classes, dtype
    )
  else:
    raise ValueError(
      f"Unknown architecture {architecture!r}; allowed values: {list(ARCHITECTURES)}."
    )
  return Autoencoder(encoder=encoder, decoder=decoder)

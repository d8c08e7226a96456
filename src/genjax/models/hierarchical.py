"""Hierarchical VAE networks with L stochastic layers (bottom layer ``z_1`` next to ``x``).

Three architectures, each a :class:`HierarchicalVAE`:

* ``"mlp"``: Burda et al. (2016)'s bottom-up net. Inference ``q(z_1|x)
  q(z_2|z_1) ...``, generation ``p(z_L) p(z_{L-1}|z_L) ... p(x|z_1)``, with a
  block of deterministic Dense layers before every stochastic layer
  (784-[200-200]-100-[100-100]-50 for ``hidden_sizes=(200, 100)``, depth 2).
* ``"ladder"``: top-down inference sharing the generative path (Sønderby et
  al. 2016, NVAE's residual form). A bottom-up pass gives features ``h_l``; the
  top-down pass draws ``z_L`` then each lower layer from
  ``q(z_l | x, z_{>l}) = N(mu_p + dmu, sigma_p * dsigma)``, where ``p(z_l |
  z_{>l}) = N(mu_p, sigma_p^2)`` comes from the top-down state and ``(dmu,
  log dsigma)`` from ``[h_l, top-down state]``. ``p(x | .)`` reads the final
  top-down state, which depends on every layer.
* ``"conv_ladder"``: the ladder with a stride-2 conv stack under the first
  bottom-up block and a sub-pixel conv decoder for ``p(x | .)``.

Latents are vectors ``[B, D_l]``; every method takes and returns layers bottom first.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from genjax.models.conv import ConvDecoder, ConvEncoder, check_divisible
from genjax.models.layers import get_activation
from genjax.models.mlp import GaussianHeads
from genjax.objectives.hierarchical import Layer

ARCHITECTURES = ("mlp", "ladder", "conv_ladder")


class Block(nn.Module):
  """``depth`` Dense layers of ``width`` units, each followed by the activation."""

  width: int
  depth: int
  activation: str

  @nn.compact
  def __call__(self, h: jax.Array) -> jax.Array:
    act = get_activation(self.activation)
    for _ in range(self.depth):
      h = act(nn.Dense(self.width)(h))
    return h


class HierarchicalVAE(nn.Module):
  """Inference and generative networks of a hierarchical VAE.

  Attributes:
    latent_dims: ``(D_1, ..., D_L)``, bottom first, ``L >= 2``.
    hidden_sizes: width of each layer's deterministic block, bottom first.
    block_depth: Dense layers per block.
    data_shape: ``(H, W, C)``.
    num_params: decoder parameters per data element (see the likelihoods).
    activation: hidden activation name.
    architecture: one of :data:`ARCHITECTURES`.
    conv_channels: ``"conv_ladder"``'s stride-2 stages, input side first.
  """

  latent_dims: Sequence[int]
  hidden_sizes: Sequence[int]
  block_depth: int = 2
  data_shape: Sequence[int] = (28, 28, 1)
  num_params: int = 1
  activation: str = "tanh"
  architecture: str = "ladder"
  conv_channels: Sequence[int] = (32, 64)

  def setup(self):
    if self.architecture not in ARCHITECTURES:
      raise ValueError(
        f"Unknown architecture {self.architecture!r}; allowed: {list(ARCHITECTURES)}."
      )
    if len(self.hidden_sizes) != len(self.latent_dims):
      raise ValueError("hidden_sizes needs one width per stochastic layer.")
    dims, widths = self.latent_dims, self.hidden_sizes
    block = lambda w: Block(w, self.block_depth, self.activation)  # noqa: E731
    if self.architecture == "conv_ladder":
      check_divisible(self.data_shape, self.conv_channels)
      # A linear code of width w_1 over the conv stack; the block adds its activation.
      trunk = ConvEncoder(self.conv_channels, widths[0], 0, self.activation, stochastic=False)
      self.up = [nn.Sequential([trunk, block(widths[0])])] + [block(w) for w in widths[1:]]
    else:
      self.up = [block(w) for w in widths]
    self.q_heads = [GaussianHeads(d) for d in dims]
    self.p_heads = [GaussianHeads(d) for d in dims[:-1]]
    # Bottom-up: p(z_l | z_{l+1}) reads a block over z_{l+1}; ladder: the top-down state.
    self.down = [block(w) for w in (widths if self.architecture != "mlp" else widths[1:])]
    if self.architecture == "conv_ladder":
      self.output = ConvDecoder(
        tuple(self.conv_channels)[::-1], self.data_shape, self.num_params, 0, self.activation
      )
    else:
      self.output = nn.Dense(math.prod(self.data_shape) * self.num_params)
    self.x_block = block(widths[0]) if self.architecture == "mlp" else None

  def _decode_output(self, h: jax.Array) -> jax.Array:
    """``[B, ...]`` features to decoder output ``[B, *data_shape, num_params]``."""
    if self.x_block is not None:
      h = self.x_block(h)
    out = self.output(h)
    return jnp.reshape(out, (h.shape[0], *self.data_shape, self.num_params))

  def infer(self, x: jax.Array):
    """The bottom-up pass, once per input: ``q(z_1|x)``'s ``(mean, log_var)`` or the ladder's features."""
    h = x if self.architecture == "conv_ladder" else x.reshape(x.shape[0], -1)
    if self.architecture == "mlp":
      return self.q_heads[0](self.up[0](h))
    features = []
    for up in self.up:
      h = up(h)
      features.append(h)
    return tuple(features)

  def sample(self, context, noise: Sequence[jax.Array]) -> tuple[tuple[Layer, ...], jax.Array]:
    """Draws ``z ~ q(z | x)`` from standard normal ``noise``; returns the layers and ``p(x|z)``'s parameters."""
    if self.architecture == "mlp":
      return self._bottom_up(context, noise)
    return self._top_down(context, noise)

  def generate(self, noise: Sequence[jax.Array]) -> tuple[tuple[Layer, ...], jax.Array]:
    """Ancestral sampling from the prior (``q`` is set to ``p`` in the returned layers)."""
    if self.architecture == "mlp":
      zs = [None] * len(noise)
      zs[-1] = noise[-1]
      layers = [None] * len(noise)
      zero = jnp.zeros_like(noise[-1])
      layers[-1] = Layer(noise[-1], zero, zero, zero, zero)
      for i in reversed(range(len(noise) - 1)):
        mean, log_var = self.p_heads[i](self.down[i](zs[i + 1]))
        zs[i] = mean + jnp.exp(0.5 * log_var) * noise[i]
        layers[i] = Layer(zs[i], mean, log_var, mean, log_var)
      return tuple(layers), self._decode_output(zs[0])
    return self._top_down(None, noise)

  def decode(self, zs: Sequence[jax.Array]) -> jax.Array:
    """``p(x | z_1..z_L)``'s parameters for given latents (bottom-up nets read only ``z_1``)."""
    if self.architecture == "mlp":
      return self._decode_output(zs[0])
    return self._top_down(None, [jnp.zeros_like(z) for z in zs], zs)[1]

  def __call__(self, x: jax.Array) -> jax.Array:
    """Creates all parameters: the posterior-mean draw's decoder output."""
    noise = [jnp.zeros((x.shape[0], d), jnp.float32) for d in self.latent_dims]
    return self.sample(self.infer(x), noise)[1]

  def _bottom_up(self, context, noise):
    mean, log_var = context
    zs, qs = [], []
    for i in range(len(noise)):
      if i > 0:
        mean, log_var = self.q_heads[i](self.up[i](zs[-1]))
      zs.append(mean + jnp.exp(0.5 * log_var) * noise[i])
      qs.append((mean, log_var))
    zero = jnp.zeros_like(zs[-1])
    ps = [self.p_heads[i](self.down[i](zs[i + 1])) for i in range(len(noise) - 1)]
    ps.append((zero, zero))
    layers = tuple(Layer(z, *q, *p) for z, q, p in zip(zs, qs, ps))
    return layers, self._decode_output(zs[0])

  def _top_down(self, features, noise, zs=None):
    """The shared top-down path; ``features=None`` samples the prior, ``zs`` fixes the latents."""
    layers, state = [None] * len(noise), None
    for i in reversed(range(len(noise))):
      if state is None:
        p_mean = p_log_var = jnp.zeros_like(noise[i])
      else:
        p_mean, p_log_var = self.p_heads[i](state)
      if features is None:
        q_mean, q_log_var = p_mean, p_log_var
      else:
        inputs = features[i] if state is None else jnp.concatenate([features[i], state], axis=-1)
        d_mean, d_log_var = self.q_heads[i](inputs)
        # Residual posterior: q is p shifted and rescaled, so q starts near p.
        q_mean, q_log_var = p_mean + d_mean, p_log_var + d_log_var
      z = zs[i] if zs is not None else q_mean + jnp.exp(0.5 * q_log_var) * noise[i]
      layers[i] = Layer(z, q_mean, q_log_var, p_mean, p_log_var)
      state = self.down[i](z if state is None else jnp.concatenate([z, state], axis=-1))
    return tuple(layers), self._decode_output(state)

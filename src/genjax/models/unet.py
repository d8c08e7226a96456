"""Noise-prediction networks for diffusion models: the DDPM U-Net and a residual MLP for points.

`UNet` follows the CIFAR-10 model of Ho et al. (2020, "Denoising Diffusion
Probabilistic Models", official `diffusion_tf` code), itself a PixelCNN++ /
Wide-ResNet backbone:

* time embedding: sinusoidal(`channels`) -> Dense(4C) -> SiLU -> Dense(4C), plus a
  learned class embedding when conditional (Dhariwal & Nichol, 2021);
* per resolution `num_res_blocks` residual blocks (each followed by single-head
  self-attention at the sides in `attention_resolutions`), then a stride-2 conv;
* a middle stage res block -> attention -> res block at the lowest resolution;
* an up path mirroring it with `num_res_blocks + 1` blocks per level, each fed the
  concatenation of the running features and one stored down-path activation;
* GroupNorm -> SiLU -> 3x3 conv to the output channels.

With `conditioning="add"` and the CIFAR-10 hyper-parameters (channels 128, mults
(1, 2, 2, 2), 2 res blocks, attention at 16) the model has 35,746,307 parameters,
the paper's 35.7M; that count needs the official details kept here: a middle
stage with attention, separate q/k/v/out 1x1 projections with biases, 1x1 (NIN)
shortcuts only where the channel count changes, and a 3x3 conv in each resampler.

Initialisation follows the official code: Glorot-uniform ("fan_avg") kernels,
zero biases, and zero kernels for the last layer of every residual branch (the
second conv of each res block, the attention output projection) and for the
final conv. Every residual branch therefore starts as the identity and the
untrained network outputs exactly zero; the gradient still reaches all zero
kernels at the first step, and through them the rest of the network after it.

Upsampling is a nearest-neighbour resize followed by a 3x3 conv (as in the
original), never a transposed conv: on XLA-CPU the weight gradient of a stride-2
`ConvTranspose` is pathologically slow.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from genjax.models import precision
from genjax.models.layers import check_labels, to_float32

UNET_CONDITIONINGS = ("scale_shift", "add")

# DDPM's `default_init`: variance scaling 1.0, fan_avg, uniform (= Glorot uniform).
_DEFAULT_INIT = nn.initializers.variance_scaling(1.0, "fan_avg", "uniform")
_ZERO_INIT = nn.initializers.zeros


def timestep_embedding(t: jax.Array, dim: int, max_period: float = 10000.0) -> jax.Array:
  """Sinusoidal embedding of (integer or continuous) timesteps, as in DDPM / the Transformer.

  Uses the DDPM convention: `half = dim // 2` frequencies
  `f_i = max_period ** (-i / (half - 1))`, geometric from 1 down to exactly
  `1 / max_period`, and the embedding `[sin(t f), cos(t f)]`. An odd `dim` gets
  one trailing zero.

  Args:
      t: Timesteps, shape `[B]`, any integer or float dtype.
      dim: Embedding size `D`.
      max_period: Longest period; sets the lowest frequency.

  Returns:
      float32 array of shape `[B, D]`.
  """
  half = dim // 2
  # max(.., 1) only matters for dim < 4, where there is a single frequency (1.0).
  exponents = jnp.arange(half, dtype=jnp.float32) / max(half - 1, 1)
  freqs = jnp.exp(-math.log(max_period) * exponents)
  args = jnp.asarray(t, jnp.float32)[:, None] * freqs[None, :]
  emb = jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)
  if dim % 2:
    emb = jnp.pad(emb, ((0, 0), (0, 1)))
  return emb


def base2_fourier_features(z: jax.Array, exponents: Sequence[int]) -> jax.Array:
  """``[sin, cos](2ⁿ · 2π · z)`` for each ``n`` in ``exponents``, per channel (VDM's input features).

  High frequencies make the network sensitive to the last bits of ``z``, which the
  likelihood depends on at low noise (Kingma et al. 2021, section 3.4).

  Args:
      z: ``[B, H, W, C]``.
      exponents: the ``n``; the official code uses 6 and 7.

  Returns:
      ``[B, H, W, 2 · C · len(exponents)]``, channel-major (all of channel 0's
      frequencies, then channel 1's), sines then cosines; ``[B, H, W, 0]`` if empty.
  """
  freqs = 2.0 ** jnp.asarray(exponents, jnp.float32) * 2.0 * jnp.pi
  h = (z[..., None] * freqs).reshape(z.shape[:-1] + (-1,))
  return jnp.concatenate([jnp.sin(h), jnp.cos(h)], axis=-1)


def _conv3x3(
  features: int, name: str, stride: int = 1, zero_init: bool = False, dtype: Any = jnp.float32
) -> nn.Conv:
  return precision.Conv(
    features,
    (3, 3),
    strides=(stride, stride),
    padding="SAME",  # as TF; for even sides a stride-2 conv pads one row/column at the end
    kernel_init=_ZERO_INIT if zero_init else _DEFAULT_INIT,
    dtype=dtype,
    name=name,
  )


def _dense(features: int, name: str, zero_init: bool = False, dtype: Any = jnp.float32) -> nn.Dense:
  init = _ZERO_INIT if zero_init else _DEFAULT_INIT
  return precision.Dense(features, kernel_init=init, dtype=dtype, name=name)


def _embed_labels(
  labels: jax.Array | None, num_classes: int, features: int, model_name: str, dtype: Any
) -> jax.Array | None:
  """Class embeddings `[B, features]` from a `num_classes + 1`-row table, or None if unconditional.

  Call inside a compact method: the table becomes the caller's "label_embed"
  submodule. Its last row (label `num_classes`) is the null label of
  classifier-free guidance, trained on the examples whose label is dropped.
  Labels outside `[0, num_classes]` cannot be checked under jit and must not occur.
  """
  if num_classes <= 0:
    return None
  check_labels(labels, num_classes, model_name)
  table = precision.Embed(num_classes + 1, features, dtype=dtype, name="label_embed")
  return table(jnp.asarray(labels, jnp.int32))


class ResBlock(nn.Module):
  """DDPM residual block with time (+ class) conditioning.

  `GroupNorm -> SiLU -> Conv3x3 -> [cond] -> GroupNorm -> [cond] -> SiLU -> Dropout
  -> Conv3x3 (zero init)`, plus a 1x1 shortcut when the channel count changes.
  The embedding enters through `Dense(SiLU(emb))`: added after the first conv
  ("add", Ho et al.) or as the scale and shift of the second GroupNorm,
  `GN(h) * (1 + scale) + shift` ("scale_shift", Nichol & Dhariwal 2021).

  Attributes:
      out_channels: Output channels `C_out`.
      num_groups: GroupNorm groups; must divide both input and output channels.
      dropout: Dropout rate before the second conv.
      conditioning: One of `UNET_CONDITIONINGS`.
      dtype: Compute dtype; GroupNorm statistics are float32 regardless (flax's
        `force_float32_reductions`).
  """

  out_channels: int
  num_groups: int = 32
  dropout: float = 0.0
  conditioning: str = "scale_shift"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, emb: jax.Array, train: bool) -> jax.Array:
    """Applies the block.

    Args:
        x: Features `[B, H, W, C_in]`.
        emb: Conditioning embedding `[B, E]`.
        train: Enables dropout (rng collection "dropout").

    Returns:
        Features `[B, H, W, C_out]`.
    """
    out, dtype = self.out_channels, self.dtype
    norm = functools.partial(nn.GroupNorm, self.num_groups, dtype=dtype)
    h = nn.silu(norm(name="norm1")(x))
    h = _conv3x3(out, "conv1", dtype=dtype)(h)
    width = 2 * out if self.conditioning == "scale_shift" else out
    # float32, so its gradient's sum over every pixel is taken in float32 too.
    cond = to_float32(_dense(width, "emb_proj", dtype=dtype)(nn.silu(emb)))[:, None, None, :]
    if self.conditioning == "scale_shift":
      scale, shift = jnp.split(cond, 2, axis=-1)
      h = norm(name="norm2")(h) * (1.0 + scale) + shift
    else:
      h = norm(name="norm2")(h + cond)
    h = nn.Dropout(self.dropout, deterministic=not train)(nn.silu(h).astype(dtype))
    h = _conv3x3(out, "conv2", zero_init=True, dtype=dtype)(h)
    if x.shape[-1] != out:
      x = _dense(out, "shortcut", dtype=dtype)(x)  # 1x1 conv ("NIN") on the channel axis
    return x + h


class AttentionBlock(nn.Module):
  """Single-head self-attention over all spatial positions, with a residual connection.

  `x + proj_out(softmax(q k^T / sqrt(C)) v)` with `q, k, v` 1x1 projections of
  `GroupNorm(x)`. Only 1x1 maps and position-independent statistics are used, so
  the block is equivariant to any permutation of the spatial positions.

  Attributes:
      num_groups: GroupNorm groups; must divide the channel count.
      dtype: Compute dtype; the attention logits and softmax are float32 regardless.
  """

  num_groups: int = 32
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Maps features `[B, H, W, C]` to features of the same shape."""
    batch, height, width, channels = x.shape
    dtype = self.dtype
    h = nn.GroupNorm(self.num_groups, dtype=dtype, name="norm")(x)
    q, k, v = (
      _dense(channels, n, dtype=dtype)(h).reshape(batch, -1, channels) for n in ("q", "k", "v")
    )
    # bfloat16 logits would round away the differences the softmax amplifies.
    logits = jnp.einsum("bqc,bkc->bqk", q, k, preferred_element_type=jnp.float32)
    weights = jax.nn.softmax(logits * channels**-0.5, axis=-1).astype(dtype)
    h = jnp.einsum("bqk,bkc->bqc", weights, v).reshape(batch, height, width, channels)
    return x + _dense(channels, "proj_out", zero_init=True, dtype=dtype)(h)


class Downsample(nn.Module):
  """Halves the spatial size: stride-2 3x3 conv, or 2x2 average pooling without conv."""

  with_conv: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Maps `[B, H, W, C]` to `[B, H / 2, W / 2, C]`."""
    if self.with_conv:
      return _conv3x3(x.shape[-1], "conv", stride=2, dtype=self.dtype)(x)
    return nn.avg_pool(x, (2, 2), strides=(2, 2))


class Upsample(nn.Module):
  """Doubles the spatial size: nearest-neighbour resize, then (optionally) a 3x3 conv."""

  with_conv: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Maps `[B, H, W, C]` to `[B, 2H, 2W, C]`."""
    batch, height, width, channels = x.shape
    # Broadcast + reshape = exact nearest-neighbour x2; its gradient is a cheap 2x2 sum.
    x = jnp.broadcast_to(x[:, :, None, :, None, :], (batch, height, 2, width, 2, channels))
    x = x.reshape(batch, 2 * height, 2 * width, channels)
    if self.with_conv:
      x = _conv3x3(channels, "conv", dtype=self.dtype)(x)
    return x


class UNet(nn.Module):
  """The DDPM noise-prediction U-Net (Ho et al., 2020); see the module docstring.

  Attributes:
      channels: Base width `C`; level `i` has `C * channel_mults[i]` channels.
      channel_mults: Width multiplier per resolution; the image side halves
        `len(channel_mults) - 1` times.
      num_res_blocks: Residual blocks per level on the way down (one more on the way up).
      attention_resolutions: Image sides at which a self-attention block follows
        each res block (sides that never occur are ignored, as in the original).
        The middle stage always has attention.
      dropout: Dropout rate inside the res blocks (active when `train=True`).
      num_groups: GroupNorm groups; must divide `channels`.
      num_classes: Number of classes; 0 = unconditional. Otherwise the class
        embedding table has `num_classes + 1` rows; label `num_classes` is the
        "null" label for classifier-free guidance.
      conditioning: How the res blocks see the embedding: "scale_shift"
        (adaptive GroupNorm) or "add" (original DDPM).
      out_channels: Output channels; None = input channels.
      resample_with_conv: 3x3 convs in the down/upsamplers (else pooling/resize only).
      dtype: Compute dtype (parameters stay float32; the output is float32).
      remat: Recompute each residual and attention block's activations in the
        backward pass instead of storing them (`nn.remat`): less memory, more
        compute; the parameters are the same either way.
  """

  channels: int = 128
  channel_mults: tuple[int, ...] = (1, 2, 2, 2)
  num_res_blocks: int = 2
  attention_resolutions: tuple[int, ...] = (16,)
  dropout: float = 0.1
  num_groups: int = 32
  num_classes: int = 0
  conditioning: str = "scale_shift"
  out_channels: int | None = None
  resample_with_conv: bool = True
  dtype: Any = jnp.float32
  remat: bool = False

  def _check_config(self, height: int, width: int) -> None:
    if self.conditioning not in UNET_CONDITIONINGS:
      raise ValueError(
        f"Unknown UNet conditioning {self.conditioning!r}; allowed values: "
        f"{list(UNET_CONDITIONINGS)}."
      )
    if not self.channel_mults:
      raise ValueError("UNet: channel_mults must not be empty.")
    if self.num_groups <= 0 or self.channels % self.num_groups:
      raise ValueError(
        f"UNet: num_groups={self.num_groups} must divide channels={self.channels} "
        "(GroupNorm splits every feature map into num_groups equal groups)."
      )
    factor = 2 ** (len(self.channel_mults) - 1)
    if height % factor or width % factor:
      raise ValueError(
        f"UNet: image side {height}x{width} must be divisible by "
        f"2**(len(channel_mults) - 1) = {factor} for channel_mults={tuple(self.channel_mults)}; "
        "use fewer levels or pad the images."
      )

  @nn.compact
  def __call__(
    self,
    x: jax.Array,
    t: jax.Array,
    labels: jax.Array | None = None,
    *,
    train: bool,
  ) -> jax.Array:
    """Predicts (e.g.) the noise in `x` at timestep `t`.

    Args:
        x: Images `[B, H, W, C]`; `H` and `W` divisible by `2**(len(channel_mults) - 1)`.
        t: Timesteps `[B]` (int32, or float for continuous time); a scalar is broadcast.
        labels: Integer labels `[B]` in `[0, num_classes]` (`num_classes` = null label);
          required iff `num_classes > 0`, ignored otherwise.
        train: Enables dropout (rng collection "dropout").

    Returns:
        float32 array `[B, H, W, out_channels]`.
    """
    batch, height, width, in_channels = x.shape
    self._check_config(height, width)
    dtype = self.dtype
    x = jnp.asarray(x, dtype)
    t = jnp.broadcast_to(jnp.asarray(t), (batch,))
    ch = self.channels

    # The sinusoids are taken in float32 (t reaches 1000); only the Dense layers round.
    emb = timestep_embedding(t, ch)
    emb = _dense(4 * ch, "temb_dense0", dtype=dtype)(emb)
    emb = _dense(4 * ch, "temb_dense1", dtype=dtype)(nn.silu(emb))
    label_emb = _embed_labels(labels, self.num_classes, 4 * ch, "UNet", dtype)
    if label_emb is not None:
      emb = emb + label_emb

    # `train` is a Python bool that picks the dropout branch, so it stays static under
    # remat (index 3, self being 0). Remat keeps the submodule names, so the params too.
    block = functools.partial(
      nn.remat(ResBlock, static_argnums=(3,)) if self.remat else ResBlock,
      num_groups=self.num_groups,
      dropout=self.dropout,
      conditioning=self.conditioning,
      dtype=dtype,
    )
    attention = functools.partial(
      nn.remat(AttentionBlock) if self.remat else AttentionBlock, self.num_groups, dtype
    )
    last = len(self.channel_mults) - 1

    hs = [_conv3x3(ch, "conv_in", dtype=dtype)(x)]
    for level, mult in enumerate(self.channel_mults):
      for i in range(self.num_res_blocks):
        h = block(ch * mult, name=f"down{level}_block{i}")(hs[-1], emb, train)
        if h.shape[1] in self.attention_resolutions:
          h = attention(name=f"down{level}_attn{i}")(h)
        hs.append(h)
      if level != last:
        down = Downsample(self.resample_with_conv, dtype, name=f"down{level}_downsample")
        hs.append(down(hs[-1]))

    h = hs[-1]
    h = block(h.shape[-1], name="mid_block1")(h, emb, train)
    h = attention(name="mid_attn")(h)
    h = block(h.shape[-1], name="mid_block2")(h, emb, train)

    for level in reversed(range(len(self.channel_mults))):
      for i in range(self.num_res_blocks + 1):
        h = jnp.concatenate([h, hs.pop()], axis=-1)
        h = block(ch * self.channel_mults[level], name=f"up{level}_block{i}")(h, emb, train)
        if h.shape[1] in self.attention_resolutions:
          h = attention(name=f"up{level}_attn{i}")(h)
      if level != 0:
        h = Upsample(self.resample_with_conv, dtype, name=f"up{level}_upsample")(h)
    assert not hs, "every stored down-path activation is consumed exactly once"

    h = nn.silu(nn.GroupNorm(self.num_groups, dtype=dtype, name="norm_out")(h))
    out_channels = in_channels if self.out_channels is None else self.out_channels
    h = _conv3x3(out_channels, "conv_out", zero_init=True, dtype=dtype)(h)
    return to_float32(h)


class MLPDenoiser(nn.Module):
  """Residual MLP noise predictor for low-dimensional (e.g. 2-D point) data.

  `Dense(x)` to `hidden_size`, then `num_layers` pre-norm residual blocks
  `h + Dense(SiLU(Dense(SiLU(LN(h) * (1 + scale) + shift))))`, whose scale and
  shift come from a Dense of `SiLU(emb)` (adaptive LayerNorm, the MLP analogue of
  the U-Net's "scale_shift"; a multiplicative path lets the timestep switch
  features on and off, not just shift them). `emb` is
  sinusoidal(`time_embed_dim`) -> Dense -> SiLU -> Dense, plus a class embedding
  with a null row when conditional. The head `LN -> SiLU -> Dense` is
  zero-initialised, so the untrained model outputs zero. No dropout: `train` is
  accepted for a uniform interface with `UNet`.

  Attributes:
      hidden_size: Width of the residual stream.
      num_layers: Number of residual blocks.
      num_classes: Number of classes; 0 = unconditional, else `num_classes + 1`
        embedding rows, the last being the null label.
      time_embed_dim: Size of the sinusoidal timestep embedding.
      layer_norm: Whether to LayerNorm the block inputs and the head input.
      dtype: Compute dtype (parameters stay float32; the output is float32).
  """

  hidden_size: int = 256
  num_layers: int = 3
  num_classes: int = 0
  time_embed_dim: int = 64
  layer_norm: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(
    self,
    x: jax.Array,
    t: jax.Array,
    labels: jax.Array | None = None,
    *,
    train: bool,
  ) -> jax.Array:
    """Predicts (e.g.) the noise in `x` at timestep `t`.

    Args:
        x: Points `[B, D]`.
        t: Timesteps `[B]` (int32 or float); a scalar is broadcast.
        labels: Integer labels `[B]` in `[0, num_classes]`; required iff `num_classes > 0`.
        train: Unused (no dropout).

    Returns:
        float32 array `[B, D]`.
    """
    del train
    batch, dim = x.shape
    width, dtype = self.hidden_size, self.dtype
    t = jnp.broadcast_to(jnp.asarray(t), (batch,))
    dense = functools.partial(_dense, dtype=dtype)

    def norm(h: jax.Array, name: str) -> jax.Array:
      return nn.LayerNorm(dtype=dtype, name=name)(h) if self.layer_norm else h

    emb = timestep_embedding(t, self.time_embed_dim)
    emb = dense(width, "temb_dense0")(emb)
    emb = dense(width, "temb_dense1")(nn.silu(emb))
    label_emb = _embed_labels(labels, self.num_classes, width, "MLPDenoiser", dtype)
    if label_emb is not None:
      emb = emb + label_emb

    h = dense(width, "dense_in")(jnp.asarray(x, dtype))
    for i in range(self.num_layers):
      scale, shift = jnp.split(dense(2 * width, f"block{i}_emb_proj")(nn.silu(emb)), 2, axis=-1)
      r = norm(h, f"block{i}_norm") * (1.0 + scale) + shift
      r = dense(width, f"block{i}_dense1")(nn.silu(r))
      r = dense(width, f"block{i}_dense2")(nn.silu(r))
      h = h + r
    h = nn.silu(norm(h, "norm_out"))
    return to_float32(dense(dim, "dense_out", zero_init=True)(h))


def count_params(module: nn.Module, x_shape: Sequence[int], num_classes: int | None = None) -> int:
  """Counts a denoiser's parameters from shapes alone (`jax.eval_shape`, no real init).

  Args:
      module: A `UNet` or `MLPDenoiser` (anything called as `(x, t, labels, train=...)`).
      x_shape: Input shape `[B, ...]`.
      num_classes: Pass labels iff > 0; None = the module's own `num_classes`.

  Returns:
      The total number of scalars in the "params" collection.
  """
  if num_classes is None:
    num_classes = getattr(module, "num_classes", 0)
  x = jax.ShapeDtypeStruct(tuple(x_shape), jnp.float32)
  t = jax.ShapeDtypeStruct(tuple(x_shape[:1]), jnp.int32)
  labels = jax.ShapeDtypeStruct(tuple(x_shape[:1]), jnp.int32) if num_classes > 0 else None
  init = functools.partial(module.init, train=False)
  shapes = jax.eval_shape(init, jax.random.key(0), x, t, labels)
  return sum(math.prod(p.shape) for p in jax.tree_util.tree_leaves(shapes["params"]))

"""GAN generators and discriminators: MLPs for low-dimensional data, DCGAN for images.

DCGAN follows the architecture guidelines of Radford et al. (2016): no pooling
(strided convolutions in D), BatchNorm in G and D (except D's input layer), no
hidden Dense layers (G projects z straight to a feature map, D flattens straight
to a linear logit), ReLU + tanh output in G, LeakyReLU(0.2) in D.

One deliberate deviation: DCGAN's fractionally-strided (transposed) convolutions
are replaced by sub-pixel convolutions (`SubPixelUpsample`: stride-1 conv to
`4 * C` channels, then `depth_to_space`). On XLA-CPU the weight gradient of a
stride-2 `ConvTranspose` is pathologically slow (508 ms vs 36 ms forward at
128->64 channels, 14->28 px, batch 64). The two are equally expressive: each
output phase of a 4x4 stride-2 transposed conv reads a 2x2 input window, and the
union of those windows is 3x3, so it is exactly a 3x3 sub-pixel conv with a
particular (sparse) weight layout.

BatchNorm layers take `axis_name`: inside `pmap`/`shard_map` (or a `vmap` with
that axis name) over the "data" axis their batch statistics are averaged across
devices, so N shards of B examples normalise exactly like one batch of N * B.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from genjax.models import precision
from genjax.models.layers import (
  Conv,
  SubPixelUpsample,
  check_labels,
  get_activation,
  one_hot_channels,
  one_hot_concat,
  to_float32,
)

GAN_ARCHITECTURES = ("mlp", "dcgan")
CONDITIONINGS = ("projection", "concat")
NORMS = ("batch", "layer", "spectral", "none")
# DCGAN image side -> side of the map G projects z to (and D reduces to).
DCGAN_BASE_SIDE = {28: 7, 32: 4}
LEAKY_SLOPE = 0.2
# Running averages with a ~10-step horizon: GAN feature statistics drift fast,
# and eval-mode outputs should reflect the current generator, not an old one.
BN_MOMENTUM = 0.9


def _check_choice(value: str, allowed: Sequence[str], what: str) -> None:
  if value not in allowed:
    raise ValueError(f"Unknown {what} {value!r}; allowed values: {list(allowed)}.")


def gan_activation(name: str) -> Callable[[jax.Array], jax.Array]:
  """Like `get_activation`, but "leaky_relu" uses the GAN slope 0.2 (flax's default is 0.01)."""
  if name == "leaky_relu":
    return functools.partial(nn.leaky_relu, negative_slope=LEAKY_SLOPE)
  return get_activation(name)


def normalize(
  h: jax.Array,
  norm: str,
  *,
  train: bool,
  axis_name: str | None,
  momentum: float,
  dtype: Any = jnp.float32,
) -> jax.Array:
  """Applies a freshly created normalisation layer (call inside a compact method).

  Args:
      h: Features `[B, F]` or `[B, H, W, C]`.
      norm: "batch" (statistics over the batch, synced over `axis_name`),
        "layer" (per example over all non-batch axes), "spectral" or "none"
        (both leave `h` as it is: spectral normalisation acts on the weights,
        see `weight_normalized`).
      train: Batch statistics if True, running averages otherwise ("batch" only).
      axis_name: Device axis to average batch statistics over, or None.
      momentum: Running-average momentum ("batch" only).
      dtype: Compute dtype of the output; flax takes the statistics in float32 anyway.

  Returns:
      Normalised features with the shape of `h`.
  """
  if norm == "batch":
    bn = nn.BatchNorm(
      use_running_average=not train, momentum=momentum, axis_name=axis_name, dtype=dtype
    )
    return bn(h)
  if norm == "layer":
    return nn.LayerNorm(reduction_axes=tuple(range(1, h.ndim)), dtype=dtype)(h)
  return h


def weight_normalized(layer: nn.Module, norm: str, *, train: bool) -> Callable[..., jax.Array]:
  """`layer`, wrapped in spectral normalisation (Miyato et al. 2018) if `norm == "spectral"`.

  Each weight matrix (a conv kernel flattened to `[kh * kw * c_in, c_out]`) is
  divided by its largest singular value, estimated by one power iteration per
  call from a vector `u` kept in the `batch_stats` collection; `u` only moves in
  training mode. The vector is a function of the (replicated) weights alone,
  so every device computes the same one.
  """
  if norm != "spectral":
    return layer
  wrapped = nn.SpectralNorm(layer)
  return functools.partial(wrapped, update_stats=train)


def bias_before(norm: str) -> bool:
  """Whether a layer feeding ``norm`` should have a bias.

  BatchNorm subtracts the per-feature batch mean, which cancels a bias
  exactly; Adam would then turn the bias's round-off gradient into full-size,
  layout-dependent steps (1 device and 8 devices would drift apart).
  """
  return norm != "batch"


class ProjectionLogit(nn.Module):
  """Linear logit, plus the projection term of Miyato & Koyama (2018) if conditional.

  `logit = w . h + b + embed(y) . h`: the label picks a class-specific direction
  in feature space instead of being concatenated to the input.

  Attributes:
      num_classes: Number of label classes; 0 (or `projection=False`) = plain linear.
      projection: Whether to add the class-embedding projection term.
      dtype: Compute dtype; the logits are float32 whatever it is.
  """

  num_classes: int = 0
  projection: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, h: jax.Array, labels: jax.Array | None = None) -> jax.Array:
    """Maps features `h: [B, F]` (and labels `[B]`) to logits `[B]`."""
    logits = to_float32(precision.Dense(1, dtype=self.dtype, name="linear")(h)[:, 0])
    if self.projection and self.num_classes > 0:
      embed = precision.Embed(self.num_classes, h.shape[-1], dtype=self.dtype, name="embed_y")(
        labels
      )
      logits = logits + jnp.sum(to_float32(embed * h), axis=-1)
    return logits


def code_head(logits: jax.Array, features: jax.Array, code_classes: int, dtype: Any = jnp.float32):
  """Adds InfoGAN's auxiliary head Q(c | x) to a discriminator's output (call in a compact method).

  Q shares every layer of D but its last (Chen et al. 2016): one linear map
  from D's final features to `K` code logits. It is left without spectral
  normalisation: it classifies codes and is no part of the critic's score.

  Args:
      logits: D's logits `[B]`.
      features: D's final features `[B, F]`.
      code_classes: `K`; 0 returns `logits` alone.
      dtype: Compute dtype of the head; the code logits are float32.

  Returns:
      `logits`, or `(logits [B], code_logits [B, K])`.
  """
  if code_classes <= 0:
    return logits
  return logits, to_float32(precision.Dense(code_classes, dtype=dtype, name="code_head")(features))


def critic_head(critic: nn.Module, h: jax.Array, labels: jax.Array | None, *, train: bool):
  """A discriminator's logit (and InfoGAN code) head on its features (call in a compact method).

  Args:
      critic: The calling discriminator (reads its conditioning, norm, code_classes, dtype).
      h: Final features `[B, F]`.
      labels: Integer labels `[B]` or None.
      train: Spectral normalisation updates its vector if True.

  Returns:
      float32 logits `[B]`, or `(logits [B], code_logits [B, K])`.
  """
  projection = critic.conditioning == "projection"
  head = ProjectionLogit(critic.num_classes, projection, critic.dtype, name="head")
  logits = weight_normalized(head, critic.norm, train=train)(h, labels)
  return code_head(logits, h, critic.code_classes, critic.dtype)


class MLPGenerator(nn.Module):
  """z (+ one-hot label) -> Dense hidden layers -> linear output, for e.g. 2-D mixtures.

  Attributes:
      data_dim: Output size `D`.
      hidden_sizes: Widths of the hidden Dense layers.
      activation: Hidden activation name (see `gan_activation`).
      num_classes: Number of label classes; 0 means unconditional.
      batch_norm: BatchNorm after every hidden Dense layer.
      axis_name: Device axis for BatchNorm statistics, or None.
      momentum: BatchNorm running-average momentum.
      dtype: Compute dtype (parameters stay float32; samples are float32).
  """

  data_dim: int = 2
  hidden_sizes: Sequence[int] = (128, 128, 128)
  activation: str = "relu"
  num_classes: int = 0
  batch_norm: bool = False
  axis_name: str | None = None
  momentum: float = BN_MOMENTUM
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(
    self, z: jax.Array, labels: jax.Array | None = None, train: bool = True
  ) -> jax.Array:
    """Generates samples.

    Args:
        z: Latent codes `[B, Z]`.
        labels: Integer labels `[B]`; required iff `num_classes > 0`.
        train: BatchNorm uses batch statistics if True, running averages if False.

    Returns:
        Samples `x: [B, data_dim]` (unbounded).
    """
    check_labels(labels, self.num_classes, "MLPGenerator")
    act = gan_activation(self.activation)
    norm = "batch" if self.batch_norm else "none"
    z = z.astype(self.dtype)
    h = one_hot_concat(z, labels, self.num_classes) if self.num_classes > 0 else z
    bn = functools.partial(
      normalize, train=train, axis_name=self.axis_name, momentum=self.momentum, dtype=self.dtype
    )
    for width in self.hidden_sizes:
      h = act(bn(precision.Dense(width, use_bias=bias_before(norm), dtype=self.dtype)(h), norm))
    return to_float32(precision.Dense(self.data_dim, dtype=self.dtype, name="output")(h))


class MLPDiscriminator(nn.Module):
  """x (+ one-hot label) -> Dense hidden layers -> logit (+ label projection).

  Attributes:
      hidden_sizes: Widths of the hidden Dense layers.
      activation: Hidden activation name; "leaky_relu" has slope 0.2.
      num_classes: Number of label classes; 0 means unconditional.
      conditioning: "projection" (on the last hidden features) or "concat"
        (one-hot label appended to the input).
      norm: "none", "layer" or "batch", after every hidden layer but the first;
        or "spectral", on the weights of every layer (Miyato et al. 2018).
      code_classes: Size `K` of InfoGAN's categorical code; > 0 adds the
        auxiliary head Q(c | x) on the last hidden features (see `code_head`).
      axis_name: Device axis for BatchNorm statistics, or None.
      momentum: BatchNorm running-average momentum.
  """

  hidden_sizes: Sequence[int] = (128, 128, 128)
  activation: str = "leaky_relu"
  num_classes: int = 0
  conditioning: str = "projection"
  norm: str = "none"
  code_classes: int = 0
  axis_name: str | None = None
  momentum: float = BN_MOMENTUM
  dtype: Any = jnp.float32

  def __post_init__(self):
    _check_choice(self.conditioning, CONDITIONINGS, "conditioning")
    _check_choice(self.norm, NORMS, "norm")
    super().__post_init__()

  @nn.compact
  def __call__(
    self, x: jax.Array, labels: jax.Array | None = None, train: bool = True
  ) -> jax.Array:
    """Scores samples.

    Args:
        x: Samples `[B, D]` (other trailing shapes are flattened).
        labels: Integer labels `[B]`; required iff `num_classes > 0`.
        train: BatchNorm uses batch statistics if True, running averages if False.

    Returns:
        Logits `[B]` (real = positive); with `code_classes > 0` the pair
        `(logits [B], code_logits [B, K])`.
    """
    check_labels(labels, self.num_classes, "MLPDiscriminator")
    act = gan_activation(self.activation)
    h = x.reshape(x.shape[0], -1).astype(self.dtype)
    if self.num_classes > 0 and self.conditioning == "concat":
      h = one_hot_concat(h, labels, self.num_classes)
    for i, width in enumerate(self.hidden_sizes):
      dense = precision.Dense(width, use_bias=i == 0 or bias_before(self.norm), dtype=self.dtype)
      h = weight_normalized(dense, self.norm, train=train)(h)
      if i > 0:
        h = normalize(
          h,
          self.norm,
          train=train,
          axis_name=self.axis_name,
          momentum=self.momentum,
          dtype=self.dtype,
        )
      h = act(h)
    return critic_head(self, h, labels, train=train)


def dcgan_geometry(image_shape: Sequence[int]) -> tuple[int, int]:
  """Base map side and number of 2x stages of the DCGAN models for an image shape.

  Args:
      image_shape: `(H, W, C)` with `H == W` in {28, 32}.

  Returns:
      `(base_side, num_stages)`: 28 -> (7, 2), 32 -> (4, 3).

  Raises:
      ValueError: For any other shape.
  """
  shape = tuple(int(d) for d in image_shape)
  if len(shape) != 3 or shape[0] != shape[1] or shape[0] not in DCGAN_BASE_SIDE:
    raise ValueError(
      f"DCGAN needs an (H, W, C) image shape with H == W in {sorted(DCGAN_BASE_SIDE)}, got {shape}."
    )
  base = DCGAN_BASE_SIDE[shape[0]]
  return base, (shape[0] // base).bit_length() - 1


class DCGANGenerator(nn.Module):
  """z (+ label embedding) -> Dense projection to a base map -> sub-pixel 2x stages -> tanh.

  28x28: 7 -> 14 -> 28; 32x32: 4 -> 8 -> 16 -> 32. Channels halve per stage and
  the last stage has `base_channels` (e.g. 256 -> 128 -> 64 for 28x28 at 64).

  Attributes:
      image_shape: `(H, W, C)`, `H == W` in {28, 32}.
      base_channels: Channels of the last (full-resolution) stage.
      num_classes: Number of label classes; 0 means unconditional.
      label_embed_dim: Size of the learned label embedding concatenated to z;
        0 concatenates a one-hot label instead.
      axis_name: Device axis for BatchNorm statistics, or None.
      momentum: BatchNorm running-average momentum.
      dtype: Compute dtype (parameters stay float32; images are float32).
  """

  image_shape: Sequence[int] = (28, 28, 1)
  base_channels: int = 64
  num_classes: int = 0
  label_embed_dim: int = 50
  axis_name: str | None = None
  momentum: float = BN_MOMENTUM
  dtype: Any = jnp.float32

  def __post_init__(self):
    # Fail at construction, not deep inside a jitted init, on bad shapes.
    dcgan_geometry(self.image_shape)
    super().__post_init__()

  def _condition(self, z: jax.Array, labels: jax.Array | None) -> jax.Array:
    check_labels(labels, self.num_classes, "DCGANGenerator")
    if self.num_classes == 0:
      return z
    if self.label_embed_dim == 0:
      return one_hot_concat(z, labels, self.num_classes)
    embed = precision.Embed(
      self.num_classes, self.label_embed_dim, dtype=self.dtype, name="embed_y"
    )(labels)
    return jnp.concatenate([z, embed.astype(z.dtype)], axis=-1)

  @nn.compact
  def __call__(
    self, z: jax.Array, labels: jax.Array | None = None, train: bool = True
  ) -> jax.Array:
    """Generates images.

    Args:
        z: Latent codes `[B, Z]`.
        labels: Integer labels `[B]`; required iff `num_classes > 0`.
        train: BatchNorm uses batch statistics if True, running averages if False.

    Returns:
        Images `x: [B, H, W, C] in [-1, 1]`.
    """
    base, stages = dcgan_geometry(self.image_shape)
    dtype = self.dtype
    bn = functools.partial(
      normalize,
      norm="batch",
      train=train,
      axis_name=self.axis_name,
      momentum=self.momentum,
      dtype=dtype,
    )
    channels = self.base_channels * 2**stages
    project = precision.Dense(
      base * base * channels, use_bias=bias_before("batch"), dtype=dtype, name="project"
    )
    h = project(self._condition(z.astype(dtype), labels))
    h = nn.relu(bn(h.reshape(z.shape[0], base, base, channels)))
    for i in range(stages):
      channels //= 2
      h = nn.relu(bn(SubPixelUpsample(channels, scale=2, dtype=dtype, name=f"up{i}")(h)))
    out = Conv(self.image_shape[-1], (3, 3), padding="SAME", dtype=dtype, name="to_image")(h)
    return jnp.tanh(to_float32(out))


class DCGANDiscriminator(nn.Module):
  """Strided 4x4 convs (LeakyReLU 0.2) until the map is <= 4x4 -> flatten -> linear logit.

  28x28: 28 -> 14 -> 7 -> 4; 32x32: 32 -> 16 -> 8 -> 4, with `base_channels`
  doubling per conv. No normalisation on the first conv (Radford et al.).

  `norm="batch"` couples the examples of a batch, so a gradient-penalty critic
  (WGAN-GP penalises each example's input gradient) must use "none" or "layer"
  (per-example LayerNorm over H, W, C, as recommended by Gulrajani et al.).

  Attributes:
      base_channels: Channels of the first conv.
      num_classes: Number of label classes; 0 means unconditional.
      conditioning: "projection" (Miyato & Koyama 2018, on the flattened
        features) or "concat" (one-hot label planes appended to the image).
      norm: "batch", "layer" or "none" (after every conv but the first), or
        "spectral" (on the weights of every conv and of the head; SNGAN).
      code_classes: Size `K` of InfoGAN's categorical code; > 0 adds the
        auxiliary head Q(c | x) on the flattened features (see `code_head`).
      axis_name: Device axis for BatchNorm statistics, or None.
      momentum: BatchNorm running-average momentum.
  """

  base_channels: int = 64
  num_classes: int = 0
  conditioning: str = "projection"
  norm: str = "batch"
  code_classes: int = 0
  axis_name: str | None = None
  momentum: float = BN_MOMENTUM
  dtype: Any = jnp.float32

  def __post_init__(self):
    _check_choice(self.conditioning, CONDITIONINGS, "conditioning")
    _check_choice(self.norm, NORMS, "norm")
    super().__post_init__()

  @nn.compact
  def __call__(
    self, x: jax.Array, labels: jax.Array | None = None, train: bool = True
  ) -> jax.Array:
    """Scores images.

    Args:
        x: Images `[B, H, W, C] in [-1, 1]`.
        labels: Integer labels `[B]`; required iff `num_classes > 0`.
        train: BatchNorm uses batch statistics if True, running averages if False.

    Returns:
        Logits `[B]` (real = positive); with `code_classes > 0` the pair
        `(logits [B], code_logits [B, K])`.
    """
    check_labels(labels, self.num_classes, "DCGANDiscriminator")
    dtype = self.dtype
    h = x.astype(dtype)
    if self.num_classes > 0 and self.conditioning == "concat":
      h = one_hot_channels(h, labels, self.num_classes)
    bn = functools.partial(
      normalize, train=train, axis_name=self.axis_name, momentum=self.momentum, dtype=dtype
    )
    channels, i = self.base_channels, 0
    while max(h.shape[1], h.shape[2]) > 4:
      use_bias = i == 0 or bias_before(self.norm)
      conv = Conv(channels, (4, 4), (2, 2), "SAME", use_bias=use_bias, dtype=dtype, name=f"conv{i}")
      h = weight_normalized(conv, self.norm, train=train)(h)
      if i > 0:
        h = bn(h, self.norm)
      h = nn.leaky_relu(h, LEAKY_SLOPE)
      channels, i = channels * 2, i + 1
    return critic_head(self, h.reshape(h.shape[0], -1), labels, train=train)


def build_gan(
  architecture: str,
  *,
  data_shape: Sequence[int],
  latent_dim: int,
  num_classes: int = 0,
  hidden_sizes: Sequence[int] = (128, 128, 128),
  base_channels: int = 64,
  d_norm: str | None = None,
  conditioning: str = "projection",
  code_classes: int = 0,
  axis_name: str | None = None,
  dtype: Any = jnp.float32,
) -> tuple[nn.Module, nn.Module]:
  """Builds an uninitialised `(generator, discriminator)` pair from config fields.

  Args:
      architecture: "mlp" (1-D data, e.g. 2-D mixtures) or "dcgan" (images).
      data_shape: `(D,)` for "mlp"; `(H, W, C)` with `H == W` in {28, 32} for "dcgan".
      latent_dim: Size `Z` of the noise (the generators read it off `z`; checked here).
      num_classes: Number of classes for conditional models; 0 = unconditional.
      hidden_sizes: Dense widths of both MLPs ("mlp" only).
      base_channels: DCGAN width ("dcgan" only).
      d_norm: Discriminator normalisation ("batch" | "layer" | "spectral" | "none");
        None picks "none" for "mlp" and "batch" for "dcgan". WGAN-GP needs a
        per-example critic: "none", "layer" or "spectral".
      conditioning: Discriminator conditioning, "projection" or "concat".
      code_classes: Size `K` of an InfoGAN categorical code (unconditional
        models only): G takes the code where a conditional G takes its label,
        and D gains the head Q(c | x).
      axis_name: Device axis for BatchNorm statistics (e.g. "data"), or None.
      dtype: Compute dtype of both networks (parameters and outputs stay float32).

  Returns:
      `(generator, discriminator)`; both are called as `module(inputs, labels, train)`,
      G with the code as its label when `code_classes > 0`.

  Raises:
      ValueError: On an unknown architecture/norm/conditioning or unsupported shape.
  """
  _check_choice(architecture, GAN_ARCHITECTURES, "architecture")
  if latent_dim < 1:
    raise ValueError(f"latent_dim must be >= 1, got {latent_dim}.")
  if code_classes < 0 or (code_classes > 0 and num_classes > 0):
    raise ValueError(
      f"code_classes must be >= 0 and only used without labels; got code_classes="
      f"{code_classes} with num_classes={num_classes}."
    )
  g_classes = num_classes or code_classes
  shape = tuple(int(d) for d in data_shape)
  if architecture == "mlp":
    if len(shape) != 1:
      raise ValueError(f"GAN architecture 'mlp' needs a 1-D data shape (D,), got {shape}.")
    hidden = tuple(int(h) for h in hidden_sizes)
    generator = MLPGenerator(
      shape[0], hidden, num_classes=g_classes, axis_name=axis_name, dtype=dtype
    )
    discriminator = MLPDiscriminator(
      hidden,
      num_classes=num_classes,
      conditioning=conditioning,
      norm=d_norm or "none",
      code_classes=code_classes,
      axis_name=axis_name,
      dtype=dtype,
    )
  else:
    generator = DCGANGenerator(shape, base_channels, g_classes, axis_name=axis_name, dtype=dtype)
    discriminator = DCGANDiscriminator(
      base_channels,
      num_classes,
      conditioning,
      d_norm or "batch",
      code_classes=code_classes,
      axis_name=axis_name,
      dtype=dtype,
    )
  return generator, discriminator

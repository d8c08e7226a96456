"""Optional FID Inception-v3 feature net (pytorch-fid's `fid_inception_v3`, ported to Flax).

genjax's offline metrics use its own LeNet feature net (`fid_lenet`). This module is the
opt-in path to the standard FID network for users who supply its weights themselves;
numbers computed with it are reported under `inception` names (`fid_inception`,
`kid_inception`, `is_inception`, ...) so they are never mixed up with LeNet numbers.

Getting the weights (they cannot be downloaded by genjax):

1. Download pytorch-fid's port of the TF-slim 2015-12-05 FID graph:
   `pt_inception-2015-12-05-6726825d.pth` from
   https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth
2. Convert it to a torch-free `.npz` (this one step needs `pip install torch`):
   `python -m genjax.evaluation.inception --convert pt_inception-2015-12-05-6726825d.pth
   --out inception_fid.npz`
3. Point `config.eval.inception_weights` (or `$GENJAX_INCEPTION_WEIGHTS`) at the `.npz`.

The `.npz` format: one array per parameter, keyed by its pytorch-fid `state_dict` name
(`Conv2d_1a_3x3.conv.weight`, `Conv2d_1a_3x3.bn.running_mean`,
`Mixed_5b.branch1x1.conv.weight`, ..., `fc.weight`, `fc.bias`), in torch layout (conv
weights OIHW, fc weight `[out, in]`). `num_batches_tracked` buffers are not stored.

The network mirrors torchvision's `Inception3` with pytorch-fid's FID blocks
(`FIDInceptionA`/`C`/`E_1` average-pool with `count_include_pad=False`, `FIDInceptionE_2`
max-pools its pool branch), NHWC layout, torch's explicit padding, BatchNorm
(eps=1e-3) in inference mode, and pytorch-fid's input pipeline: bilinear resize to
299x299 (`align_corners=False`, no antialiasing), then scaling [0, 1] -> [-1, 1].

Status: the architecture, parameter shapes (23,850,960 parameters), the torch <-> Flax
weight mapping and the pooling/resize semantics are tested here, but without the real
weights (and without torch) nobody has compared these features with pytorch-fid's.
Users who have the weights should check that FID values agree with pytorch-fid before
comparing with published numbers.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import os
import pathlib
import sys
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

WEIGHTS_URL = (
  "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
  "pt_inception-2015-12-05-6726825d.pth"
)
PTH_NAME = "pt_inception-2015-12-05-6726825d.pth"
ENV_VAR = "GENJAX_INCEPTION_WEIGHTS"
CONVERT_COMMAND = (
  f"python -m genjax.evaluation.inception --convert {PTH_NAME} --out inception_fid.npz"
)
INPUT_SIZE = 299
FEATURE_DIM = 2048
NUM_CLASSES = 1008

Padding = int | tuple[int, int]


def _torch_padding(padding: Padding) -> str | tuple[tuple[int, int], tuple[int, int]]:
  """Torch's symmetric `padding=p` / `padding=(ph, pw)` as a Flax padding spec."""
  ph, pw = (padding, padding) if isinstance(padding, int) else padding
  if ph == 0 and pw == 0:
    return "VALID"
  return ((ph, ph), (pw, pw))


def avg_pool_exclude_pad(x: jax.Array) -> jax.Array:
  """3x3 stride-1 average pool with padding 1 and torch's `count_include_pad=False`.

  Args:
      x: Feature map `[B, H, W, C]`.

  Returns:
      `[B, H, W, C]`; each output averages only the in-bounds elements of its
      window (4 at corners, 6 on edges, 9 inside), not the zero padding.
  """
  window, strides, pad = (1, 3, 3, 1), (1, 1, 1, 1), ((0, 0), (1, 1), (1, 1), (0, 0))
  total = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, pad)
  ones = jnp.ones((1, x.shape[1], x.shape[2], 1), x.dtype)
  count = jax.lax.reduce_window(ones, 0.0, jax.lax.add, window, strides, pad)
  return total / count


def _max_pool_3x3(x: jax.Array, stride: int, padding: int = 0) -> jax.Array:
  """Torch `max_pool2d(x, 3, stride, padding)`; padding counts as -inf."""
  return nn.max_pool(x, (3, 3), strides=(stride, stride), padding=_torch_padding(padding))


def preprocess(x: jax.Array, size: int | None = INPUT_SIZE, normalize: bool = True) -> jax.Array:
  """pytorch-fid's input pipeline: grey -> RGB, bilinear resize to 299, [0, 1] -> [-1, 1].

  Args:
      x: Images `[B, H, W, C]` in [0, 1], C in {1, 3}.
      size: Side `S` to resize to (pytorch-fid's `resize_input`); None keeps H, W.
      normalize: Map [0, 1] to [-1, 1] (pytorch-fid's `normalize_input`).

  Returns:
      Float32 images `[B, S, S, 3]` (or `[B, H, W, 3]` when `size` is None).

  Raises:
      ValueError: If `x` is not 4-D with 1 or 3 channels.
  """
  if x.ndim != 4 or x.shape[-1] not in (1, 3):
    raise ValueError(f"Inception expects images [B, H, W, C] with C in {{1, 3}}, got {x.shape}.")
  x = jnp.asarray(x, jnp.float32)
  if x.shape[-1] == 1:
    x = jnp.repeat(x, 3, axis=-1)
  if size is not None:
    # antialias=False makes "linear" the 2-tap half-pixel interpolation of torch's
    # F.interpolate(mode="bilinear", align_corners=False) also when downsampling.
    x = jax.image.resize(x, (x.shape[0], size, size, 3), method="bilinear", antialias=False)
  if normalize:
    x = 2.0 * x - 1.0
  return x


class BasicConv2d(nn.Module):
  """torchvision's BasicConv2d: bias-free conv -> BatchNorm(eps=1e-3, running stats) -> relu.

  Attributes:
      features: Output channels.
      kernel_size: `(kh, kw)`.
      strides: Conv stride (same for H and W).
      padding: Torch's symmetric padding, `p` or `(ph, pw)`.
      precision: Conv precision; "highest" keeps float32 convs off TF32 on GPUs.
  """

  features: int
  kernel_size: Sequence[int] = (1, 1)
  strides: int = 1
  padding: Padding = 0
  precision: Any = "highest"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Applies the block to `[B, H, W, C_in]`, giving `[B, H', W', features]`."""
    x = nn.Conv(
      self.features,
      tuple(self.kernel_size),
      strides=(self.strides, self.strides),
      padding=_torch_padding(self.padding),
      use_bias=False,
      precision=self.precision,
      name="conv",
    )(x)
    x = nn.BatchNorm(use_running_average=True, epsilon=1e-3, name="bn")(x)
    return nn.relu(x)


class FIDInceptionA(nn.Module):
  """pytorch-fid's FIDInceptionA (35x35 grid); output channels `224 + pool_features`."""

  pool_features: int
  precision: Any = "highest"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Maps `[B, H, W, C]` to `[B, H, W, 224 + pool_features]`."""
    conv = functools.partial(BasicConv2d, precision=self.precision)
    branch1x1 = conv(64, name="branch1x1")(x)
    branch5x5 = conv(48, name="branch5x5_1")(x)
    branch5x5 = conv(64, (5, 5), padding=2, name="branch5x5_2")(branch5x5)
    branch3x3dbl = conv(64, name="branch3x3dbl_1")(x)
    branch3x3dbl = conv(96, (3, 3), padding=1, name="branch3x3dbl_2")(branch3x3dbl)
    branch3x3dbl = conv(96, (3, 3), padding=1, name="branch3x3dbl_3")(branch3x3dbl)
    branch_pool = conv(self.pool_features, name="branch_pool")(avg_pool_exclude_pad(x))
    return jnp.concatenate([branch1x1, branch5x5, branch3x3dbl, branch_pool], axis=-1)


class InceptionB(nn.Module):
  """torchvision's InceptionB (35 -> 17 grid reduction); adds 480 channels."""

  precision: Any = "highest"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Maps `[B, H, W, C]` to `[B, (H - 3) // 2 + 1, ..., 480 + C]`."""
    conv = functools.partial(BasicConv2d, precision=self.precision)
    branch3x3 = conv(384, (3, 3), strides=2, name="branch3x3")(x)
    branch3x3dbl = conv(64, name="branch3x3dbl_1")(x)
    branch3x3dbl = conv(96, (3, 3), padding=1, name="branch3x3dbl_2")(branch3x3dbl)
    branch3x3dbl = conv(96, (3, 3), strides=2, name="branch3x3dbl_3")(branch3x3dbl)
    branch_pool = _max_pool_3x3(x, stride=2)
    return jnp.concatenate([branch3x3, branch3x3dbl, branch_pool], axis=-1)


class FIDInceptionC(nn.Module):
  """pytorch-fid's FIDInceptionC (17x17 grid, factorised 7x7 convs); 768 channels out."""

  channels_7x7: int
  precision: Any = "highest"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Maps `[B, H, W, C]` to `[B, H, W, 768]`."""
    conv = functools.partial(BasicConv2d, precision=self.precision)
    c7 = self.channels_7x7
    branch1x1 = conv(192, name="branch1x1")(x)
    branch7x7 = conv(c7, name="branch7x7_1")(x)
    branch7x7 = conv(c7, (1, 7), padding=(0, 3), name="branch7x7_2")(branch7x7)
    branch7x7 = conv(192, (7, 1), padding=(3, 0), name="branch7x7_3")(branch7x7)
    branch7x7dbl = conv(c7, name="branch7x7dbl_1")(x)
    branch7x7dbl = conv(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(branch7x7dbl)
    branch7x7dbl = conv(c7, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(branch7x7dbl)
    branch7x7dbl = conv(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(branch7x7dbl)
    branch7x7dbl = conv(192, (1, 7), padding=(0, 3), name="branch7x7dbl_5")(branch7x7dbl)
    branch_pool = conv(192, name="branch_pool")(avg_pool_exclude_pad(x))
    return jnp.concatenate([branch1x1, branch7x7, branch7x7dbl, branch_pool], axis=-1)


class InceptionD(nn.Module):
  """torchvision's InceptionD (17 -> 8 grid reduction); adds 512 channels."""

  precision: Any = "highest"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Maps `[B, H, W, C]` to `[B, (H - 3) // 2 + 1, ..., 512 + C]`."""
    conv = functools.partial(BasicConv2d, precision=self.precision)
    branch3x3 = conv(192, name="branch3x3_1")(x)
    branch3x3 = conv(320, (3, 3), strides=2, name="branch3x3_2")(branch3x3)
    branch7x7x3 = conv(192, name="branch7x7x3_1")(x)
    branch7x7x3 = conv(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(branch7x7x3)
    branch7x7x3 = conv(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(branch7x7x3)
    branch7x7x3 = conv(192, (3, 3), strides=2, name="branch7x7x3_4")(branch7x7x3)
    branch_pool = _max_pool_3x3(x, stride=2)
    return jnp.concatenate([branch3x3, branch7x7x3, branch_pool], axis=-1)


class FIDInceptionE(nn.Module):
  """pytorch-fid's FIDInceptionE_1 (`pool="avg"`) / FIDInceptionE_2 (`pool="max"`).

  Attributes:
      pool: Pool branch: "avg" (count_include_pad=False) or "max" (3x3, stride 1, pad 1).
      precision: Conv precision.
  """

  pool: str = "avg"
  precision: Any = "highest"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Maps `[B, H, W, C]` to `[B, H, W, 2048]`."""
    conv = functools.partial(BasicConv2d, precision=self.precision)
    branch1x1 = conv(320, name="branch1x1")(x)
    branch3x3 = conv(384, name="branch3x3_1")(x)
    branch3x3 = jnp.concatenate(
      [
        conv(384, (1, 3), padding=(0, 1), name="branch3x3_2a")(branch3x3),
        conv(384, (3, 1), padding=(1, 0), name="branch3x3_2b")(branch3x3),
      ],
      axis=-1,
    )
    branch3x3dbl = conv(448, name="branch3x3dbl_1")(x)
    branch3x3dbl = conv(384, (3, 3), padding=1, name="branch3x3dbl_2")(branch3x3dbl)
    branch3x3dbl = jnp.concatenate(
      [
        conv(384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(branch3x3dbl),
        conv(384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(branch3x3dbl),
      ],
      axis=-1,
    )
    if self.pool == "avg":
      pooled = avg_pool_exclude_pad(x)
    elif self.pool == "max":
      # The TF graph max-pools here; pytorch-fid's FIDInceptionE_2 reproduces that quirk.
      pooled = _max_pool_3x3(x, stride=1, padding=1)
    else:
      raise ValueError(f"FIDInceptionE pool must be 'avg' or 'max', got {self.pool!r}.")
    branch_pool = conv(192, name="branch_pool")(pooled)
    return jnp.concatenate([branch1x1, branch3x3, branch3x3dbl, branch_pool], axis=-1)


class FIDInceptionV3(nn.Module):
  """pytorch-fid's `fid_inception_v3()` up to pool3 features and fc logits.

  Submodule names equal torch's, so `Mixed_5b.branch1x1.conv.weight` lives at
  `params["Mixed_5b"]["branch1x1"]["conv"]["kernel"]` (see `torch_to_flax`).

  Attributes:
      num_classes: Outputs of the fc layer (1008 in the FID checkpoint).
      resize_input: Bilinearly resize inputs to 299x299 first.
      normalize_input: Map inputs from [0, 1] to [-1, 1].
      precision: Conv precision; "highest" keeps float32 convs off TF32 on GPUs.
  """

  num_classes: int = NUM_CLASSES
  resize_input: bool = True
  normalize_input: bool = True
  precision: Any = "highest"

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Computes FID features and class logits.

    Args:
        x: Images `[B, H, W, C]` in [0, 1], C in {1, 3}; at least 75x75 when
            `resize_input` is False.

    Returns:
        `(features, logits)`: pool3 features `[B, 2048]` and fc logits
        `[B, num_classes]`.
    """
    size = INPUT_SIZE if self.resize_input else None
    x = preprocess(x, size=size, normalize=self.normalize_input)
    conv = functools.partial(BasicConv2d, precision=self.precision)
    x = conv(32, (3, 3), strides=2, name="Conv2d_1a_3x3")(x)
    x = conv(32, (3, 3), name="Conv2d_2a_3x3")(x)
    x = conv(64, (3, 3), padding=1, name="Conv2d_2b_3x3")(x)
    x = _max_pool_3x3(x, stride=2)
    x = conv(80, name="Conv2d_3b_1x1")(x)
    x = conv(192, (3, 3), name="Conv2d_4a_3x3")(x)
    x = _max_pool_3x3(x, stride=2)
    x = FIDInceptionA(32, self.precision, name="Mixed_5b")(x)
    x = FIDInceptionA(64, self.precision, name="Mixed_5c")(x)
    x = FIDInceptionA(64, self.precision, name="Mixed_5d")(x)
    x = InceptionB(self.precision, name="Mixed_6a")(x)
    for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
      x = FIDInceptionC(c7, self.precision, name=name)(x)
    x = InceptionD(self.precision, name="Mixed_7a")(x)
    x = FIDInceptionE("avg", self.precision, name="Mixed_7b")(x)
    x = FIDInceptionE("max", self.precision, name="Mixed_7c")(x)
    features = jnp.mean(x, axis=(1, 2))
    logits = nn.Dense(self.num_classes, precision=self.precision, name="fc")(features)
    return features, logits


# --- torch state_dict <-> Flax variables -------------------------------------------------

# (collection, Flax leaf name) <-> torch parameter suffix; "kernel" covers conv and fc.
_LEAF_NAMES = {
  ("params", "kernel"): "weight",
  ("params", "scale"): "weight",
  ("params", "bias"): "bias",
  ("batch_stats", "mean"): "running_mean",
  ("batch_stats", "var"): "running_var",
}


def _torch_permutation(leaf: str, ndim: int) -> tuple[int, ...] | None:
  """Axis order taking a Flax kernel to torch layout (HWIO -> OIHW, [in, out] -> [out, in])."""
  if leaf != "kernel":
    return None
  return {4: (3, 2, 0, 1), 2: (1, 0)}[ndim]


def _to_torch_layout(leaf: str, array: Any) -> Any:
  """Flax layout -> torch layout, for arrays and `jax.ShapeDtypeStruct`s."""
  perm = _torch_permutation(leaf, len(array.shape))
  if perm is None:
    return array if isinstance(array, jax.ShapeDtypeStruct) else np.asarray(array)
  if isinstance(array, jax.ShapeDtypeStruct):
    return jax.ShapeDtypeStruct(tuple(array.shape[i] for i in perm), array.dtype)
  return np.transpose(np.asarray(array), perm)


def _to_flax_layout(leaf: str, array: np.ndarray) -> np.ndarray:
  """Torch layout -> Flax layout (OIHW -> HWIO, [out, in] -> [in, out])."""
  perm = _torch_permutation(leaf, array.ndim)
  return array if perm is None else np.transpose(array, np.argsort(perm))


def _torch_names(variables: Mapping[str, Any]) -> dict[str, tuple[tuple[str, ...], str]]:
  """Maps each torch name to its Flax `(collection, *module path, leaf)` path and leaf."""
  names = {}
  for collection in ("params", "batch_stats"):
    flat = _flatten(variables.get(collection, {}))
    for path in flat:
      *modules, leaf = path
      if (collection, leaf) not in _LEAF_NAMES:
        raise ValueError(f"No torch name for Flax variable {collection}/{'/'.join(path)}.")
      names[".".join([*modules, _LEAF_NAMES[(collection, leaf)]])] = ((collection, *path), leaf)
  return names


def _flatten(tree: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
  """Nested dicts -> `{path tuple: leaf}`."""
  flat = {}
  for key, value in tree.items():
    if isinstance(value, Mapping):
      flat.update(_flatten(value, (*prefix, key)))
    else:
      flat[(*prefix, key)] = value
  return flat


def _unflatten(flat: Mapping[tuple[str, ...], Any]) -> dict[str, Any]:
  """`{path tuple: leaf}` -> nested dicts."""
  tree: dict[str, Any] = {}
  for path, value in flat.items():
    node = tree
    for key in path[:-1]:
      node = node.setdefault(key, {})
    node[path[-1]] = value
  return tree


def flax_to_torch(variables: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """Flax variables of `FIDInceptionV3` -> pytorch-fid state_dict (inverse of `torch_to_flax`).

  Args:
      variables: `{"params": ..., "batch_stats": ...}` as from `FIDInceptionV3().init`;
          `jax.eval_shape` leaves give `jax.ShapeDtypeStruct`s in torch shapes.

  Returns:
      `{torch name: array}` in torch layout (conv OIHW, fc `[out, in]`), without
      `num_batches_tracked`.
  """
  flat = _flatten(variables)
  return {
    name: _to_torch_layout(leaf, flat[path])
    for name, (path, leaf) in _torch_names(variables).items()
  }


@functools.lru_cache(maxsize=4)
def _expected_variables(module: FIDInceptionV3) -> dict[str, Any]:
  """Shape/dtype tree of `module`'s variables, without running the network."""
  x = jax.ShapeDtypeStruct((1, INPUT_SIZE, INPUT_SIZE, 3), jnp.float32)
  return dict(jax.eval_shape(module.init, jax.random.key(0), x))


def torch_to_flax(
  state_dict: Mapping[str, Any], module: FIDInceptionV3 | None = None
) -> dict[str, Any]:
  """pytorch-fid state_dict arrays -> Flax variables of `FIDInceptionV3`.

  Args:
      state_dict: `{torch name: array}` in torch layout, e.g. from the `.npz`;
          `*.num_batches_tracked` entries are ignored.
      module: The module to load into; defaults to `FIDInceptionV3()`.

  Returns:
      `{"params": ..., "batch_stats": ...}` of float32 numpy arrays.

  Raises:
      ValueError: Listing every missing, unexpected and wrongly shaped key.
  """
  module = module if module is not None else FIDInceptionV3()
  expected = _expected_variables(module)
  names = _torch_names(expected)
  flat_expected = _flatten(expected)
  given = {k: v for k, v in state_dict.items() if not k.endswith(".num_batches_tracked")}
  missing = sorted(set(names) - set(given))
  unexpected = sorted(set(given) - set(names))
  flat = {}
  misshaped = []
  for name in sorted(set(names) & set(given)):
    path, leaf = names[name]
    array = _to_flax_layout(leaf, np.asarray(given[name], dtype=np.float32))
    want = flat_expected[path]
    if array.shape != tuple(want.shape):
      torch_want = _to_torch_layout(leaf, want).shape
      misshaped.append(f"{name}: got {np.shape(given[name])}, expected {torch_want}")
    flat[path] = array
  if missing or unexpected or misshaped:
    problems = []
    if missing:
      problems.append(f"missing {len(missing)} keys: {', '.join(missing)}")
    if unexpected:
      problems.append(f"unexpected {len(unexpected)} keys: {', '.join(unexpected)}")
    if misshaped:
      problems.append(f"wrong shape for {len(misshaped)} keys: {'; '.join(misshaped)}")
    raise ValueError(
      "The weights do not match pytorch-fid's FID Inception-v3 state_dict: " + " | ".join(problems)
    )
  return _unflatten(flat)


# --- loading -----------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnums=0)
def _forward(
  module: FIDInceptionV3, variables: Mapping[str, Any], x: jax.Array
) -> tuple[jax.Array, jax.Array]:
  return module.apply(variables, x)


@dataclasses.dataclass(frozen=True, eq=False)
class InceptionFeatures:
  """FID Inception-v3 as a feature net (same interface as genjax's LeNet feature net).

  Attributes:
      module: The network.
      variables: Its `{"params": ..., "batch_stats": ...}`.
      info: Provenance of the weights file: `path`, `sha256` and `key`
          (`inception-<sha256[:8]>`).
      name: Metric suffix, "inception" (`fid_inception`, ...).
  """

  module: FIDInceptionV3
  variables: Mapping[str, Any]
  info: Mapping[str, str]
  name: str = "inception"

  @property
  def feature_dim(self) -> int:
    """Size of the pool3 features, 2048."""
    return FEATURE_DIM

  @property
  def key(self) -> str:
    """Identifies the weights; metrics are comparable only between equal keys."""
    return self.info["key"]

  def apply(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Pool3 features and logits of a batch (pure; compiled once per input shape).

    Args:
        x: Images `[B, H, W, C]` in [0, 1], C in {1, 3}.

    Returns:
        `(features [B, 2048], logits [B, 1008])`.
    """
    return _forward(self.module, self.variables, x)

  def apply_with(self, variables: Mapping[str, Any], x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """:meth:`apply` with the weights as an argument (traced, not baked into a program)."""
    return self.module.apply(variables, x)


def weights_path(configured: str | os.PathLike | None) -> pathlib.Path | None:
  """Where the `.npz` weights should be: the config value, else `$GENJAX_INCEPTION_WEIGHTS`.

  Args:
      configured: `config.eval.inception_weights` ("" or None means unset).

  Returns:
      The (user-expanded) path, which may not exist; None if neither is set.
  """
  value = os.fspath(configured) if configured else os.environ.get(ENV_VAR, "")
  return pathlib.Path(value).expanduser() if value else None


def _missing_message(path: pathlib.Path | None) -> str:
  where = f"not found at {path}" if path is not None else "not configured"
  return (
    f"FID Inception weights {where}. Expected a .npz of pytorch-fid's FID Inception-v3 "
    f"state_dict (one array per torch parameter name). To create it, download {PTH_NAME} "
    f"from {WEIGHTS_URL} and convert it (needs `pip install torch`): {CONVERT_COMMAND} ; "
    f"then set config.eval.inception_weights or ${ENV_VAR} to the .npz path."
  )


def _sha256(path: pathlib.Path) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      digest.update(chunk)
  return digest.hexdigest()


def load(path: str | os.PathLike | None) -> InceptionFeatures:
  """Loads the FID Inception feature net from a converted `.npz`.

  Args:
      path: The `.npz` (see the module docstring), e.g. `weights_path(...)`.

  Returns:
      The feature net, with the file's path, sha256 and key in `info`.

  Raises:
      FileNotFoundError: If `path` is None or not a file; the message says how to
          obtain and convert the weights.
      ValueError: If the file's arrays do not match the network.
  """
  path = pathlib.Path(path).expanduser() if path is not None else None
  if path is None or not path.is_file():
    raise FileNotFoundError(_missing_message(path))
  with np.load(path, allow_pickle=False) as data:
    state_dict = {key: data[key] for key in data.files}
  module = FIDInceptionV3()
  variables = jax.tree_util.tree_map(jnp.asarray, torch_to_flax(state_dict, module))
  digest = _sha256(path)
  info = {"path": str(path), "sha256": digest, "key": f"inception-{digest[:8]}"}
  return InceptionFeatures(module, variables, info)


def save_npz(state_dict: Mapping[str, Any], out: str | os.PathLike) -> pathlib.Path:
  """Checks a pytorch-fid state_dict against the network and writes it as `.npz`.

  Args:
      state_dict: `{torch name: array}`; `num_batches_tracked` entries are dropped.
      out: Destination; `.npz` is appended by numpy if missing.

  Returns:
      The written path.

  Raises:
      ValueError: If keys are missing, unexpected or misshaped (nothing is written).
  """
  arrays = {
    k: np.asarray(v, dtype=np.float32)
    for k, v in state_dict.items()
    if not k.endswith(".num_batches_tracked")
  }
  torch_to_flax(arrays)
  out = pathlib.Path(out)
  if out.suffix != ".npz":
    out = out.with_name(out.name + ".npz")
  out.parent.mkdir(parents=True, exist_ok=True)
  np.savez(out, **arrays)
  return out


def _load_pth(src: str | os.PathLike) -> dict[str, np.ndarray]:
  """Reads a torch checkpoint's state_dict as numpy arrays (imports torch lazily)."""
  try:
    import torch  # Optional: only this one-off conversion needs it.
  except ImportError as e:
    raise SystemExit(
      "Converting a .pth needs PyTorch, which genjax does not depend on: "
      "pip install torch (the CPU build is enough), then rerun."
    ) from e
  obj = torch.load(os.fspath(src), map_location="cpu", weights_only=True)
  if hasattr(obj, "state_dict"):
    obj = obj.state_dict()
  return {k: v.detach().cpu().numpy() for k, v in obj.items()}


def main(argv: Sequence[str] | None = None) -> int:
  """CLI: `--convert SRC.pth --out DST.npz`."""
  parser = argparse.ArgumentParser(
    prog="python -m genjax.evaluation.inception",
    description=f"Convert pytorch-fid's {PTH_NAME} ({WEIGHTS_URL}) to genjax's .npz format.",
  )
  parser.add_argument("--convert", required=True, metavar="SRC.pth", help="torch checkpoint")
  parser.add_argument("--out", required=True, metavar="DST.npz", help="output .npz")
  args = parser.parse_args(argv)
  src = pathlib.Path(args.convert).expanduser()
  if not src.is_file():
    parser.error(f"{src} does not exist; download it from {WEIGHTS_URL}")
  out = save_npz(_load_pth(src), args.out)
  print(f"Wrote {out} (sha256 {_sha256(out)}).")
  print(f"Use it via config.eval.inception_weights={out} or {ENV_VAR}={out}.")
  return 0


if __name__ == "__main__":
  sys.exit(main())

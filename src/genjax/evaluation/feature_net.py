"""Small per-dataset classifiers whose features stand in for Inception in FID.

FID, KID and precision/recall are normally computed on Inception-v3 features,
but Inception weights cannot be downloaded offline and ImageNet features say
little about 28x28 digits anyway. genjax instead trains its own small LeNet-style
classifier per dataset and uses its penultimate-layer features (and logits, for a
classifier score). Metrics built on it are named with the net's suffix
(``fid_lenet``, ``kid_lenet``, ...). They are NOT comparable with published
Inception FIDs, and only comparable between runs that used the same feature net:
the same ``FeatureNet.info["key"]``.

Trained nets are cached in ``cache_root()/feature_nets/<key>/`` with
``key = <dataset>-<arch>-seed<seed>-<hash8>``, where ``hash8`` covers the
dataset contents, the architecture and the training hyperparameters, so a
change to any of them trains a fresh net instead of silently reusing a stale one.
Training is deterministic given the seed on one machine, but not bit-identical
across CPUs (floating-point reductions differ): two machines training the same
key get nets whose FIDs differ by a few percent. The nets of the default
recipe for MNIST and Fashion-MNIST therefore ship with genjax, under
``genjax/evaluation/weights/<key>/``, and are used whenever the key matches, so
``*_lenet`` numbers are reproducible everywhere; any other key is trained and
cached as above.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import hashlib
import importlib.resources
import json
import logging
import math
import os
import pathlib
import re
import shutil
import tempfile
import time
import warnings
from typing import Any, Sequence

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn

from genjax.data import sources
from genjax.data.sources import Dataset, file_lock, load_dataset

logger = logging.getLogger("genjax")

ARCHITECTURES = ("lenet",)
# Hyperparameters of each architecture (besides num_classes), part of the cache key.
_ARCH_HPARAMS = {"lenet": {"channels": (32, 64), "feature_dim": 128}}
# Bump to invalidate every cached net after a change that the key cannot see.
_CACHE_VERSION = 1
_PARAMS_FILE = "params.msgpack"
_INFO_FILE = "info.json"
# Feature nets shipped with the package, one ``<key>/`` entry each (the cache's layout).
_PACKAGED = "weights"
_INFO_KEYS = ("dataset", "arch", "seed", "key", "test_accuracy", "num_test", "feature_dim")


_KERNEL = 5


def _patch_conv(lhs, rhs, window_strides, padding, **unused):
  """``lax.conv_general_dilated`` for stride-1 'SAME' NHWC/HWIO convs, as a matmul.

  Args:
      lhs: Inputs ``[B, H, W, C]``.
      rhs: Kernel ``[kh, kw, C, O]``.
      window_strides: Must be all ones.
      padding: Must be ``"SAME"``.
      **unused: Dilations, groups, ... which ``nn.Conv`` passes at their defaults.

  Returns:
      Outputs ``[B, H, W, O]``.
  """
  del unused
  if tuple(window_strides) != (1, 1) or padding != "SAME":
    raise ValueError(f"_patch_conv: unsupported strides {window_strides} / padding {padding}.")
  kh, kw = rhs.shape[:2]
  height, width = lhs.shape[1:3]
  pads = ((0, 0), ((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2), (0, 0))
  padded = jnp.pad(lhs, pads)
  # Channel-last patches ordered (i, j, c), matching the HWIO kernel's flattening.
  taps = [padded[:, i : i + height, j : j + width] for i in range(kh) for j in range(kw)]
  return jnp.concatenate(taps, axis=-1) @ rhs.reshape(-1, rhs.shape[-1])


class LeNet(nn.Module):
  """(5x5 'SAME' conv + relu + 2x2 max-pool) per stage -> Dense features -> logits.

  Deterministic (no dropout or batch statistics), so ``apply`` needs only params.

  Attributes:
      num_classes: Number of output classes ``K``.
      channels: Output channels of each conv stage.
      feature_dim: Width ``F`` of the penultimate (feature) layer.
  """

  num_classes: int
  channels: Sequence[int] = (32, 64)
  feature_dim: int = 128

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Classifies a batch of images.

    Args:
        x: Float images in [0, 1], shape ``[B, H, W, C]``.

    Returns:
        ``(features [B, F], logits [B, K])``; features are post-relu.
    """
    h = x
    for i, ch in enumerate(self.channels):
      # XLA:CPU convolves ~10x slower when the input is smaller than the kernel
      # (the 4x4 maps of 8x8 digits); a matmul over explicit patches does not.
      small = min(h.shape[1], h.shape[2]) < _KERNEL
      conv_fn = _patch_conv if small else None
      conv = nn.Conv(
        ch, (_KERNEL, _KERNEL), padding="SAME", conv_general_dilated=conv_fn, name=f"conv{i}"
      )
      h = nn.relu(conv(h))
      # Small inputs (8x8 digits) keep their last pixels rather than pooling to nothing.
      if min(h.shape[1], h.shape[2]) // 2 >= 2:
        h = nn.max_pool(h, (2, 2), strides=(2, 2))
    h = h.reshape(h.shape[0], -1)
    features = nn.relu(nn.Dense(self.feature_dim, name="features")(h))
    logits = nn.Dense(self.num_classes, name="logits")(features)
    return features, logits


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
  """Training hyperparameters; all of them are part of the cache key.

  Attributes:
      batch_size: Examples per step; the ragged last batch of an epoch is dropped.
      learning_rate: Peak AdamW learning rate (after warmup, then cosine to 0).
      warmup_steps: Linear warmup steps.
      weight_decay: Decoupled AdamW weight decay.
      target_steps: Epochs are chosen so training takes about this many steps ...
      min_epochs: ... but at least this many epochs ...
      max_epochs: ... and at most this many.
      eval_batch_size: Batch size of the test-accuracy evaluation.
      max_steps: Stop after this many steps (0: run every epoch); for quick tests.
  """

  batch_size: int = 128
  learning_rate: float = 2e-3
  warmup_steps: int = 100
  weight_decay: float = 1e-4
  target_steps: int = 1200
  min_epochs: int = 2
  max_epochs: int = 50
  eval_batch_size: int = 1000
  max_steps: int = 0

  def num_epochs(self, num_train: int) -> int:
    """The fixed number of epochs for a train split of ``num_train`` examples."""
    steps_per_epoch = max(num_train // self.batch_size, 1)
    epochs = math.ceil(self.target_steps / steps_per_epoch)
    return int(np.clip(epochs, self.min_epochs, self.max_epochs))

  def num_steps(self, num_train: int) -> int:
    """Optimizer steps for a train split of ``num_train`` examples."""
    total = self.num_epochs(num_train) * max(num_train // self.batch_size, 1)
    return min(total, self.max_steps) if self.max_steps else total


TRAINING = TrainingConfig()


@dataclasses.dataclass(frozen=True, eq=False)
class FeatureNet:
  """A trained classifier used as a feature extractor.

  Attributes:
      name: Architecture name (``"lenet"``), the suffix of metric names (``fid_lenet``).
      module: The Flax module.
      params: Its parameters.
      info: Contents of ``info.json``: ``key``, ``test_accuracy``, ``seed``, ...
  """

  name: str
  module: nn.Module
  params: Any
  info: dict

  def apply(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Features and logits of a batch (pure, jit-able).

    Args:
        x: Float images in [0, 1], shape ``[B, H, W, C]``.

    Returns:
        ``(features [B, F] float32, logits [B, K] float32)``.
    """
    return self.apply_with(self.params, x)

  def apply_with(self, params: Any, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """:meth:`apply` with the parameters as an argument (traced, not baked into a program)."""
    features, logits = self.module.apply({"params": params}, x)
    return features.astype(jnp.float32), logits.astype(jnp.float32)

  @property
  def variables(self) -> Any:
    """What :meth:`apply_with` takes."""
    return self.params

  @property
  def feature_dim(self) -> int:
    return int(self.module.feature_dim)

  @property
  def key(self) -> str:
    """The cache key; metrics are comparable only between equal keys."""
    return self.info["key"]


def cache_root() -> pathlib.Path:
  """``$GENJAX_CACHE_DIR``, else ``$XDG_CACHE_HOME/genjax``, else ``~/.cache/genjax``."""
  return pathlib.Path(os.fspath(sources.cache_root()))


def dataset_fingerprint(dataset: Dataset) -> str:
  """SHA-256 hex digest of the train and test images and labels (bytes and shapes)."""
  digest = hashlib.sha256()
  for split in (dataset.train, dataset.test):
    for name in ("image", "label"):
      arr = np.ascontiguousarray(split[name])
      digest.update(f"{name}:{arr.dtype.str}:{arr.shape};".encode())
      digest.update(memoryview(arr).cast("B"))
  return digest.hexdigest()


def cache_key(
  dataset: Dataset, *, arch: str = "lenet", seed: int = 0, training: TrainingConfig | None = None
) -> str:
  """``<dataset>-<arch>-seed<seed>-<hash8>``, the feature net's cache directory name.

  Args:
      dataset: A labelled image dataset.
      arch: One of ``ARCHITECTURES``.
      seed: Training seed.
      training: Training hyperparameters (default ``TRAINING``).

  Returns:
      The key; ``hash8`` covers dataset contents, architecture and ``training``.
  """
  _check_inputs(dataset, arch)
  spec = {
    "version": _CACHE_VERSION,
    "arch": arch,
    "arch_hparams": _ARCH_HPARAMS[arch],
    "num_classes": dataset.num_classes,
    "training": dataclasses.asdict(training or TRAINING),
    "data": dataset_fingerprint(dataset),
  }
  hash8 = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:8]
  # tfds names such as "mnist:3.0.1" or "a/b" must not become paths.
  name = re.sub(r"[^A-Za-z0-9_.]+", "_", dataset.name)
  return f"{name}-{arch}-seed{seed}-{hash8}"


def load_or_train(
  dataset: Dataset | str,
  *,
  arch: str = "lenet",
  seed: int = 0,
  training: TrainingConfig | None = None,
  cache_dir: str | os.PathLike | None = None,
  progress: bool = False,
) -> FeatureNet:
  """The net for (dataset, arch, seed, hyperparameters): shipped, cached, or trained and cached.

  A net shipped with genjax for the same key (``packaged_keys()``) comes first;
  ``info["source"]`` says which: ``"genjax package"``, ``"cache"`` or ``"trained"``.
  Concurrent callers are serialized by a file lock, so only one of them trains.
  A corrupt cache entry is retrained and replaced, with a warning.

  Args:
      dataset: A labelled image ``Dataset`` or a name for ``load_dataset``.
      arch: One of ``ARCHITECTURES``.
      seed: Seed of initialization and shuffling.
      training: Training hyperparameters (default ``TRAINING``).
      cache_dir: Root of the cache; defaults to ``cache_root()``.
      progress: Show a tqdm progress bar while training.

  Returns:
      The ``FeatureNet``.

  Raises:
      ValueError: Unknown ``arch``, or ``dataset`` is not a labelled image dataset.
  """
  if isinstance(dataset, str):
    dataset = load_dataset(dataset)
  key = cache_key(dataset, arch=arch, seed=seed, training=training)
  module = _make_module(arch, dataset.num_classes)
  net = _load_packaged(key, arch, module, dataset)
  if net is not None:
    return net
  root = pathlib.Path(cache_dir).expanduser() if cache_dir is not None else cache_root()
  path = root / "feature_nets" / key
  try:  # Lock-free fast path for the common case of an intact entry.
    net = _load(path, arch, module, dataset)
  except (OSError, ValueError):
    with file_lock(str(path) + ".lock"):
      net = _load_or_train_locked(path, arch, module, dataset, seed, training, progress)
  else:
    _log_loaded(net, path)
  return net


def _packaged_root():
  return importlib.resources.files("genjax.evaluation") / _PACKAGED


def packaged_keys() -> list[str]:
  """Keys of the feature nets shipped with genjax (used instead of training when they match)."""
  root = _packaged_root()
  if not root.is_dir():
    return []
  return sorted(e.name for e in root.iterdir() if e.is_dir() and not e.name.startswith(("_", ".")))


def _load_packaged(key: str, arch: str, module: nn.Module, dataset: Dataset) -> FeatureNet | None:
  """The shipped net for ``key``, or None if genjax ships none (or a damaged one, with a warning)."""
  entry = _packaged_root() / key
  if not entry.is_dir():
    return None
  try:
    with importlib.resources.as_file(entry) as path:
      net = _load(pathlib.Path(path), arch, module, dataset, source="genjax package")
  except (OSError, ValueError) as e:
    warnings.warn(
      f"The feature net {key} shipped with genjax is unreadable ({e}); using the cache.",
      stacklevel=3,
    )
    return None
  _log_loaded(net, pathlib.Path(str(entry)))
  return net


def _log_loaded(net: FeatureNet, path: pathlib.Path) -> None:
  logger.info(
    "Loaded feature net %s (test accuracy %.4f) from %s", net.key, net.info["test_accuracy"], path
  )


def _load_or_train_locked(path, arch, module, dataset, seed, training, progress) -> FeatureNet:
  if path.exists():
    try:
      net = _load(path, arch, module, dataset)
    except (OSError, ValueError) as e:
      warnings.warn(
        f"Feature net cache entry {path} is unreadable ({e}); retraining.", stacklevel=3
      )
    else:
      _log_loaded(net, path)
      return net
  params, info = train(dataset, arch=arch, seed=seed, training=training, progress=progress)
  _save(path, params, info)
  logger.info(
    "Trained feature net %s in %.1f s: test accuracy %.4f; cached at %s",
    info["key"],
    info["train_seconds"],
    info["test_accuracy"],
    path,
  )
  return FeatureNet(name=arch, module=module, params=params, info={**info, "source": "trained"})


def train(
  dataset: Dataset | str,
  *,
  arch: str = "lenet",
  seed: int = 0,
  training: TrainingConfig | None = None,
  progress: bool = False,
) -> tuple[Any, dict]:
  """Trains a feature net (no caching).

  Args:
      dataset: A labelled image ``Dataset`` or a name for ``load_dataset``.
      arch: One of ``ARCHITECTURES``.
      seed: Seed of initialization and shuffling.
      training: Training hyperparameters (default ``TRAINING``).
      progress: Show a tqdm progress bar.

  Returns:
      ``(params, info)``; ``info`` holds what ``info.json`` stores.

  Raises:
      ValueError: Unknown ``arch``, or ``dataset`` is not a labelled image dataset.
  """
  if isinstance(dataset, str):
    dataset = load_dataset(dataset)
  cfg = training or TRAINING
  key = cache_key(dataset, arch=arch, seed=seed, training=cfg)
  module = _make_module(arch, dataset.num_classes)
  epochs = cfg.num_epochs(dataset.num_train)
  start = time.perf_counter()
  params = _fit(module, dataset.train, cfg, epochs, seed, progress)
  params = jax.block_until_ready(params)
  train_seconds = time.perf_counter() - start
  accuracy = _accuracy(module, params, dataset.test, cfg.eval_batch_size)
  info = {
    "dataset": dataset.name,
    "arch": arch,
    "seed": seed,
    "key": key,
    "test_accuracy": accuracy,
    "num_test": len(dataset.test["label"]),
    "train_seconds": round(train_seconds, 2),
    "epochs": epochs,
    "steps": cfg.num_steps(dataset.num_train),
    "feature_dim": int(module.feature_dim),
    "num_classes": dataset.num_classes,
    "jax_version": jax.__version__,
    "flax_version": flax.__version__,
    "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
  }
  return params, info


# ----------------------------------------------------------------------------
# Training internals.


def _check_inputs(dataset: Dataset, arch: str) -> None:
  if arch not in ARCHITECTURES:
    raise ValueError(
      f"Unknown feature net architecture {arch!r}; choose from {', '.join(ARCHITECTURES)}."
    )
  if dataset.kind != "image":
    raise ValueError(
      f"fid_{arch} needs a labelled image dataset; {dataset.name} is of kind "
      f"{dataset.kind!r}, not 'image'."
    )
  if dataset.num_classes <= 1:
    raise ValueError(f"fid_{arch} needs a labelled image dataset; {dataset.name} has no labels.")


def _make_module(arch: str, num_classes: int) -> nn.Module:
  hparams = _ARCH_HPARAMS[arch]
  return LeNet(num_classes, channels=hparams["channels"], feature_dim=hparams["feature_dim"])


def _optimizer(cfg: TrainingConfig, total_steps: int) -> optax.GradientTransformation:
  schedule = optax.warmup_cosine_decay_schedule(
    0.0, cfg.learning_rate, min(cfg.warmup_steps, total_steps // 2), total_steps
  )
  return optax.adamw(schedule, weight_decay=cfg.weight_decay)


# Module-level with static config, so repeated trainings reuse the compiled step.
@functools.partial(jax.jit, static_argnums=(0, 1, 2), donate_argnums=3)
def _train_step(module, cfg, total_steps, state, images, labels):
  """One AdamW step on a uint8 batch ``[B, H, W, C]``; returns ``(state, loss)``."""
  params, opt_state = state

  def loss_fn(params):
    _, logits = module.apply({"params": params}, images.astype(jnp.float32) / 255.0)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

  loss, grads = jax.value_and_grad(loss_fn)(params)
  updates, opt_state = _optimizer(cfg, total_steps).update(grads, opt_state, params)
  return (optax.apply_updates(params, updates), opt_state), loss


def _fit(module, train_split, cfg: TrainingConfig, epochs: int, seed: int, progress: bool):
  """Runs ``epochs`` epochs of AdamW on the train split; returns the params."""
  images, labels = train_split["image"], train_split["label"]
  steps_per_epoch = max(len(labels) // cfg.batch_size, 1)
  total = cfg.num_steps(len(labels))
  dummy = jnp.zeros((1, *images.shape[1:]), jnp.float32)
  params = module.init(jax.random.key(seed), dummy)["params"]
  state = (params, _optimizer(cfg, total).init(params))
  rng = np.random.default_rng(seed)
  bar = _progress_bar(total, progress)
  for epoch in range(epochs):
    perm = rng.permutation(len(labels))
    for i in range(min(steps_per_epoch, total - epoch * steps_per_epoch)):
      idx = perm[i * cfg.batch_size : (i + 1) * cfg.batch_size]
      state, loss = _train_step(module, cfg, total, state, images[idx], labels[idx])
      bar.update(1)
      if progress and i % 50 == 0:  # Reading the loss syncs, so only now and then.
        bar.set_postfix(epoch=epoch, loss=f"{float(loss):.4f}")
  bar.close()
  return state[0]


def _progress_bar(total: int, enabled: bool):
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top

  return tqdm(total=total, desc="feature net", disable=not enabled, leave=False)


@functools.partial(jax.jit, static_argnums=0)
def _predict(module: nn.Module, params, images: jax.Array) -> jax.Array:
  _, logits = module.apply({"params": params}, images.astype(jnp.float32) / 255.0)
  return jnp.argmax(logits, axis=-1)


def _accuracy(module: nn.Module, params, split: dict, batch_size: int) -> float:
  """Test accuracy, in fixed-size (zero padded) batches so there is one compile."""
  images, labels = split["image"], split["label"]
  n = len(labels)
  batch_size = min(batch_size, n)
  correct = 0
  for start in range(0, n, batch_size):
    batch = images[start : start + batch_size]
    real = len(batch)
    if real < batch_size:
      batch = np.concatenate([batch, np.zeros((batch_size - real, *batch.shape[1:]), batch.dtype)])
    pred = np.asarray(_predict(module, params, batch))[:real]
    correct += int(np.sum(pred == labels[start : start + real]))
  return correct / n


# ----------------------------------------------------------------------------
# Cache entries.


def _save(path: pathlib.Path, params, info: dict) -> None:
  """Writes params and info to a temp dir, then swaps it in for ``path`` atomically."""
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = pathlib.Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp"))
  try:
    (tmp / _PARAMS_FILE).write_bytes(flax.serialization.msgpack_serialize(_to_numpy(params)))
    (tmp / _INFO_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    tmp.chmod(0o755)  # mkdtemp makes it owner-only; others share the cache.
    if path.exists():
      # A corrupt entry: moved aside first so `path` is never half deleted.
      trash = pathlib.Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.old"))
      os.replace(path, trash / "entry")
      shutil.rmtree(trash, ignore_errors=True)
    os.replace(tmp, path)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise


def _load(
  path: pathlib.Path, arch: str, module: nn.Module, dataset: Dataset, source: str = "cache"
) -> FeatureNet:
  """Reads a cache (or shipped) entry, tagging ``info["source"]``.

  Raises OSError/ValueError if the entry is missing or corrupt.
  """
  info = json.loads((path / _INFO_FILE).read_text())
  if not isinstance(info, dict) or any(k not in info for k in _INFO_KEYS):
    raise ValueError(f"{_INFO_FILE} lacks some of {_INFO_KEYS}")
  if info["key"] != path.name:
    raise ValueError(f"{_INFO_FILE} is for {info['key']!r}, not {path.name!r}")
  try:
    state = flax.serialization.msgpack_restore((path / _PARAMS_FILE).read_bytes())
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f"cannot decode {_PARAMS_FILE}: {e!r}") from e
  dummy = jnp.zeros((1, *dataset.shape), jnp.float32)
  expected = jax.eval_shape(module.init, jax.random.key(0), dummy)["params"]
  try:
    params = flax.serialization.from_state_dict(expected, state)
    shapes_match = jax.tree.map(lambda e, p: e.shape == np.shape(p), expected, params)
  except (ValueError, TypeError, KeyError, AttributeError) as e:
    raise ValueError(f"{_PARAMS_FILE} does not fit the architecture: {e!r}") from e
  if not all(jax.tree.leaves(shapes_match)):
    raise ValueError(f"{_PARAMS_FILE} has parameters of the wrong shapes")
  params = jax.tree.map(jnp.asarray, params)
  return FeatureNet(name=arch, module=module, params=params, info={**info, "source": source})


def _to_numpy(tree):
  return jax.tree.map(np.asarray, tree)

"""Datasets: into host memory as numpy arrays, or streamed from disk.

Two families:

* Shipped datasets that need no download: ``"digits"`` (sklearn's 8x8 digits)
  and the 2D toy distributions ``"ring8"``, ``"grid25"``, ``"moons"``,
  ``"swiss_roll"``.
* Anything else is read through tensorflow-datasets (``mnist``,
  ``fashion_mnist``, ``cifar10``, ...). The decoded splits are cached as
  ``.npz`` next to the prepared dataset, so only the first load is slow.
  With ``streaming=True`` nothing is decoded up front: batches read their
  records from the prepared ArrayRecord files (:class:`TfdsTable`).
  Under ``tfds.testing.mock_data`` they are read from the mock's random
  examples instead: nothing is prepared and nothing is cached.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import fcntl
import importlib.util
import os
import pathlib
import socket
import tempfile
import threading
import urllib.parse
import warnings
from typing import Any

import numpy as np
from etils import epath

from genjax.data import records

# Fixed seeds: the data itself must not change with the experiment seed, or
# results from different seeds would be measured on different data.
_DIGITS_SPLIT_SEED = 0
_MIXTURE_SEED = 20240501
_MIXTURE_TRAIN = 50_000
_MIXTURE_TEST = 10_000
_DIGITS_TEST = 300
_READ_CHUNK = 4096
_PROBE_TIMEOUT_S = 3.0

SHIPPED_DATASETS = ("digits", "ring8", "grid25", "moons", "swiss_roll")


class DatasetNotFoundError(FileNotFoundError):
  """A tfds dataset is neither prepared nor preparable (no internet / files)."""


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
  """An in-memory dataset.

  Attributes:
      name: Dataset name as passed to ``load_dataset``.
      kind: ``"image"`` or ``"points"``.
      train: Train split; ``"image"`` uint8 [N, H, W, C] or ``"points"``
          float32 [N, 2], plus ``"label"`` int32 [N].
      test: Test split, same keys as ``train``.
      num_classes: Number of distinct labels (1 when the data has none).
      shape: Per-example shape, e.g. (28, 28, 1) or (2,).
      modes: Mode centres [M, 2] for Gaussian mixtures, else None.
      mode_std: Per-coordinate std of each mixture component, else None.
  """

  name: str
  kind: str
  train: dict[str, np.ndarray]
  test: dict[str, np.ndarray]
  num_classes: int
  shape: tuple
  modes: np.ndarray | None = None
  mode_std: float | None = None

  @property
  def num_train(self) -> int:
    return len(self.train["label"])


def load_dataset(
  name: str,
  *,
  data_dir: str | None = None,
  manual_dir: str | None = None,
  image_size: int = 0,
  streaming: bool = False,
  seed: int = 0,
) -> Dataset:
  """Loads a dataset: into memory, or (``folder:/path``) as records read from disk.

  Args:
      name: A name from ``SHIPPED_DATASETS`` or a tensorflow-datasets image
          dataset (needs an ``"image"`` feature; ``"label"`` is optional).
      data_dir: tfds data dir; defaults to ``$TFDS_DATA_DIR`` or tfds' default.
      manual_dir: Directory holding raw downloaded files (or a ``<name>``
          subdirectory with them); defaults to ``$GENJAX_MANUAL_DIR``.
      image_size: Resize every image's shorter side to this and crop the
          centre square (0 keeps the stored size).
      streaming: Read a tfds dataset's splits from its prepared ArrayRecord
          files batch by batch (``train`` and ``test`` are :class:`TfdsTable`)
          instead of decoding them whole into memory.
      seed: Unused: shipped data comes from fixed internal seeds so every
          experiment seed sees identical data. Accepted so configs can pass it.

  Returns:
      The loaded ``Dataset``.

  Raises:
      ValueError: ``name`` is neither shipped nor a known tfds builder.
      DatasetNotFoundError: The tfds dataset is not prepared and cannot be.
  """
  del seed
  if name.startswith(records.PREFIX):
    return _load_folder(name[len(records.PREFIX) :], image_size)
  if name in _MIXTURES:
    return _MIXTURES[name]()
  if name == "digits":
    dataset = _load_digits()
  else:
    dataset = _load_tfds(
      name, data_dir=data_dir, manual_dir=manual_dir, stream_size=image_size if streaming else None
    )
  # Streamed images come resized already, so this leaves them alone.
  return _resized(dataset, image_size) if image_size else dataset


def cache_root() -> epath.Path:
  """``$GENJAX_CACHE_DIR``, else ``$XDG_CACHE_HOME/genjax``, else ``~/.cache/genjax``."""
  if os.environ.get("GENJAX_CACHE_DIR"):
    return epath.Path(os.path.expanduser(os.environ["GENJAX_CACHE_DIR"]))
  if os.environ.get("XDG_CACHE_HOME"):
    return epath.Path(os.path.expanduser(os.environ["XDG_CACHE_HOME"])) / "genjax"
  return epath.Path(os.path.expanduser("~")) / ".cache" / "genjax"


def _load_folder(folder: str, image_size: int) -> Dataset:
  """A folder of images, prepared once into records (see :mod:`genjax.data.records`)."""
  with file_lock(os.fspath(cache_root() / "folders" / ".lock")):
    directory = records.prepare_folder(folder, image_size, cache_root())
  info, train, test = records.load_prepared(directory)
  return Dataset(
    name=records.PREFIX + folder,
    kind="image",
    train=train,
    test=test,
    num_classes=max(1, len(info["classes"])),
    shape=tuple(info["shape"]),
  )


def _resized(dataset: Dataset, size: int) -> Dataset:
  """``dataset`` with every image resized and centre-cropped to ``size`` x ``size``."""
  if dataset.kind != "image" or tuple(dataset.shape[:2]) == (size, size):
    return dataset

  def split(arrays):
    images = np.stack([records.resize_center_crop(x, size) for x in arrays["image"]])
    return dict(arrays, image=images)

  train, test = split(dataset.train), split(dataset.test)
  return dataclasses.replace(dataset, train=train, test=test, shape=train["image"].shape[1:])


# ----------------------------------------------------------------------------
# Shipped datasets.


def _load_digits() -> Dataset:
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top

  digits = load_digits()
  images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
  labels = digits.target.astype(np.int32)
  perm = np.random.default_rng(_DIGITS_SPLIT_SEED).permutation(len(labels))
  tr, te = perm[_DIGITS_TEST:], perm[:_DIGITS_TEST]
  return Dataset(
    name="digits",
    kind="image",
    train={"image": images[tr], "label": labels[tr]},
    test={"image": images[te], "label": labels[te]},
    num_classes=10,
    shape=(8, 8, 1),
  )


def _points(name, train, test, num_classes, modes=None, mode_std=None):
  def split(pts_labels):
    pts, labels = pts_labels
    return {"points": pts.astype(np.float32), "label": labels.astype(np.int32)}

  return Dataset(
    name=name,
    kind="points",
    train=split(train),
    test=split(test),
    num_classes=num_classes,
    shape=(2,),
    modes=None if modes is None else modes.astype(np.float32),
    mode_std=mode_std,
  )


def _mixture_split(modes, std, n, rng):
  labels = rng.integers(0, len(modes), size=n)
  return modes[labels] + std * rng.standard_normal((n, 2)), labels


def _gaussian_mixture(name: str, modes: np.ndarray, std: float) -> Dataset:
  rng = np.random.default_rng(_MIXTURE_SEED)
  train = _mixture_split(modes, std, _MIXTURE_TRAIN, rng)
  test = _mixture_split(modes, std, _MIXTURE_TEST, rng)
  return _points(name, train, test, len(modes), modes, std)


def _ring8() -> Dataset:
  angles = 2 * np.pi * np.arange(8) / 8
  modes = 2.0 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
  return _gaussian_mixture("ring8", modes, 0.02)


def _grid25() -> Dataset:
  xs = np.array([-4.0, -2.0, 0.0, 2.0, 4.0])
  modes = np.stack(np.meshgrid(xs, xs, indexing="ij"), -1).reshape(-1, 2)
  return _gaussian_mixture("grid25", modes, 0.05)


def _moons() -> Dataset:
  from sklearn.datasets import make_moons  # pylint: disable=g-import-not-at-top

  tr = make_moons(_MIXTURE_TRAIN, noise=0.05, random_state=_MIXTURE_SEED)
  te = make_moons(_MIXTURE_TEST, noise=0.05, random_state=_MIXTURE_SEED + 1)
  # Train statistics for both splits, so test is measured in the same units.
  mean, std = tr[0].mean(0), tr[0].std(0)
  norm = lambda xy: ((xy[0] - mean) / std, xy[1])
  return _points("moons", norm(tr), norm(te), 2)


def _swiss_roll() -> Dataset:
  from sklearn.datasets import make_swiss_roll  # pylint: disable=g-import-not-at-top

  def split(n, seed):
    xyz, _ = make_swiss_roll(n, noise=0.25, random_state=seed)
    return xyz[:, [0, 2]] / 5.0, np.zeros(n, np.int32)

  tr = split(_MIXTURE_TRAIN, _MIXTURE_SEED)
  te = split(_MIXTURE_TEST, _MIXTURE_SEED + 1)
  return _points("swiss_roll", tr, te, 1)


_MIXTURES = {
  "ring8": _ring8,
  "grid25": _grid25,
  "moons": _moons,
  "swiss_roll": _swiss_roll,
}
# Shipped datasets of 2-D points rather than images.
POINT_DATASETS = tuple(_MIXTURES)


# ----------------------------------------------------------------------------
# tensorflow-datasets.


def is_tfds_name(name: str) -> bool:
  """Whether ``name`` (optionally ``name/config:version``) is a tfds builder."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  # Community datasets excluded: listing them imports TensorFlow (~7 s).
  known = tfds.list_builders(with_community_datasets=False)
  return name.split(":")[0].split("/")[0] in known


def closest_name(name: str) -> str | None:
  """The shipped or tfds dataset name nearest a mistyped ``name``, for a "did you mean"."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  names = list(SHIPPED_DATASETS) + tfds.list_builders(with_community_datasets=False)
  close = difflib.get_close_matches(name.split(":")[0].split("/")[0], names, n=1)
  return close[0] if close else None


def _load_tfds(name: str, *, data_dir, manual_dir, stream_size: int | None = None) -> Dataset:
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  if not is_tfds_name(name):
    raise ValueError(
      f"Unknown dataset {name!r}: not shipped with genjax "
      f"({', '.join(SHIPPED_DATASETS)}) and not a tensorflow-datasets "
      "builder name."
    )
  data_dir = data_dir or os.environ.get("TFDS_DATA_DIR") or None
  manual_dir = _resolve_manual_dir(name, manual_dir)
  builder = tfds.builder(name, data_dir=data_dir)
  mocked = _tfds_mocked()
  if not mocked and not builder.is_prepared():
    if not _has_tensorflow():
      raise DatasetNotFoundError(
        f"Dataset {name!r} is not prepared in data_dir {builder.data_dir_root}, and "
        "tensorflow-datasets needs TensorFlow to prepare it (not to read it): install it once "
        "with pip install 'genjax-gm[tensorflow]', or set config.data.data_dir to a directory "
        "where it is prepared."
      )
    # Several runs or test workers may start on an unprepared dataset at once.
    with file_lock(os.path.join(builder.data_dir_root, f".genjax-{builder.name}.lock")):
      builder = tfds.builder(name, data_dir=data_dir)
      if not builder.is_prepared():
        _prepare(builder, name, manual_dir)
  features = builder.info.features
  if "image" not in features:
    raise ValueError(f"tfds dataset {name!r} has no 'image' feature.")
  has_label = "label" in features
  splits = builder.info.splits
  if mocked and not splits:
    # Without metadata files the mock knows no split names, and serves any.
    splits = ("train", "test")
  test_split = next((s for s in ("test", "validation") if s in splits), None)
  if "train" not in splits or test_split is None:
    raise ValueError(
      f"tfds dataset {name!r} needs a 'train' and a 'test' or 'validation'"
      f" split; it has {sorted(splits)}."
    )
  if mocked:
    read = _read_split_mocked
  elif stream_size is not None:
    read = lambda builder, split, _: _stream_split(builder, split, stream_size)
  else:
    read = _load_split_cached
  train = read(builder, "train", has_label)
  test = read(builder, test_split, has_label)
  return Dataset(
    name=name,
    kind="image",
    train=train,
    test=test,
    num_classes=features["label"].num_classes if has_label else 1,
    shape=tuple(train["image"].shape[1:]),
  )


def _has_tensorflow() -> bool:
  """Whether TensorFlow (the ``tensorflow`` extra, for preparing tfds datasets) is installed."""
  try:
    return importlib.util.find_spec("tensorflow") is not None
  except (ImportError, ValueError):
    return False


def _tfds_mocked() -> bool:
  """Whether ``tfds.testing.mock_data`` (or a similar patch) is active.

  The mock replaces ``DatasetBuilder.as_data_source`` (and ``download_and_prepare``,
  ``as_dataset``, the data dir) with functions defined elsewhere; it sets no flag.
  """
  from tensorflow_datasets.core import dataset_builder  # pylint: disable=g-import-not-at-top

  as_data_source = dataset_builder.DatasetBuilder.as_data_source
  return getattr(as_data_source, "__module__", None) != dataset_builder.__name__


@contextlib.contextmanager
def file_lock(path: str):
  """An exclusive lock between processes (POSIX ``flock``) on ``path``."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


# Where an offline copy of the raw files sits when no flag or variable names one:
# ``shared/data`` beside the checkout genjax runs from.
_BESIDE_CHECKOUT = pathlib.Path(__file__).resolve().parents[3].parent / "shared" / "data"


def _resolve_manual_dir(name: str, manual_dir: str | None) -> str | None:
  manual_dir = manual_dir or os.environ.get("GENJAX_MANUAL_DIR") or None
  if manual_dir is None and _BESIDE_CHECKOUT.is_dir():
    manual_dir = str(_BESIDE_CHECKOUT)
  if manual_dir is None:
    return None
  manual_dir = os.path.expanduser(manual_dir)
  sub = os.path.join(manual_dir, name.split(":")[0])
  return sub if os.path.isdir(sub) else manual_dir


def _url_infos(builder) -> dict[str, Any]:
  """The builder's download URLs -> UrlInfo (filename, size, checksum)."""
  try:
    return dict(builder.url_infos or {})
  except Exception:  # pylint: disable=broad-except
    return {}  # Builders without a checksums file.


def _expected_raw_files(builder) -> list[str]:
  infos = _url_infos(builder).values()
  return sorted(info.filename for info in infos if info.filename)


def _url_hosts(builder) -> list[str]:
  hosts = {urllib.parse.urlparse(u).hostname for u in _url_infos(builder)}
  return sorted(h for h in hosts if h) or ["storage.googleapis.com"]


def _host_reachable(host: str, timeout: float = _PROBE_TIMEOUT_S) -> bool:
  """True if a TCP connection to ``host:443`` opens within ``timeout``."""
  result = []

  def probe():
    try:
      socket.create_connection((host, 443), timeout=timeout).close()
      result.append(True)
    except OSError:
      pass

  # A thread because DNS lookups ignore socket timeouts and can hang offline.
  thread = threading.Thread(target=probe, daemon=True)
  thread.start()
  thread.join(timeout)
  return bool(result)


def _prepare(builder, name: str, manual_dir: str | None) -> None:
  """Prepares ``builder`` offline from ``manual_dir`` or by downloading."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  expected = _expected_raw_files(builder)
  present = manual_dir is not None and all(
    os.path.exists(os.path.join(manual_dir, f)) for f in expected
  )
  offline = bool(expected) and present
  # Check before downloading: tfds retries failed downloads for a long time.
  if not offline and not any(_host_reachable(h) for h in _url_hosts(builder)):
    raise _not_found(builder, name, manual_dir, expected, "no internet")
  config = tfds.download.DownloadConfig(
    manual_dir=manual_dir, force_checksums_validation=bool(expected)
  )
  # tfds caches extracted archives by file name under <data_dir>/downloads, and
  # MNIST and Fashion-MNIST share file names: a shared cache silently turns the
  # second dataset into the first. Each dataset gets its own download dir.
  download_dir = os.path.join(builder.data_dir_root, "downloads", builder.name)
  try:
    builder.download_and_prepare(
      download_dir=download_dir, file_format="array_record", download_config=config
    )
  except Exception as e:  # pylint: disable=broad-except
    raise _not_found(builder, name, manual_dir, expected, repr(e)) from e


def _not_found(builder, name, manual_dir, expected, reason) -> DatasetNotFoundError:
  looked = f"looked in manual dir {manual_dir}" if manual_dir else "no manual dir was set"
  files = ", ".join(expected) if expected else "unknown (see the tfds catalog)"
  return DatasetNotFoundError(
    f"Dataset {name!r} is not prepared in data_dir "
    f"{builder.data_dir_root} and could not be "
    f"prepared ({reason}); {looked}. Raw files expected: {files}. "
    "To fix: run once with internet access, or put the raw files in a "
    "directory (or its <name>/ subdirectory) and set GENJAX_MANUAL_DIR or "
    "config.data.manual_dir to it."
  )


def _load_split_cached(builder, split: str, has_label: bool) -> dict[str, Any]:
  """Reads a split, caching the decoded arrays as .npz in the dataset dir."""
  path = os.path.join(builder.data_dir, f"genjax_{split}.npz")
  if os.path.exists(path):
    with np.load(path) as cached:
      return {k: cached[k] for k in cached.files}
  arrays = _read_split(builder, split, has_label)
  try:
    _write_atomic(path, arrays)
  except OSError as e:  # E.g. a read-only shared data dir: just skip caching.
    warnings.warn(f"Could not cache {path}: {e}", stacklevel=2)
  return arrays


def _write_atomic(path: str, arrays: dict[str, np.ndarray]) -> None:
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".npz.tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      np.savez(f, **arrays)
    os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; others share the cache.
    # Atomic, so concurrent or interrupted loads never see a partial cache.
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def _is_array_record(builder) -> bool:
  return str(getattr(builder.info.file_format, "value", "")) == "array_record"


def _read_split(builder, split: str, has_label: bool) -> dict[str, np.ndarray]:
  if not _is_array_record(builder):
    return _read_split_tf(builder, split, has_label)
  source = builder.as_data_source(split=split)
  n = len(source)
  chunks = []
  for start in range(0, n, _READ_CHUNK):
    records = source.__getitems__(list(range(start, min(start + _READ_CHUNK, n))))
    chunks.append(_stack_records(records, has_label))
  return {k: np.concatenate([c[k] for c in chunks]) for k in ("image", "label")}


def _read_split_mocked(builder, split: str, has_label: bool) -> dict[str, np.ndarray]:
  """Reads a split of ``tfds.testing.mock_data``'s random examples.

  Never cached: the npz cache would hand the random arrays to later real runs.
  """
  source = builder.as_data_source(split=split)
  # One by one: the mock's __getitems__ is not bound to its source (tfds 4.9),
  # and the mock's as_dataset aborts in TensorFlow for batch_size=-1.
  return _stack_records([source[i] for i in range(len(source))], has_label)


def _stream_split(builder, split: str, size: int) -> TfdsTable:
  if not _is_array_record(builder):
    raise ValueError(
      f"config.data.streaming=True: {builder.name} in {builder.data_dir} was prepared as "
      f"{builder.info.file_format}, which has no random access; prepare it again in a fresh "
      "config.data.data_dir (genjax prepares ArrayRecord), or set config.data.streaming=False"
    )
  return TfdsTable(builder.data_dir, split, size)


class TfdsTable(records.RecordTable):
  """One split of a tfds dataset prepared as ArrayRecord, decoded as its records are read.

  Decoding each image (PNG, then resizing to ``size``) is what streaming costs
  per batch; with ``data.num_workers`` it runs in grain's worker processes, each
  of which unpickles the table and reopens the files.
  """

  def __init__(self, directory: str | os.PathLike, split: str, size: int = 0):
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

    self.directory, self.split = os.fspath(directory), split
    builder = tfds.builder_from_directory(self.directory)
    features = builder.info.features
    self._has_label = "label" in features
    stored = tuple(features["image"].shape)
    # Like the in-memory path, which leaves images of the asked size untouched.
    self.size = size if size and stored[:2] != (size, size) else 0
    self.shape = (size, size, stored[-1]) if self.size else stored
    if None in self.shape:
      raise ValueError(
        f"{builder.name}: images of varying size {stored}; set config.data.image_size"
      )
    self._source = builder.as_data_source(split=split)

  def _decode(self, examples: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    arrays = _stack_records(examples, self._has_label)
    images = arrays["image"]
    if self.size:
      images = np.stack([records.resize_center_crop(x, self.size) for x in images])
    return images, arrays["label"]

  def __getstate__(self):
    return {"directory": self.directory, "split": self.split, "size": self.size}


def _stack_records(records, has_label: bool) -> dict[str, np.ndarray]:
  images = np.stack([np.asarray(r["image"]) for r in records]).astype(np.uint8)
  labels = np.array([r["label"] for r in records]) if has_label else np.zeros(len(records))
  return {"image": images, "label": labels.astype(np.int32)}


def _read_split_tf(builder, split: str, has_label: bool) -> dict[str, np.ndarray]:
  """Fallback for datasets prepared elsewhere as tfrecord (no random access)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  if not _has_tensorflow():
    raise DatasetNotFoundError(
      f"{builder.name} in {builder.data_dir} was prepared as {builder.info.file_format}, "
      "which only TensorFlow reads: install it with pip install 'genjax-gm[tensorflow]', or "
      "prepare the dataset again in a fresh config.data.data_dir (genjax prepares ArrayRecord)."
    )

  data = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
  images = np.asarray(data["image"], np.uint8)
  labels = data["label"] if has_label else np.zeros(len(images))
  return {"image": images, "label": np.asarray(labels, np.int32)}

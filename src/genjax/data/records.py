"""Datasets streamed from disk: a folder of images, prepared once into ArrayRecord files.

``data.name="folder:/path/to/images"`` reads every image under the folder
(PNG, JPEG, BMP, WebP; sorted paths), resizes its shorter side to
``data.image_size`` and crops the centre, and writes the pixels to ArrayRecord
files in the cache (``cache_root()/folders/<key>/``), once. Class labels come
from first-level subfolders when every image sits in one (``cats/1.png``,
``dogs/2.png``); otherwise the data has no labels. Every 20th image (in sorted
order) is held out as the test split.

Training then reads only the records of each batch: memory does not grow with
the number of images. :class:`RecordTable` gives random access by index, so
the pipeline's order, process sharding and resume are those of in-memory data.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping

import numpy as np
from array_record.python import array_record_data_source, array_record_module
from etils import epath

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
TEST_EVERY = 20
FORMAT_VERSION = 1
PREFIX = "folder:"


class RecordTable(Mapping):
  """One split as a mapping ``{"image": column, "label": column}`` read from ArrayRecord.

  A column supports ``len``, integer-array and slice indexing (``col[idx]``),
  like a NumPy array, but reads only the records asked for. :meth:`take`
  reads a batch of records once for all columns. Subclasses read other record
  layouts by overriding :meth:`_decode` (and what they pickle).
  """

  def __init__(self, path: str | os.PathLike, shape: tuple[int, ...]):
    self.path, self.shape = os.fspath(path), tuple(shape)
    self._source = array_record_data_source.ArrayRecordDataSource(self.path)

  def __len__(self) -> int:  # Number of columns (a Mapping).
    return 2

  def __iter__(self) -> Iterator[str]:
    return iter(("image", "label"))

  def __getitem__(self, key: str) -> _Column:
    if key not in ("image", "label"):
      raise KeyError(key)
    return _Column(self, key)

  @property
  def num_records(self) -> int:
    return len(self._source)

  def take(self, indices) -> dict[str, np.ndarray]:
    """``{"image": uint8 [B, *shape], "label": int32 [B]}`` for integer ``indices [B]``."""
    indices = np.asarray(indices, np.int64)
    flat = indices.reshape(-1)
    if flat.size:
      images, labels = self._decode(self._source.__getitems__(flat.tolist()))
    else:
      images, labels = np.zeros((0,) + self.shape, np.uint8), np.zeros(0, np.int32)
    return {
      "image": images.reshape(indices.shape + self.shape),
      "label": labels.reshape(indices.shape),
    }

  def _decode(self, records: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """``(uint8 [n, *shape], int32 [n])`` from the records :func:`write_records` wrote."""
    pixels = int(np.prod(self.shape))
    raw = np.frombuffer(b"".join(records), np.uint8).reshape(len(records), 4 + pixels)
    labels = raw[:, :4].copy().view("<i4")[:, 0].astype(np.int32)
    return raw[:, 4:].reshape((len(records),) + self.shape), labels

  def __getstate__(self):  # Worker processes reopen the file.
    return {"path": self.path, "shape": self.shape}

  def __setstate__(self, state):
    self.__init__(**state)


class _Column:
  """One field of a :class:`RecordTable`, indexed like an array."""

  def __init__(self, table: RecordTable, key: str):
    self.table, self.key = table, key

  def __len__(self) -> int:
    return self.table.num_records

  @property
  def shape(self) -> tuple[int, ...]:
    return (len(self),) + (self.table.shape if self.key == "image" else ())

  def __getitem__(self, index) -> np.ndarray:
    if isinstance(index, slice):
      index = np.arange(*index.indices(len(self)))
    return self.table.take(index)[self.key]

  def __array__(self, dtype=None, copy=None):  # The whole column: for small data only.
    del copy
    out = self[:]
    return out if dtype is None else out.astype(dtype)


def folder_images(folder: str | os.PathLike) -> tuple[list[epath.Path], list[int], list[str]]:
  """Sorted image paths under ``folder``, their labels and the class names (none: ``[]``)."""
  root = epath.Path(folder)
  if not root.is_dir():
    raise FileNotFoundError(f"config.data.name={PREFIX}{folder!s}: no such folder")
  paths = sorted(
    directory / name
    for directory, _, files in root.walk()
    for name in files
    if name.lower().endswith(IMAGE_SUFFIXES)
  )
  if not paths:
    raise FileNotFoundError(
      f"config.data.name={PREFIX}{folder!s}: no images ({', '.join(IMAGE_SUFFIXES)}) in it"
    )
  parts = [p.relative_to(root).parts for p in paths]
  if all(len(part) >= 2 for part in parts):
    names = sorted({part[0] for part in parts})
    return paths, [names.index(part[0]) for part in parts], names
  return paths, [0] * len(paths), []


def resize_center_crop(image: np.ndarray, size: int) -> np.ndarray:
  """``uint8 [H, W, C]`` -> ``[size, size, C]``: shorter side to ``size``, centre crop."""
  from PIL import Image  # pylint: disable=g-import-not-at-top

  channels = image.shape[-1]
  pil = Image.fromarray(image[..., 0] if channels == 1 else image)
  h, w = image.shape[:2]
  scale = size / min(h, w)
  new = (max(size, round(w * scale)), max(size, round(h * scale)))
  pil = pil.resize(new, Image.Resampling.BICUBIC)
  left, top = (new[0] - size) // 2, (new[1] - size) // 2
  out = np.asarray(pil.crop((left, top, left + size, top + size)), np.uint8)
  return out.reshape(size, size, channels)


def _read_image(path: epath.Path, channels: int, size: int) -> np.ndarray:
  from PIL import Image  # pylint: disable=g-import-not-at-top

  with path.open("rb") as f:
    pil = Image.open(f).convert("L" if channels == 1 else "RGB")
    image = np.asarray(pil, np.uint8).reshape(pil.height, pil.width, channels)
  return image if size == 0 else resize_center_crop(image, size)


def write_records(path: str | os.PathLike, images: Iterator[np.ndarray], labels) -> int:
  """Writes ``(label, image)`` records (int32 little-endian, then uint8 pixels); returns the count."""
  writer = array_record_module.ArrayRecordWriter(os.fspath(path), "group_size:1")
  count = 0
  for image, label in zip(images, labels):
    writer.write(np.int32(label).astype("<i4").tobytes() + np.ascontiguousarray(image).tobytes())
    count += 1
  writer.close()
  return count


def prepare_folder(folder: str, size: int, cache: epath.Path) -> epath.Path:
  """The prepared records of ``folder`` at ``size`` (0 = as stored), writing them if needed.

  The key covers the folder's path, every file's name, size and modification
  time, and ``size``, so an edited folder is prepared again.
  """
  paths, labels, names = folder_images(folder)
  digest = hashlib.sha256(f"{FORMAT_VERSION}|{os.path.abspath(folder)}|{size}".encode())
  for p in paths:
    stat = p.stat()
    digest.update(f"|{p}|{stat.length}|{stat.mtime}".encode())
  out = cache / "folders" / f"{epath.Path(folder).name}-{digest.hexdigest()[:12]}"
  if (out / "info.json").exists():
    return out
  channels = 1 if _is_gray(paths[0]) else 3
  shape = _read_image(paths[0], channels, size).shape
  tmp = out.parent / (out.name + f".tmp{os.getpid()}")
  tmp.mkdir(parents=True, exist_ok=True)
  counts = {}
  for split, keep in (
    ("train", lambda i: i % TEST_EVERY != 0),
    ("test", lambda i: i % TEST_EVERY == 0),
  ):
    chosen = [i for i in range(len(paths)) if keep(i)]
    images = (_checked(paths[i], _read_image(paths[i], channels, size), shape) for i in chosen)
    counts[split] = write_records(
      tmp / f"{split}.array_record", images, [labels[i] for i in chosen]
    )
  info = {"folder": os.path.abspath(folder), "shape": list(shape), "classes": names, **counts}
  (tmp / "info.json").write_text(json.dumps(info, indent=1))
  tmp.rename(out)  # Complete or absent: an interrupted preparation is redone.
  return out


def _is_gray(path: epath.Path) -> bool:
  from PIL import Image  # pylint: disable=g-import-not-at-top

  with path.open("rb") as f:
    return Image.open(f).mode in ("1", "L", "LA", "I", "I;16")


def _checked(path, image: np.ndarray, shape) -> np.ndarray:
  if image.shape != tuple(shape):
    raise ValueError(
      f"{path}: {image.shape[1]}x{image.shape[0]} px while the first image is "
      f"{shape[1]}x{shape[0]}; set config.data.image_size to resize them all"
    )
  return image


def load_prepared(directory: epath.Path) -> tuple[dict, RecordTable, RecordTable]:
  """``(info, train, test)`` of records written by :func:`prepare_folder`."""
  info = json.loads((directory / "info.json").read_text())
  shape = tuple(info["shape"])
  return (
    info,
    RecordTable(directory / "train.array_record", shape),
    RecordTable(directory / "test.array_record", shape),
  )

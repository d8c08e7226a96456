"""Folders of images streamed from ArrayRecord files: contents, order, sharding, training."""

import json

import numpy as np
import pytest
from PIL import Image

from genjax import config as config_lib
from genjax.data import pipeline, sources
from genjax.run import loop


def _write_folder(root, sizes, classes=("cats", "dogs"), seed=0):
  """Random RGB PNGs, ``classes`` subfolders (none: flat); returns {relative path: pixels}."""
  rng = np.random.default_rng(seed)
  written = {}
  for i, (w, h) in enumerate(sizes):
    sub = f"{classes[i % len(classes)]}/" if classes else ""
    pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    path = root / f"{sub}img{i:03d}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    written[f"{sub}img{i:03d}.png"] = pixels
  return written


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
  monkeypatch.setenv("GENJAX_CACHE_DIR", str(tmp_path / "cache"))


def test_records_hold_the_pixels_labels_and_split_of_the_folder(tmp_path):
  written = _write_folder(tmp_path / "imgs", [(12, 12)] * 45)
  data = sources.load_dataset(f"folder:{tmp_path / 'imgs'}")
  assert data.shape == (12, 12, 3) and data.num_classes == 2
  names = sorted(written)  # Sorted paths; every 20th is a test image.
  test_names = [n for i, n in enumerate(names) if i % 20 == 0]
  train_names = [n for i, n in enumerate(names) if i % 20 != 0]
  assert len(data.test["label"]) == len(test_names) == 3
  assert len(data.train["label"]) == len(train_names) == 42
  for split, chosen in ((data.train, train_names), (data.test, test_names)):
    got = split.take(np.arange(len(chosen)))
    np.testing.assert_array_equal(got["image"], np.stack([written[n] for n in chosen]))
    np.testing.assert_array_equal(got["label"], [0 if n.startswith("cats") else 1 for n in chosen])
  # Columns index like arrays: slices, integer arrays, any batch shape.
  np.testing.assert_array_equal(data.train["image"][2:5], data.train.take([2, 3, 4])["image"])
  assert data.train.take(np.array([[1, 2], [3, 4]]))["image"].shape == (2, 2, 12, 12, 3)


def test_a_flat_folder_has_no_labels_and_is_prepared_once(tmp_path):
  _write_folder(tmp_path / "flat", [(8, 8)] * 21, classes=())
  data = sources.load_dataset(f"folder:{tmp_path / 'flat'}")
  assert data.num_classes == 1 and not np.any(data.train["label"][:])
  prepared = list((tmp_path / "cache" / "folders").glob("flat-*"))
  assert len(prepared) == 1
  stamp = (prepared[0] / "train.array_record").stat().st_mtime_ns
  sources.load_dataset(f"folder:{tmp_path / 'flat'}")  # Cached: not written again.
  assert (prepared[0] / "train.array_record").stat().st_mtime_ns == stamp
  assert json.loads((prepared[0] / "info.json").read_text())["train"] == 19  # 0 and 20: test


def test_image_size_resizes_the_shorter_side_and_crops_the_centre(tmp_path):
  # 40 x 20: red left quarter, green middle half, blue right quarter. Scaled to
  # 20 x 10, the centre 10 x 10 is the green half.
  pixels = np.zeros((20, 40, 3), np.uint8)
  pixels[:, :10, 0] = pixels[:, 10:30, 1] = pixels[:, 30:, 2] = 255
  (tmp_path / "wide").mkdir()
  Image.fromarray(pixels).save(tmp_path / "wide" / "a.png")
  data = sources.load_dataset(f"folder:{tmp_path / 'wide'}", image_size=10)
  image = data.test["image"][:1][0]
  assert image.shape == (10, 10, 3)
  inner = image[:, 2:8].astype(int)  # Away from the bicubic kernel's reach of the edges.
  assert np.all(inner[..., 1] >= 250) and np.all(inner[..., [0, 2]] <= 5)


def test_images_of_several_sizes_need_image_size(tmp_path):
  _write_folder(tmp_path / "mixed", [(8, 8), (9, 8)], classes=())
  with pytest.raises(ValueError, match="set config.data.image_size"):
    sources.load_dataset(f"folder:{tmp_path / 'mixed'}")
  assert sources.load_dataset(f"folder:{tmp_path / 'mixed'}", image_size=6).shape == (6, 6, 3)
  with pytest.raises(FileNotFoundError, match=r"config.data.name=folder:.*no such folder"):
    sources.load_dataset(f"folder:{tmp_path / 'absent'}")


@pytest.mark.parametrize("process_count", [1, 2])
def test_streamed_batches_equal_in_memory_batches(tmp_path, process_count):
  _write_folder(tmp_path / "imgs", [(6, 6)] * 64)
  table = sources.load_dataset(f"folder:{tmp_path / 'imgs'}").train
  in_memory = table.take(np.arange(table.num_records))
  for p in range(process_count):
    make = lambda arrays, p=p: pipeline.make_train_iterator(  # noqa: E731
      arrays,
      global_batch_size=8,
      seed=3,
      process_index=p,
      process_count=process_count,
      minibatches=2,
    )
    streamed, reference = make(table), make(in_memory)
    for _ in range(9):  # Past an epoch boundary.
      a, b = next(streamed), next(reference)
      assert a.keys() == b.keys()
      for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    resumed = make(table)
    resumed.set_state(streamed.get_state())
    np.testing.assert_array_equal(next(resumed)["image"], next(reference)["image"])


def test_a_folder_trains_and_evaluates_end_to_end(tmp_path, shrink):
  _write_folder(tmp_path / "imgs", [(10, 14)] * 60)
  c = shrink(config_lib.defaults(), num_steps=3)
  c.data.update(name=f"folder:{tmp_path / 'imgs'}", preprocess="scale_01", image_size=8)
  c.model.update(hidden_sizes=(16,), latent_dim=2, conditional=True)
  c.eval.num_images = 3  # The whole test split: every 20th of 60 images.
  c.family = "vae"
  summary = loop.train_and_evaluate(c, tmp_path / "run")
  assert np.isfinite(summary["eval/nll"]) and summary["eval/num_examples"] == 3
  assert (tmp_path / "run" / "images" / "reconstructions.png").is_file()

"""Tests for genjax.data.sources."""

import os
import pathlib
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import NO_TENSORFLOW

from genjax.data import sources
from genjax.data.sources import DatasetNotFoundError, load_dataset

# One worker: the module fixtures are expensive to build twice.
pytestmark = pytest.mark.xdist_group("sources")

# The raw MNIST / Fashion-MNIST files sit in ../shared/data beside the checkout.
RAW_ROOT = str(pathlib.Path(__file__).resolve().parents[3] / "shared" / "data")
MNIST_RAW = os.path.join(RAW_ROOT, "mnist")
MNIST_FILES = (
  "train-images-idx3-ubyte.gz",
  "train-labels-idx1-ubyte.gz",
  "t10k-images-idx3-ubyte.gz",
  "t10k-labels-idx1-ubyte.gz",
)
# Skipped on a machine without the raw files, but never in CI, where they must be.
needs_raw_mnist = pytest.mark.skipif(
  not os.environ.get("CI")
  and not all(os.path.exists(os.path.join(MNIST_RAW, f)) for f in MNIST_FILES),
  reason=f"raw MNIST files not in {MNIST_RAW}",
)


def test_digits_shapes_dtypes_range():
  ds = load_dataset("digits")
  assert ds.kind == "image" and ds.num_classes == 10 and ds.shape == (8, 8, 1)
  assert ds.train["image"].shape == (1497, 8, 8, 1)
  assert ds.test["image"].shape == (300, 8, 8, 1)
  assert ds.num_train == 1497
  for split in (ds.train, ds.test):
    assert split["image"].dtype == np.uint8
    assert split["label"].dtype == np.int32
    assert split["image"].max() == 255 and split["image"].min() == 0
    assert set(np.unique(split["label"])) == set(range(10))
  # round(16 * 255 / 16) == 255 and values are multiples of 255/16 rounded.
  allowed = {int(round(v * 255 / 16)) for v in range(17)}
  assert set(np.unique(ds.train["image"])) <= allowed


def test_digits_split_deterministic_disjoint_and_seed_independent():
  a, b = load_dataset("digits", seed=0), load_dataset("digits", seed=123)
  np.testing.assert_array_equal(a.train["image"], b.train["image"])
  np.testing.assert_array_equal(a.test["label"], b.test["label"])
  # Together the splits hold each sklearn image exactly once.
  from sklearn.datasets import load_digits

  raw = np.round(load_digits().images * 255 / 16).astype(np.uint8)
  both = np.concatenate([a.train["image"], a.test["image"]])[..., 0]
  key = lambda arr: sorted(x.tobytes() for x in arr)
  assert key(both) == key(raw)


@pytest.mark.parametrize("name, num_modes, std", [("ring8", 8, 0.02), ("grid25", 25, 0.05)])
def test_mixtures_points_near_modes(name, num_modes, std):
  ds = load_dataset(name)
  assert ds.kind == "points" and ds.shape == (2,)
  assert ds.modes.shape == (num_modes, 2) and ds.mode_std == std
  assert ds.num_classes == num_modes
  assert len(np.unique(ds.modes, axis=0)) == num_modes
  assert ds.train["points"].shape == (50_000, 2)
  assert ds.test["points"].shape == (10_000, 2)
  for split in (ds.train, ds.test):
    pts = split["points"]
    assert pts.dtype == np.float32 and np.isfinite(pts).all()
    dist = np.linalg.norm(pts[:, None] - ds.modes[None], axis=-1)
    assert np.mean(dist.min(1) < 5 * std) > 0.99
    # The label is the mode that generated the point.
    assert np.mean(dist.argmin(1) == split["label"]) > 0.99
    assert set(np.unique(split["label"])) == set(range(num_modes))


def test_ring8_on_radius_2_and_grid25_layout():
  ring = load_dataset("ring8").modes
  np.testing.assert_allclose(np.linalg.norm(ring, axis=1), 2.0, atol=1e-5)
  grid = load_dataset("grid25").modes
  assert set(np.unique(grid)) == {-4.0, -2.0, 0.0, 2.0, 4.0}


def test_mixtures_deterministic():
  a, b = load_dataset("grid25", seed=0), load_dataset("grid25", seed=7)
  np.testing.assert_array_equal(a.train["points"], b.train["points"])
  assert not np.array_equal(a.train["points"][:100], a.test["points"][:100])


def test_moons_and_swiss_roll():
  moons = load_dataset("moons")
  pts = moons.train["points"]
  np.testing.assert_allclose(pts.mean(0), 0.0, atol=1e-3)
  np.testing.assert_allclose(pts.std(0), 1.0, atol=1e-3)
  assert set(np.unique(moons.train["label"])) == {0, 1}
  roll = load_dataset("swiss_roll")
  pts = roll.train["points"]
  assert pts.shape == (50_000, 2) and np.isfinite(pts).all()
  assert (roll.train["label"] == 0).all() and roll.num_classes == 1
  assert 0.5 < np.abs(pts).max() < 5.0
  assert set(sources.SHIPPED_DATASETS) == {"digits", "ring8", "grid25", "moons", "swiss_roll"}


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
  """Prepares MNIST once per session from the raw files (no internet)."""
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  start = time.perf_counter()
  # The parent dir: the <name>/ subdirectory must be found automatically.
  ds = load_dataset("mnist", data_dir=data_dir, manual_dir=RAW_ROOT)
  return data_dir, ds, time.perf_counter() - start


@needs_raw_mnist
def test_mnist_from_manual_dir(mnist_dir):
  _, ds, _ = mnist_dir
  assert ds.kind == "image" and ds.num_classes == 10 and ds.shape == (28, 28, 1)
  assert ds.train["image"].shape == (60_000, 28, 28, 1)
  assert ds.test["image"].shape == (10_000, 28, 28, 1)
  assert ds.train["image"].dtype == np.uint8
  assert ds.train["label"].dtype == np.int32
  assert set(np.unique(ds.train["label"])) == set(range(10))
  # Digits are mostly background with some full-intensity strokes.
  assert ds.train["image"].max() == 255 and 20 < ds.train["image"].mean() < 50


@needs_raw_mnist
def test_fashion_mnist_prepared_beside_mnist_is_not_mnist(mnist_dir):
  # MNIST and Fashion-MNIST raw files share names; a shared tfds extraction
  # cache once gave Fashion-MNIST the MNIST pixels. Published pixel means:
  # MNIST 0.1307, Fashion-MNIST 0.2860 (x 255 = 33.3 and 72.9).
  data_dir, mnist, _ = mnist_dir
  fashion = load_dataset("fashion_mnist", data_dir=data_dir, manual_dir=RAW_ROOT)
  assert fashion.train["image"].shape == (60_000, 28, 28, 1)
  assert mnist.train["image"].mean() == pytest.approx(33.3, abs=0.5)
  assert fashion.train["image"].mean() == pytest.approx(72.9, abs=0.5)


@needs_raw_mnist
def test_mnist_second_load_uses_cache(mnist_dir, monkeypatch):
  data_dir, first, first_s = mnist_dir
  # Env var path for the data dir; a missing manual dir is fine when cached.
  monkeypatch.setenv("TFDS_DATA_DIR", data_dir)
  monkeypatch.delenv("GENJAX_MANUAL_DIR", raising=False)
  start = time.perf_counter()
  again = load_dataset("mnist")
  elapsed = time.perf_counter() - start
  assert elapsed < 2.0 and elapsed < first_s / 5
  mnist_root = os.path.join(data_dir, "mnist")
  caches = [f for _, _, fs in os.walk(mnist_root) for f in fs if f.endswith(".npz")]
  assert sorted(caches) == ["genjax_test.npz", "genjax_train.npz"]
  np.testing.assert_array_equal(again.train["image"], first.train["image"])
  np.testing.assert_array_equal(again.test["label"], first.test["label"])


@needs_raw_mnist
def test_prepared_mnist_is_read_without_tensorflow(mnist_dir):
  # As on an install without the tensorflow extra: decoding the ArrayRecord files,
  # in memory (no npz cache) and streamed, never imports TensorFlow.
  data_dir, first, _ = mnist_dir
  code = (
    NO_TENSORFLOW
    + f"""
import numpy as np
import tensorflow_datasets as tfds
from genjax.data import sources
builder = tfds.builder("mnist", data_dir={data_dir!r})
test = sources._read_split(builder, "test", True)
streamed = sources.load_dataset("mnist", data_dir={data_dir!r}, streaming=True).train
images, labels = streamed._decode(streamed._source.__getitems__([0, 59_999]))
np.savez(sys.argv[1], test=test["image"], test_labels=test["label"], ends=images, labels=labels)
"""
  )
  out = os.path.join(data_dir, "read_without_tensorflow.npz")
  result = subprocess.run(
    [sys.executable, "-c", code, out], capture_output=True, text=True, timeout=300
  )
  assert result.returncode == 0, result.stderr[-3000:]
  with np.load(out) as read:
    np.testing.assert_array_equal(read["test"], first.test["image"])
    np.testing.assert_array_equal(read["test_labels"], first.test["label"])
    np.testing.assert_array_equal(read["ends"], first.train["image"][[0, -1]])
    np.testing.assert_array_equal(read["labels"], first.train["label"][[0, -1]])


def test_missing_manual_dir_raises_quickly(tmp_path, monkeypatch):
  # Force "offline" so the test means the same on machines with internet.
  monkeypatch.setattr(sources, "_host_reachable", lambda host: False)
  missing = tmp_path / "nowhere"
  start = time.perf_counter()
  with pytest.raises(DatasetNotFoundError) as info:
    load_dataset("fashion_mnist", data_dir=str(tmp_path / "tfds"), manual_dir=str(missing))
  assert time.perf_counter() - start < 5.0
  msg = str(info.value)
  for part in (
    "fashion_mnist",
    "GENJAX_MANUAL_DIR",
    str(missing),
    "train-images-idx3-ubyte.gz",
    str(tmp_path / "tfds"),
  ):
    assert part in msg
  assert isinstance(info.value, FileNotFoundError)


def test_no_manual_dir_message(tmp_path, monkeypatch):
  monkeypatch.setattr(sources, "_host_reachable", lambda host: False)
  monkeypatch.delenv("GENJAX_MANUAL_DIR", raising=False)
  monkeypatch.setattr(sources, "_BESIDE_CHECKOUT", tmp_path / "no shared data here")
  with pytest.raises(DatasetNotFoundError, match="no manual dir was set"):
    load_dataset("mnist", data_dir=str(tmp_path))


def test_raw_files_beside_the_checkout_are_found_without_a_setting(tmp_path, monkeypatch):
  monkeypatch.delenv("GENJAX_MANUAL_DIR", raising=False)
  beside = tmp_path / "shared" / "data"
  (beside / "mnist").mkdir(parents=True)
  monkeypatch.setattr(sources, "_BESIDE_CHECKOUT", beside)
  assert sources._resolve_manual_dir("mnist", None) == str(beside / "mnist")
  assert sources._resolve_manual_dir("mnist", str(tmp_path)) == str(tmp_path)  # A setting wins.


def test_cifar10_without_data_says_which_file_goes_where(tmp_path, monkeypatch):
  # Not shipped and not downloadable offline: only mock data (tests/test_cifar10_mock.py)
  # or the raw archive in a manual dir make it loadable.
  monkeypatch.setattr(sources, "_host_reachable", lambda host: False)
  missing = tmp_path / "nowhere"
  with pytest.raises(DatasetNotFoundError) as info:
    load_dataset("cifar10", data_dir=str(tmp_path / "tfds"), manual_dir=str(missing))
  msg = str(info.value)
  for part in ("cifar10", "cifar-10-binary.tar.gz", str(missing), "GENJAX_MANUAL_DIR"):
    assert part in msg


def test_network_probe_is_bounded():
  start = time.perf_counter()
  sources._host_reachable("storage.googleapis.com", timeout=1.0)
  assert time.perf_counter() - start < 2.0


def test_unknown_name_raises_value_error():
  with pytest.raises(ValueError, match="ring8"):
    load_dataset("definitely_not_a_dataset")

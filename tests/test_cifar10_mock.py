"""CIFAR-10 under ``tfds.testing.mock_data``: it cannot be downloaded here.

The mock serves deterministic random examples with CIFAR-10's features, so these
tests check plumbing (shapes, dtypes, caching, a 2-step run), never quality.
"""

import json
import math
import pathlib

import numpy as np
import pytest
import tensorflow_datasets as tfds

from genjax import config as config_lib
from genjax.data import sources
from genjax.data.sources import DatasetNotFoundError, load_dataset
from genjax.run import loop

REPO = pathlib.Path(__file__).resolve().parents[1]
# At least eval.periodic_sample_examples (160 after shrink), so FID uses 160 per side.
NUM_EXAMPLES = 256


@pytest.fixture(name="tmp_tfds")
def _tmp_tfds(tmp_path, monkeypatch):
  """A fresh tfds data dir and feature-net cache, so nothing lands in the shared ones."""
  data_dir = tmp_path / "tfds"
  monkeypatch.setenv("TFDS_DATA_DIR", str(data_dir))
  monkeypatch.setenv("GENJAX_CACHE_DIR", str(tmp_path / "genjax_cache"))
  return data_dir


def _finite(value) -> bool:
  return value is not None and math.isfinite(value)


def _npz_files(*roots):
  return sorted(str(p) for root in roots if root.exists() for p in root.rglob("genjax_*.npz"))


def test_mock_cifar10_shapes_and_nothing_cached(tmp_tfds, monkeypatch):
  written = []
  monkeypatch.setattr(sources, "_write_atomic", lambda path, arrays: written.append(path))
  with tfds.testing.mock_data(num_examples=NUM_EXAMPLES):
    mock_dir = pathlib.Path(tfds.builder("cifar10").data_dir_root)
    ds = load_dataset("cifar10")
  assert ds.kind == "image" and ds.num_classes == 10 and ds.shape == (32, 32, 3)
  assert ds.num_train == NUM_EXAMPLES
  for split in (ds.train, ds.test):
    assert split["image"].shape == (NUM_EXAMPLES, 32, 32, 3)
    assert split["image"].dtype == np.uint8
    assert split["label"].shape == (NUM_EXAMPLES,) and split["label"].dtype == np.int32
    assert 0 <= split["label"].min() and split["label"].max() < 10
  assert ds.train["image"].std() > 0  # Random pixels, not a constant placeholder.
  assert not written
  assert _npz_files(tmp_tfds, mock_dir, REPO / ".cache" / "tensorflow_datasets" / "cifar10") == []

  # Outside the mock the real loader runs again and finds no data, mock or real.
  monkeypatch.setattr(sources, "_host_reachable", lambda host: False)
  assert not sources._tfds_mocked()
  with pytest.raises(DatasetNotFoundError, match="cifar-10-binary.tar.gz"):
    load_dataset("cifar10", manual_dir=str(tmp_tfds.parent / "nowhere"))


@pytest.fixture(scope="module", name="mock_feature_nets")
def _mock_feature_nets(tmp_path_factory):
  """One feature-net cache for both runs: the mock data, hence the net, are the same."""
  return tmp_path_factory.mktemp("mock_feature_nets")


@pytest.mark.xdist_group("cifar10_mock")  # One worker, so the second run reuses the net.
@pytest.mark.parametrize(
  "name, logged",
  [("wgan_gp_cifar10", "train/gradient_penalty"), ("ddpm_cifar10", "train/grad_norm")],
)
def test_cifar10_config_two_steps_under_mock(
  name, logged, tmp_tfds, tmp_path, shrink, mock_feature_nets, monkeypatch
):
  monkeypatch.setenv("GENJAX_CACHE_DIR", str(mock_feature_nets))
  c = config_lib.load_config(REPO / "experiments" / "configs" / f"{name}.py")
  c = shrink(c)
  c.gan.base_channels = 8  # Keeps CPU time small; the architecture is unchanged.
  # Two U-Net resolutions instead of four: a 32x32x3 run end to end, at a fifth of the compile time.
  c.unet.channel_mults, c.unet.attention_resolutions = (1, 2), (16,)
  c.data.data_dir = str(tmp_tfds)
  workdir = tmp_path / "run"
  with tfds.testing.mock_data(num_examples=NUM_EXAMPLES):
    summary = loop.train_and_evaluate(c, workdir)
  assert math.isfinite(summary["train/loss"])
  records = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
  train = [r for r in records if "train/loss" in r]
  assert [r["step"] for r in train] == [1, 2]
  for r in train:  # The writer records non-finite values as null.
    assert all(_finite(r[k]) for k in ("train/loss", logged))
  evals = [r for r in records if any(k.startswith("eval/") for k in r)]
  assert evals and {"eval/fid_lenet", "eval/fid_lenet_floor"} <= set(evals[-1])
  assert all(v is not None for v in evals[-1].values())  # None marks a non-finite value.
  assert (workdir / "images" / "samples.png").is_file()
  assert _npz_files(tmp_tfds) == []

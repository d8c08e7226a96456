"""Tests for genjax.evaluation.feature_net, trained on the shipped 8x8 digits."""

import dataclasses
import json
import re
import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.data.sources import Dataset, load_dataset
from genjax.evaluation import feature_net
from genjax.evaluation.feature_net import (
  ARCHITECTURES,
  FeatureNet,
  LeNet,
  cache_key,
  cache_root,
  load_or_train,
  train,
)

# One worker: the module fixtures are expensive to build twice.
pytestmark = pytest.mark.xdist_group("feature_net")

# Two epochs of digits: enough to tell seeds apart and to exercise the cache in seconds.
QUICK = dataclasses.replace(feature_net.TRAINING, target_steps=12, min_epochs=1, max_epochs=2)


@pytest.fixture(name="digits", scope="module")
def _digits():
  return load_dataset("digits")


@pytest.fixture(name="trained", scope="module")
def _trained(digits):
  """The real (full TRAINING) digits net, from the suite's cache.

  The runs of ``vae_digits`` in other tests evaluate with the same net, so it is
  trained once per suite run, by whichever test asks first (a file lock makes
  the others wait for it).
  """
  net = feature_net.load_or_train(digits, seed=0)
  return net.params, net.info


@pytest.fixture(name="quick")
def _quick(monkeypatch, tmp_path):
  """Short training and a private cache root; returns the root."""
  monkeypatch.setattr(feature_net, "TRAINING", QUICK)
  monkeypatch.setenv("GENJAX_CACHE_DIR", str(tmp_path / "cache"))
  return tmp_path / "cache"


def _count_train_calls(monkeypatch) -> list:
  calls = []

  def counting(*args, **kwargs):
    calls.append(kwargs.get("seed"))
    return train(*args, **kwargs)  # The real one, even when feature_net.train is patched.

  monkeypatch.setattr(feature_net, "train", counting)
  return calls


def _assert_trees_equal(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _trees_equal(a, b) -> bool:
  return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 3), (8, 8, 1)])
def test_lenet_shapes(shape):
  module = LeNet(num_classes=7)
  x = jax.random.uniform(jax.random.key(0), (5, *shape))
  params = module.init(jax.random.key(1), x)["params"]
  features, logits = module.apply({"params": params}, x)
  assert features.shape == (5, 128) and logits.shape == (5, 7)
  assert bool(jnp.all(features >= 0))  # Post-relu.
  assert sorted(params) == ["conv0", "conv1", "features", "logits"]


def test_patch_conv_matches_lax_conv():
  x = jax.random.normal(jax.random.key(0), (3, 4, 4, 6))
  w = jax.random.normal(jax.random.key(1), (5, 5, 6, 8))
  dims = ("NHWC", "HWIO", "NHWC")
  expected = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=dims)
  np.testing.assert_allclose(
    feature_net._patch_conv(x, w, (1, 1), "SAME"), expected, rtol=1e-4, atol=1e-4
  )


def test_training_on_digits_is_accurate(digits, trained):
  params, info = trained
  assert info["test_accuracy"] >= 0.97
  # Recomputed independently of the module's own evaluation code.
  images = digits.test["image"].astype(np.float32) / 255.0
  _, logits = LeNet(num_classes=10).apply({"params": params}, images)
  recomputed = np.mean(np.argmax(np.asarray(logits), -1) == digits.test["label"])
  assert info["test_accuracy"] == pytest.approx(recomputed, abs=1e-12)
  assert info["num_test"] == 300 and info["num_classes"] == 10 and info["feature_dim"] == 128
  assert info["epochs"] == feature_net.TRAINING.num_epochs(digits.num_train)
  assert info["key"] == cache_key(digits, seed=0) and info["seed"] == 0
  assert info["dataset"] == "digits" and info["arch"] == "lenet"
  # The jax that trained it (a cached net may predate the installed one).
  assert info["train_seconds"] > 0 and re.fullmatch(r"\d+\.\d+\.\d+.*", info["jax_version"])


def test_feature_net_apply_is_jittable(trained):
  params, info = trained
  net = FeatureNet(name="lenet", module=LeNet(num_classes=10), params=params, info=info)
  x = jax.random.uniform(jax.random.key(0), (6, 8, 8, 1))
  features, logits = jax.jit(net.apply)(x)
  assert features.shape == (6, net.feature_dim) == (6, 128) and logits.shape == (6, 10)
  assert features.dtype == jnp.float32 and logits.dtype == jnp.float32
  eager_features, _ = net.apply(x)
  np.testing.assert_allclose(features, eager_features, rtol=1e-5, atol=1e-5)
  assert net.key == info["key"]


def test_training_is_deterministic_per_seed(digits, quick):
  del quick
  params_a, info_a = train(digits, seed=3)
  params_b, _ = train(digits, seed=3)
  _assert_trees_equal(params_a, params_b)
  params_c, info_c = train(digits, seed=4)
  assert not _trees_equal(params_a, params_c)
  assert info_a["key"] != info_c["key"]


def test_cache_key_covers_seed_data_and_hyperparameters(digits, monkeypatch):
  key = cache_key(digits, seed=0)
  assert re.fullmatch(r"digits-lenet-seed0-[0-9a-f]{8}", key)
  assert cache_key(digits, seed=1) != key
  assert cache_key(digits, seed=1)[-8:] == key[-8:]  # The hash is seed-free; the name is not.
  changed = dataclasses.replace(feature_net.TRAINING, learning_rate=1e-4)
  monkeypatch.setattr(feature_net, "TRAINING", changed)
  assert cache_key(digits, seed=0) != key
  # Different data, same name: a different hash.
  monkeypatch.undo()
  fewer = dataclasses.replace(digits, train={k: v[:-1] for k, v in digits.train.items()})
  assert cache_key(fewer, seed=0) != key


def _without_source(info: dict) -> dict:
  return {k: v for k, v in info.items() if k != "source"}


def _fail(*args, **kwargs):
  raise AssertionError("train() called on a cache hit")


def test_cache_hit_does_not_retrain(digits, quick, monkeypatch):
  net = load_or_train(digits, seed=0)
  path = quick / "feature_nets" / net.key
  assert {p.name for p in path.iterdir()} == {"params.msgpack", "info.json"}
  assert net.info["source"] == "trained"
  assert json.loads((path / "info.json").read_text()) == _without_source(net.info)

  monkeypatch.setattr(feature_net, "train", _fail)
  again = load_or_train("digits", seed=0)  # By name, too.
  _assert_trees_equal(net.params, again.params)
  assert again.info["source"] == "cache" and again.name == "lenet"
  assert _without_source(again.info) == _without_source(net.info)

  calls = _count_train_calls(monkeypatch)
  other = load_or_train(digits, seed=1)
  assert calls == [1] and other.key != net.key
  assert sorted(p.name for p in (quick / "feature_nets").iterdir() if p.is_dir()) == sorted(
    [net.key, other.key]
  )


def test_explicit_cache_dir_and_progress_bar(digits, quick, tmp_path):
  net = load_or_train(digits, seed=0, cache_dir=tmp_path / "elsewhere", progress=True)
  assert (tmp_path / "elsewhere" / "feature_nets" / net.key / "params.msgpack").is_file()
  assert not quick.exists()


def test_cache_root_env(monkeypatch, tmp_path):
  monkeypatch.delenv("GENJAX_CACHE_DIR", raising=False)
  monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
  monkeypatch.setenv("HOME", str(tmp_path / "home"))
  assert cache_root() == tmp_path / "home" / ".cache" / "genjax"
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
  assert cache_root() == tmp_path / "xdg" / "genjax"
  monkeypatch.setenv("GENJAX_CACHE_DIR", str(tmp_path / "mine"))
  assert cache_root() == tmp_path / "mine"


@pytest.mark.parametrize("damage", ["truncate_params", "delete_info", "garble_info"])
def test_corrupt_cache_entry_is_retrained(digits, quick, monkeypatch, damage):
  net = load_or_train(digits, seed=0)
  path = quick / "feature_nets" / net.key
  if damage == "truncate_params":
    data = (path / "params.msgpack").read_bytes()
    (path / "params.msgpack").write_bytes(data[: len(data) // 2])
  elif damage == "delete_info":
    (path / "info.json").unlink()
  else:
    (path / "info.json").write_text("{not json")
  calls = _count_train_calls(monkeypatch)
  with pytest.warns(UserWarning, match="unreadable.*retraining"):
    again = load_or_train(digits, seed=0)
  assert calls == [0]
  _assert_trees_equal(net.params, again.params)  # Deterministic retraining.
  # The entry is whole again: a third call loads it.
  monkeypatch.setattr(feature_net, "train", _fail)
  _assert_trees_equal(net.params, load_or_train(digits, seed=0).params)


def test_concurrent_callers_train_once(digits, quick, monkeypatch):
  del quick
  calls = _count_train_calls(monkeypatch)
  barrier = threading.Barrier(2)
  results = [None, None]

  def worker(i):
    barrier.wait()  # Both miss the cache; the file lock must make one of them wait.
    results[i] = load_or_train(digits, seed=0)

  threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  assert calls == [0]
  _assert_trees_equal(results[0].params, results[1].params)


def _unlabelled() -> Dataset:
  split = {"image": np.zeros((4, 8, 8, 1), np.uint8), "label": np.zeros(4, np.int32)}
  return Dataset("blank", "image", split, split, num_classes=1, shape=(8, 8, 1))


@pytest.mark.parametrize("fn", [train, load_or_train, cache_key])
def test_errors(digits, fn, tmp_path, monkeypatch):
  monkeypatch.setenv("GENJAX_CACHE_DIR", str(tmp_path))
  with pytest.raises(ValueError, match="fid_lenet needs a labelled image dataset; blank has no"):
    fn(_unlabelled())
  with pytest.raises(ValueError, match="ring8 is of kind 'points'"):
    fn(load_dataset("ring8"))
  with pytest.raises(ValueError, match=r"Unknown feature net architecture 'inception'.*lenet"):
    fn(digits, arch="inception")
  assert ARCHITECTURES == ("lenet",)
  assert not any(tmp_path.iterdir())


def test_max_steps_cuts_training_short_and_changes_the_key(digits):
  short = dataclasses.replace(feature_net.TRAINING, max_steps=7)
  params, info = feature_net.train(digits, training=short)
  assert info["steps"] == 7 and short.num_steps(digits.num_train) == 7
  assert info["key"] != feature_net.cache_key(digits)
  assert feature_net.TRAINING.num_steps(digits.num_train) == 50 * (digits.num_train // 128)
  net = FeatureNet("lenet", LeNet(num_classes=10), params, info)
  x = digits.test["image"][:4] / 255.0
  features, logits = jax.jit(net.apply_with)(net.variables, x)
  np.testing.assert_allclose(features, net.apply(x)[0], rtol=1e-5, atol=1e-6)
  assert features.shape == (4, 128) and logits.shape == (4, 10)


@pytest.mark.parametrize("name, min_accuracy", [("mnist", 0.99), ("fashion_mnist", 0.9)])
def test_shipped_net_is_used_and_scores_what_it_records(name, min_accuracy, tmp_path, monkeypatch):
  dataset = load_dataset(name)
  key = cache_key(dataset, seed=0)
  # The default recipe on this data has a shipped net: no machine trains its own.
  assert key in feature_net.packaged_keys()
  monkeypatch.setattr(feature_net, "train", _fail)
  net = load_or_train(dataset, seed=0, cache_dir=tmp_path)
  assert net.key == key and net.info["source"] == "genjax package"
  assert not any(tmp_path.iterdir())  # Nothing cached.
  # The weights score the test accuracy their info.json records (a flipped near-tie at most).
  recomputed = feature_net._accuracy(net.module, net.params, dataset.test, 500)
  assert recomputed == pytest.approx(net.info["test_accuracy"], abs=2e-4)
  assert recomputed > min_accuracy


def test_shipped_entry_comes_first_and_a_damaged_one_falls_back(
  digits, quick, tmp_path, monkeypatch
):
  shipped = tmp_path / "weights"
  monkeypatch.setattr(feature_net, "_packaged_root", lambda: shipped)
  assert feature_net.packaged_keys() == []
  trained = load_or_train(digits, seed=0)
  assert trained.info["source"] == "trained"
  # Ship the cached entry; a second cache root must not be used or written.
  (shipped / trained.key).mkdir(parents=True)
  for f in ("params.msgpack", "info.json"):
    (shipped / trained.key / f).write_bytes((quick / "feature_nets" / trained.key / f).read_bytes())
  monkeypatch.setattr(feature_net, "train", _fail)
  other_cache = tmp_path / "other"
  net = load_or_train(digits, seed=0, cache_dir=other_cache)
  assert net.info["source"] == "genjax package" and not other_cache.exists()
  _assert_trees_equal(net.params, trained.params)
  # A damaged shipped entry warns, names itself and falls back to the cache.
  (shipped / trained.key / "params.msgpack").write_bytes(b"not msgpack")
  with pytest.warns(
    UserWarning, match=f"feature net {trained.key} shipped with genjax is unreadable"
  ):
    net = load_or_train(digits, seed=0)
  assert net.info["source"] == "cache"
  _assert_trees_equal(net.params, trained.params)

"""The sample-metric runner against samplers whose quality is known by construction.

A sampler that draws real training examples must score at the real-vs-real
floor; one that draws noise, one mode, or the wrong label must not. The
feature net here is a fixed nearest-class-mean classifier, so these tests do
not depend on training one.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import config as config_lib
from genjax.core.parallel import DataParallel
from genjax.data import sources
from genjax.evaluation import metrics as metrics_lib
from genjax.evaluation import suite
from genjax.run import experiment


class CentroidNet:
  """Features: a fixed random projection; logits: minus the distance to class means."""

  name = "lenet"

  def __init__(self, dataset, dim=24):
    x = dataset.train["image"].reshape(dataset.num_train, -1) / 255.0
    means = np.stack([x[dataset.train["label"] == k].mean(0) for k in range(10)])
    proj = np.random.default_rng(0).normal(size=(x.shape[1], dim)) / np.sqrt(x.shape[1])
    self.variables = {"means": means.astype(np.float32), "proj": proj.astype(np.float32)}
    self.info = {"key": "centroid-test"}
    self.feature_dim = dim

  @staticmethod
  def apply_with(variables, unit):
    flat = unit.reshape(unit.shape[0], -1)
    logits = -jnp.sum(jnp.square(flat[:, None] - variables["means"][None]), axis=-1)
    return jnp.tanh(4.0 * flat @ variables["proj"]), logits


class Oracle:
  """Samples real training examples: ``mode`` is real | noise | collapse | wrong_label."""

  can_sample = True

  def __init__(self, config, dataset, mode="real", conditional=False):
    self.config, self.mode, self.conditional = config, mode, conditional
    self.kind = dataset.kind
    key = "image" if dataset.kind == "image" else "points"
    pool = dataset.train[key].astype(np.float32)
    self.pool = pool / 255.0 if key == "image" else pool
    labels = dataset.train["label"]
    per_class = min(np.sum(labels == k) for k in range(dataset.num_classes))
    self.by_class = np.stack(
      [np.flatnonzero(labels == k)[:per_class] for k in range(dataset.num_classes)]
    )
    self.num_classes = dataset.num_classes

  def params(self):
    return {"pool": self.pool, "by_class": self.by_class}

  def sample(self, params, keys, labels):
    pool, by_class = params["pool"], params["by_class"]
    if self.mode == "noise":
      return jax.vmap(lambda k: jax.random.uniform(k, pool.shape[1:]))(keys)
    if self.mode == "collapse":  # Only class 0 (one mode of a mixture).
      labels = jnp.zeros_like(labels)
    elif self.mode == "wrong_label":
      labels = (labels + 1) % self.num_classes
    elif not self.conditional:
      labels = jax.vmap(lambda k: jax.random.randint(k, (), 0, self.num_classes))(keys)
    pick = jax.vmap(lambda k: jax.random.randint(k, (), 0, by_class.shape[1]))(keys)
    return pool[by_class[labels, pick]]

  def to_unit(self, x):
    return x

  def sampler_description(self):
    return f"training examples ({self.mode})"


def _evaluator(dataset, evals, mode="real", conditional=False, parallel=None):
  c = config_lib.defaults()
  c.data.name = dataset.name
  c.evals = evals
  c.eval.batch_size = 64
  family = Oracle(c, dataset, mode, conditional)
  ev = suite.SampleEvaluator(c, dataset, family, parallel or DataParallel("shard_map"))
  if dataset.kind == "image":
    ev.nets["lenet"] = CentroidNet(dataset)
  return ev, family.params()


@pytest.fixture(scope="module")
def digits():
  return sources.load_dataset("digits")


IMAGE_EVALS = "fid_lenet,kid_lenet,precision_recall_lenet,classifier_score_lenet"


def test_real_sampler_scores_at_the_floor_and_noise_does_not(digits):
  ev, params = _evaluator(digits, IMAGE_EVALS)
  real, report = ev(params, 1000)
  n = len(digits.test["label"])
  assert real["num_generated"] == n and report["num_generated"] == n  # capped by the test split
  assert report["reference"] == f"digits test split, first {n} examples"
  assert report["sampler"] == "training examples (real)"  # the family names its sampler
  # Drawing training images is what the floor measures: same number up to noise.
  assert real["fid_lenet"] < 2 * real["fid_lenet_floor"]
  assert real["precision_lenet"] > 0.9 * real["precision_lenet_floor"]
  assert real["recall_lenet"] > 0.9 * real["recall_lenet_floor"]
  assert real["classifier_score_lenet"] == pytest.approx(
    real["classifier_score_lenet_floor"], rel=0.1
  )
  noise, _ = _evaluator(digits, IMAGE_EVALS, mode="noise")[0](params, 1000)
  assert noise["fid_lenet"] > 20 * real["fid_lenet"]
  # KID is unbiased: ~0 for real samples (either sign), far from 0 for noise.
  assert abs(real["kid_lenet"] - real["kid_lenet_floor"]) < 0.02 * noise["kid_lenet"]
  assert noise["precision_lenet"] < 0.1
  assert noise["classifier_score_lenet"] < 0.5 * real["classifier_score_lenet"]
  # The floor does not depend on the model.
  assert noise["fid_lenet_floor"] == real["fid_lenet_floor"]


def test_collapsed_sampler_loses_recall_not_precision(digits):
  ev, params = _evaluator(digits, IMAGE_EVALS, mode="collapse")
  values, _ = ev(params, 300)
  assert values["precision_lenet"] > 0.8
  assert values["recall_lenet"] < 0.3
  assert values["classifier_score_lenet"] < 1.5  # one class: p(y|x) = p(y)


def test_label_accuracy_of_a_conditional_sampler(digits):
  ev, params = _evaluator(digits, "label_accuracy", conditional=True)
  values, report = ev(params, 300)
  floor = values["label_accuracy_floor"]
  assert 0.8 < floor < 1.0  # the centroid classifier's test accuracy
  assert abs(values["label_accuracy"] - floor) < 0.06
  assert "label i mod 10" in report["labels"]
  wrong, _ = _evaluator(digits, "label_accuracy", mode="wrong_label", conditional=True)[0](
    params, 300
  )
  assert wrong["label_accuracy"] < 0.15


def test_metrics_do_not_depend_on_devices_or_parallel_mode(digits):
  devices = jax.devices()
  assert len(devices) == 8
  results = []
  for parallel in (
    DataParallel("shard_map", devices[:1]),
    DataParallel("shard_map", devices),
    DataParallel("pmap", devices),
  ):
    ev, params = _evaluator(digits, IMAGE_EVALS, parallel=parallel)
    results.append(ev(params, 200)[0])
  for other in results[1:]:
    for k, v in results[0].items():
      assert other[k] == pytest.approx(v, rel=1e-5, abs=1e-6), k


def test_mode_coverage_of_real_and_collapsed_samplers(tmp_path):
  ring = sources.load_dataset("ring8")
  ev, params = _evaluator(ring, "mode_coverage")
  values, report = ev(params, 2500, image_dir=tmp_path)
  assert values["modes_captured"] == 8 and values["modes_captured_floor"] == 8
  # A 2-D Gaussian puts 1 - exp(-3²/2) of its mass within 3σ of its centre.
  assert values["high_quality"] == pytest.approx(1 - np.exp(-4.5), abs=0.006)
  assert values["high_quality_floor"] == pytest.approx(1 - np.exp(-4.5), abs=0.006)
  assert values["mode_js"] < 0.01
  assert "8 modes" in report["mode_coverage"]
  assert (tmp_path / "samples_over_modes.png").stat().st_size > 1000
  collapsed, _ = _evaluator(ring, "mode_coverage", mode="collapse")[0](params, 2500)
  assert collapsed["modes_captured"] == 1
  one_hot = np.eye(8)[0]
  assert collapsed["mode_js"] == pytest.approx(metrics_lib.js_divergence(one_hot, np.ones(8)))


def test_point_metrics_of_real_and_collapsed_samplers():
  moons = sources.load_dataset("moons")
  ev, params = _evaluator(moons, "precision_recall_points,energy_distance_points")
  real, report = ev(params, 2000)
  assert real["precision_points"] > 0.95 and real["recall_points"] > 0.95
  assert abs(real["energy_distance_points"]) < 0.01
  assert abs(real["energy_distance_points_floor"]) < 0.01
  assert "energy_distance" in report and not ev.nets
  # Uniform on the unit square: a quarter of the moons' box, missing most of both moons.
  ev, _ = _evaluator(moons, "precision_recall_points,energy_distance_points", "noise")
  noise = ev(params, 2000)[0]
  assert noise["recall_points"] < 0.5
  assert noise["energy_distance_points"] > 10 * abs(real["energy_distance_points"]) + 0.05


def test_parse_and_config_errors():
  assert suite.parse_evals(" fid_lenet, kid_lenet,,fid_lenet ") == ("fid_lenet", "kid_lenet")
  c = config_lib.defaults()
  c.evals = "fid_lenet,fid"
  c.eval.periodic_sample_examples = 100
  errors = suite.config_errors(c)
  assert any("unknown fid;" in e for e in errors)
  assert any("config.eval.periodic_sample_examples=100" in e and "129" in e for e in errors)
  c = config_lib.defaults()
  c.data.name = "ring8"
  c.evals = "fid_lenet"
  assert any("needs images" in e for e in suite.config_errors(c))
  c.data.name, c.evals = "mnist", "mode_coverage"
  assert any("needs a 2-D mixture" in e for e in suite.config_errors(c))
  c.evals = "energy_distance_points"
  assert any("compares 2-D points" in e for e in suite.config_errors(c))
  c.data.name = "moons"
  assert not suite.config_errors(c)
  with pytest.raises(config_lib.ConfigError, match="unknown fid"):
    config_lib.validate(_with_evals("fid"), 1)


def _with_evals(evals):
  c = config_lib.defaults()
  c.evals = evals
  return c


@pytest.mark.parametrize(
  "family,evals,message",
  [
    ("ae", "fid_lenet", "family 'ae' does not generate samples"),
    ("vae", "label_accuracy", "label_accuracy needs a class-conditional model"),
  ],
)
def test_build_rejects_metrics_the_family_cannot_serve(family, evals, message):
  c = _with_evals(evals)
  c.family = family
  with pytest.raises(config_lib.ConfigError, match=message):
    experiment.build(c)


def test_saved_configs_gain_new_fields_at_their_defaults():
  saved = json.loads(config_lib.defaults().to_json())
  del saved["evals"], saved["eval"]["sample_examples"]
  saved["model"]["hidden_sizes"] = [64, 32]  # JSON turns tuples into lists
  c = config_lib.complete(saved)
  assert c.evals == "" and c.eval.sample_examples == 10000
  assert c.model.hidden_sizes == (64, 32)
  config_lib.validate(c, 1)


def test_inception_metrics_without_weights_stop_at_build(monkeypatch, tmp_path):
  monkeypatch.delenv("GENJAX_INCEPTION_WEIGHTS", raising=False)
  c = _with_evals("fid_inception")
  c.eval.sample_examples = c.eval.periodic_sample_examples = 4096
  c.eval.inception_weights = str(tmp_path / "missing.npz")
  with pytest.raises(FileNotFoundError, match="missing.npz") as info:
    experiment.build(c)
  assert "--convert" in str(info.value)

"""VQ-VAE-2 and its two-level prior as families of the training loop (digits: 4x4 / 2x2 codes)."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from family_runs import restore_run

import genjax
from genjax import config as config_lib
from genjax.core import random as genjax_random
from genjax.models.vqvae import EMA_COLLECTION
from genjax.run import evaluation, experiment, loop

pytestmark = pytest.mark.xdist_group("vqvae2_families")


def _first_config(num_steps=60):
  c = config_lib.defaults()
  c.family = "vqvae2"
  c.data.name, c.data.preprocess = "digits", "scale_01"
  # One stride-2 stage: 8x8 digits -> a 4x4 bottom and a 2x2 top map.
  c.vq.update(num_embeddings=16, embedding_dim=4, channels=(16,), res_channels=8)
  c.vq.update(num_res_blocks=1, restart_threshold=1.0)
  c.vq2.top_num_embeddings = 8
  c.optimizer.learning_rate = 3e-3
  c.train.batch_size, c.train.num_steps = 32, num_steps
  c.train.eval_every, c.train.checkpoint_every = 0, num_steps
  c.train.progress_bar, c.train.log_every = False, 10
  c.eval.num_images = 16
  return c


def _prior_config(first_stage, num_steps=3):
  c = config_lib.defaults()
  c.family = "vqvae2_prior"
  c.data.name, c.data.preprocess = "digits", "scale_01"
  c.model.conditional = True
  c.prior.vqvae_workdir = str(first_stage)
  c.pixelcnn.num_layers, c.pixelcnn.features = 2, 8
  c.train.batch_size, c.train.num_steps = 32, num_steps
  c.train.eval_every, c.train.checkpoint_every = 0, num_steps
  c.train.progress_bar, c.train.log_every = False, 1
  c.evals = "fid_lenet,label_accuracy"
  c.eval.num_images = 8
  c.eval.sample_examples = c.eval.periodic_sample_examples = 160
  c.eval.feature_net_steps = 40
  return c


@pytest.fixture(scope="module")
def first_stage(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("vqvae2_digits")
  loop.train_and_evaluate(_first_config(), workdir)
  return workdir


@pytest.fixture(scope="module")
def prior_run(first_stage, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("vqvae2_prior_digits")
  loop.train_and_evaluate(_prior_config(first_stage, num_steps=30), workdir)
  return workdir


def _records(workdir):
  return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def test_first_stage_trains_both_levels(first_stage):
  exp, state = restore_run(first_stage)
  params = exp.family.eval_params(state)
  trained = evaluation.evaluate(exp, params, num_examples=0, num_samples=1)
  init = evaluation.evaluate(
    exp, exp.family.eval_params(exp.init_state()), num_examples=0, num_samples=1
  )
  assert trained["eval/mse"] < 0.7 * init["eval/mse"]
  for level, size in (("top", 8), ("bottom", 16)):
    assert 1.0 < trained[f"eval/perplexity_{level}"] <= size
    assert 1 <= trained[f"eval/codes_used_{level}"] <= size
    assert f"eval/code_frequency_{level}" not in trained
  total = trained["eval/commitment_loss_top"] + trained["eval/commitment_loss_bottom"]
  assert trained["eval/commitment_loss"] == pytest.approx(total, rel=1e-5)
  losses = [r["train/loss"] for r in _records(first_stage) if "train/loss" in r]
  assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]
  last_train = [r for r in _records(first_stage) if "train/loss" in r][-1]
  assert {"train/perplexity_top", "train/codes_restarted_bottom"} <= set(last_train)
  assert set(state.model_state[EMA_COLLECTION]) == {"quantizer_top", "quantizer_bottom"}
  x = jnp.asarray(exp.dataset.test["image"][:4], jnp.float32) / 255.0
  top, bottom = exp.family.encode(params, x)
  assert top.shape == (4, 2, 2) and bottom.shape == (4, 4, 4)
  assert exp.family.decode(params, top, bottom).shape == (4, 8, 8, 1)
  pictures = {p.name for p in (first_stage / "images").glob("*.png")}
  assert {"reconstructions.png", "codebook_usage_top.png", "codebook_usage_bottom.png"} <= pictures


def test_prior_trains_over_the_frozen_first_stage(first_stage, prior_run):
  first_exp, first_state = restore_run(first_stage)
  first_vars = first_exp.family.eval_params(first_state)
  exp, state = restore_run(prior_run)
  jax.tree.map(np.testing.assert_array_equal, state.model_state["vqvae"], first_vars)
  losses = [r["train/loss"] for r in _records(prior_run) if "train/loss" in r]
  assert all(math.isfinite(v) for v in losses) and np.mean(losses[-5:]) < np.mean(losses[:5])
  params = exp.family.eval_params(state)
  metrics = evaluation.evaluate(exp, params, num_examples=0, num_samples=1)
  assert metrics["eval/nll"] == pytest.approx(
    metrics["eval/nll_top"] + metrics["eval/nll_bottom"], rel=1e-5
  )
  assert metrics["eval/bits_per_code"] == pytest.approx(
    metrics["eval/nll"] / ((4 + 16) * math.log(2.0)), rel=1e-5
  )
  # Fewer nats than uniform codes: log 8 per top code, log 16 per bottom code.
  assert metrics["eval/nll"] < 4 * math.log(8) + 16 * math.log(16)
  last = [r for r in _records(prior_run) if "eval/label_accuracy" in r][-1]
  assert {"eval/fid_lenet", "eval/label_accuracy_floor"} <= set(last)
  pictures = {p.name for p in (prior_run / "images").glob("*.png")}
  assert {"samples_by_class.png", "bottom_resamples.png"} <= pictures


def test_ancestral_samples_decode_top_then_bottom_and_depend_only_on_their_key(prior_run):
  exp, state = restore_run(prior_run)
  family, params = exp.family, exp.family.eval_params(state)
  keys = jax.random.split(jax.random.key(5), 6)
  labels = jnp.arange(6, dtype=jnp.int32) % 10
  top, bottom = family.sample_codes(params, keys, labels)
  assert top.shape == (6, 2, 2) and bottom.shape == (6, 4, 4)
  assert top.max() < 8 and bottom.max() < 16 and min(top.min(), bottom.min()) >= 0
  top_keys, bottom_keys = genjax_random.split(keys, 2)
  np.testing.assert_array_equal(top, family.sample_grid(params, top_keys, labels))
  np.testing.assert_array_equal(bottom, family.sample_bottom(params, bottom_keys, labels, top))
  x = family.sample(params, keys, labels)
  np.testing.assert_allclose(x, family.vqvae.decode(params["vqvae"], top, bottom), atol=1e-6)
  assert x.shape == (6, 8, 8, 1) and np.all(np.isfinite(x))
  again = family.sample(params, keys[3:], labels[3:])
  np.testing.assert_allclose(again, x[3:], atol=1e-6)


def test_load_samples_the_chain_and_the_bundle_carries_the_first_stage(prior_run, tmp_path):
  model = genjax.load(prior_run)
  x = model.sample(8, seed=2)
  assert x.shape == (8, 8, 8, 1) and np.all((x >= 0) & (x <= 1))
  bundle = model.export(tmp_path / "bundle")
  meta = json.loads((bundle / "bundle.json").read_text())
  meta["config"]["prior"]["vqvae_workdir"] = str(tmp_path / "moved away")
  (bundle / "bundle.json").write_text(json.dumps(meta))
  loaded = genjax.load(bundle)
  np.testing.assert_array_equal(loaded.sample(8, seed=2), x)
  uniform = loaded.sample(8, seed=2, sample_from="uniform")
  assert uniform.shape == x.shape and np.abs(uniform - x).max() > 0
  np.testing.assert_array_equal(
    model.sample(4, seed=2, labels=3), model.sample(4, seed=2, labels=3)
  )


def test_config_errors_name_the_field(first_stage, tmp_path):
  c = _first_config()
  c.vq.update(ema=False)
  c.vq2.top_num_embeddings = 0
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.validate(c, 1)
  assert "config.vq.restart_threshold=1.0" in str(e.value)
  assert "config.vq2.top_num_embeddings=0" in str(e.value)
  c = _prior_config("")
  with pytest.raises(config_lib.ConfigError, match=r"config.prior.vqvae_workdir='': .*'vqvae2'"):
    config_lib.validate(c, 1)
  c = _prior_config(tmp_path / "missing")
  with pytest.raises(config_lib.ConfigError, match=r"config.prior.vqvae_workdir=.*missing"):
    experiment.build(c, jax.devices()[:1])
  c = _prior_config(first_stage)
  c.family = "vqvae_prior"  # A one-level prior cannot build on a two-level first stage.
  with pytest.raises(config_lib.ConfigError, match="holds a 'vqvae2' run, not a 'vqvae' one"):
    experiment.build(c, jax.devices()[:1])

"""VQ-VAE, PixelCNN and the two-stage PixelCNN prior as families of the training loop."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from family_runs import assert_resume_is_bit_identical, restore_run

import genjax
from genjax import config as config_lib
from genjax.core.parallel import AXIS
from genjax.data import preprocessing
from genjax.models.vqvae import EMA_COLLECTION
from genjax.run import evaluation, experiment, loop
from genjax.run.evaluation import evaluate_workdir

# One worker: the module fixtures are expensive to build twice.
pytestmark = pytest.mark.xdist_group("vq_families")


def _vqvae_config(num_steps=20, **vq):
  c = config_lib.defaults()
  c.family = "vqvae"
  c.data.name, c.data.preprocess = "digits", "scale_01"  # 8x8 images: 2x2 code maps
  c.vq.num_embeddings, c.vq.embedding_dim, c.vq.channels = 16, 4, (8, 16)
  c.vq.res_channels, c.vq.num_res_blocks = 8, 1
  c.vq.update(vq)
  c.optimizer.learning_rate = 3e-3
  c.train.batch_size, c.train.num_steps = 32, num_steps
  c.train.eval_every, c.train.checkpoint_every = 0, num_steps
  c.train.progress_bar, c.train.log_every = False, num_steps
  c.eval.num_images = 16
  return c


def _pixelcnn_config(num_steps=20, family="pixelcnn"):
  c = config_lib.defaults()
  c.family = family
  c.data.name, c.data.preprocess = "digits", "binarize_dynamic"
  c.pixelcnn.num_layers, c.pixelcnn.features = 2, 8
  c.train.batch_size, c.train.num_steps = 32, num_steps
  c.train.eval_every, c.train.checkpoint_every = 0, num_steps
  c.train.progress_bar, c.train.log_every = False, num_steps
  c.eval.num_images = 8
  return c


@pytest.fixture(scope="module")
def first_stage(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("vqvae_digits")
  loop.train_and_evaluate(_vqvae_config(num_steps=30, restart_threshold=1.0), workdir)
  return workdir


def test_vqvae_perplexity_and_codes_used_cover_the_whole_test_split(first_stage):
  exp, state = restore_run(first_stage)
  params = exp.family.eval_params(state)
  metrics = evaluation.evaluate(exp, params, num_examples=0, num_samples=1)
  # Second path: encode every test image and count codes on the host.
  x = jnp.asarray(exp.dataset.test["image"], jnp.float32) / 255.0
  counts = np.bincount(np.asarray(exp.family.encode(params, x)).ravel(), minlength=16)
  p = counts / counts.sum()
  expected = math.exp(-np.sum(p[p > 0] * np.log(p[p > 0])))
  assert metrics["eval/perplexity"] == pytest.approx(expected, rel=1e-5)
  assert metrics["eval/codes_used"] == np.sum(counts > 0)
  assert "eval/code_frequency" not in metrics
  assert 1.0 < metrics["eval/perplexity"] <= 16.0
  # Reported mse is the per-pixel squared error of the decoded reconstruction.
  assert metrics["eval/mse"] == pytest.approx(metrics["eval/recon"], rel=1e-6)  # l2 loss


def test_vqvae_training_lowers_the_error_and_keeps_the_codebook_out_of_the_gradients(first_stage):
  exp, state = restore_run(first_stage)
  trained = evaluation.evaluate(exp, exp.family.eval_params(state), num_examples=0, num_samples=1)
  init = evaluation.evaluate(
    exp, exp.family.eval_params(exp.init_state()), num_examples=0, num_samples=1
  )
  assert trained["eval/mse"] < 0.7 * init["eval/mse"]
  # EMA mode: the codebook is model state, not a parameter the optimizer moves.
  assert not any(
    "codebook" in jax.tree_util.keystr(p) for p, _ in jax.tree.leaves_with_path(state.params)
  )
  ema = state.model_state[EMA_COLLECTION]["quantizer"]
  assert {"codebook", "cluster_size", "embed_sum"} <= set(ema)
  assert not np.allclose(
    ema["codebook"], exp.init_state().model_state[EMA_COLLECTION]["quantizer"]["codebook"]
  )


def test_dead_codes_restart_at_encoder_outputs_of_the_batch():
  exp = experiment.build(
    _vqvae_config(restart_threshold=1e9), jax.devices()[:1]
  )  # every code is dead
  family, state = exp.family, exp.init_state()
  batch = {k: v[:16] for k, v in dict(exp.dataset.train, index=np.arange(16)).items()}
  keys = jax.random.split(jax.random.key(0), 16)
  inputs = preprocessing.prepare_batch(batch, keys, "scale_01")
  step = jnp.asarray(3)
  loss_fn = lambda b: family.stateful_loss_fn(state.params, state.model_state, b, keys, step)  # noqa: E731
  _, (metrics, model_state) = jax.vmap(loss_fn, axis_name=AXIS)(
    jax.tree.map(lambda v: v[None], inputs)
  )
  new = jax.tree.map(lambda v: v[0], model_state)[EMA_COLLECTION]["quantizer"]
  assert float(metrics["codes_restarted"][0]) == 16
  z_e = family.host_module.apply(
    {"params": state.params, **state.model_state},
    inputs["x"],
    method=lambda m, x: m.encoder(x),
  ).reshape(-1, 4)
  distance = np.min(np.linalg.norm(new["codebook"][:, None] - z_e[None], axis=-1), axis=1)
  np.testing.assert_allclose(distance, 0.0, atol=1e-6)  # each code is now one encoder output
  assert len({tuple(np.round(row, 6)) for row in np.asarray(new["codebook"])}) == 16  # distinct
  np.testing.assert_array_equal(new["cluster_size"], np.ones(16))
  np.testing.assert_array_equal(new["embed_sum"], new["codebook"])


def test_vqvae_resume_is_bit_identical(tmp_path):
  def config(num_steps):
    c = _vqvae_config(num_steps=num_steps, restart_threshold=1.0)
    c.train.checkpoint_every = 2
    return c

  state = assert_resume_is_bit_identical(config, tmp_path)
  assert int(state.step) == 4


def test_vq_config_errors_name_the_field():
  c = _vqvae_config(ema=False, restart_threshold=1.0, recon_loss="huber")
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.validate(c, 1)
  assert "config.vq.restart_threshold=1.0" in str(e.value)
  assert "config.vq.recon_loss='huber'" in str(e.value)
  c = _pixelcnn_config()
  c.pixelcnn.levels, c.pixelcnn.kernel_size = 256, 4
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.validate(c, 1)
  assert "config.data.preprocess='binarize_dynamic'" in str(e.value)
  assert "config.pixelcnn.kernel_size=4" in str(e.value)


def test_pixelcnn_nll_is_exact_for_a_uniform_model_and_falls_with_training(tmp_path):
  exp = experiment.build(_pixelcnn_config(), jax.devices()[:1])
  state = exp.init_state()
  params = exp.family.eval_params(state)
  zero = {"prior": jax.tree.map(jnp.zeros_like, params["prior"])}  # all logits 0
  uniform = evaluation.evaluate(exp, zero, num_examples=0, num_samples=1)
  assert uniform["eval/nll"] == pytest.approx(64 * math.log(2.0), rel=1e-6)
  assert uniform["eval/bits_per_dim"] == pytest.approx(1.0, rel=1e-6)
  loop.train_and_evaluate(_pixelcnn_config(num_steps=150), tmp_path)
  exp, state = restore_run(tmp_path)
  trained = evaluation.evaluate(exp, exp.family.eval_params(state), num_examples=0, num_samples=1)
  assert trained["eval/nll"] < 0.8 * uniform["eval/nll"]


def test_pixelcnn_samples_are_binary_images_and_depend_only_on_their_key():
  exp = experiment.build(_pixelcnn_config(), jax.devices()[:1])
  params = exp.family.eval_params(exp.init_state())
  keys = jax.random.split(jax.random.key(1), 4)
  labels = jnp.zeros((4,), jnp.int32)
  x = np.asarray(exp.family.sample(params, keys, labels))
  assert x.shape == (4, 8, 8, 1) and set(np.unique(x)) <= {0.0, 1.0}
  again = np.asarray(exp.family.sample(params, keys[2:], labels[2:]))
  np.testing.assert_array_equal(x[2:], again)


def _prior_config(first_stage, num_steps=3):
  c = _pixelcnn_config(num_steps=num_steps, family="vqvae_prior")
  c.data.preprocess = "scale_01"
  c.prior.vqvae_workdir = str(first_stage)
  c.evals = "fid_lenet"
  c.eval.sample_examples = c.eval.periodic_sample_examples = 160
  c.eval.feature_net_steps = 40
  return c


def test_prior_trains_over_frozen_first_stage_codes(first_stage, tmp_path):
  first_exp, first_state = restore_run(first_stage)
  first_vars = first_exp.family.eval_params(first_state)
  loop.train_and_evaluate(_prior_config(first_stage), tmp_path)
  exp, state = restore_run(tmp_path)
  # The first stage is copied into the checkpoint bit for bit and never trained.
  jax.tree.map(np.testing.assert_array_equal, state.model_state["vqvae"], first_vars)
  params = exp.family.eval_params(state)
  x = jnp.asarray(exp.dataset.test["image"][:32], jnp.float32) / 255.0
  codes = exp.family.to_grid(params, x)
  np.testing.assert_array_equal(codes, first_exp.family.encode(first_vars, x))
  assert codes.shape == (32, 2, 2)
  # Samples decode prior codes through the first stage's decoder.
  keys = jax.random.split(jax.random.key(0), 8)
  sampled = exp.family.sample_grid(params, keys, jnp.zeros((8,), jnp.int32))
  np.testing.assert_allclose(
    exp.family.sample(params, keys, jnp.zeros((8,), jnp.int32)),
    first_exp.family.decode(first_vars, sampled),
    atol=1e-6,
  )
  metrics = evaluation.evaluate(exp, params, num_examples=0, num_samples=1)
  assert metrics["eval/bits_per_code"] == pytest.approx(
    metrics["eval/nll"] / (4 * math.log(2.0)), rel=1e-6
  )


def test_uniform_prior_draws_every_code_equally(first_stage):
  c = _prior_config(first_stage)
  c.prior.sample_from = "uniform"
  exp = experiment.build(c, jax.devices()[:1])
  grid = exp.family.uniform_grid(jax.random.split(jax.random.key(0), 4000))
  counts = np.bincount(np.asarray(grid).ravel(), minlength=16)
  expected = grid.size / 16
  chi2 = np.sum((counts - expected) ** 2 / expected)
  assert chi2 < 37.7  # 99.9th percentile of chi-square with 15 degrees of freedom


def test_evaluate_uniform_prior_override(first_stage, tmp_path):
  loop.train_and_evaluate(_prior_config(first_stage), tmp_path)
  learned = evaluate_workdir(tmp_path, num_examples=64, num_generated=160)
  assert "eval/nll" in learned and "eval/num_samples" not in learned  # exact: no samples
  uniform = evaluate_workdir(
    tmp_path,
    test_metrics=False,
    num_generated=160,
    overrides=["prior.sample_from=uniform"],
  )
  assert uniform["report"]["overrides"] == {"prior.sample_from": "uniform"}
  assert uniform["eval/fid_lenet"] != learned["eval/fid_lenet"]
  assert uniform["eval/fid_lenet_floor"] == learned["eval/fid_lenet_floor"]


def test_prior_config_errors_name_the_first_stage(tmp_path, first_stage):
  c = _prior_config(tmp_path / "missing")
  with pytest.raises(config_lib.ConfigError, match=r"config.prior.vqvae_workdir=.*missing"):
    experiment.build(c, jax.devices()[:1])
  c = _prior_config(first_stage)
  c.data.preprocess = "binarize_dynamic"
  with pytest.raises(config_lib.ConfigError, match="config.data.preprocess='binarize_dynamic'"):
    experiment.build(c, jax.devices()[:1])
  c = _prior_config("")
  c.prior.sample_from = "gaussian"
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.validate(c, 1)
  assert "config.prior.vqvae_workdir=''" in str(e.value)
  assert "config.prior.sample_from='gaussian'" in str(e.value)


def test_prior_bundle_carries_its_first_stage(first_stage, tmp_path):
  loop.train_and_evaluate(_prior_config(first_stage), tmp_path / "run")
  model = genjax.load(tmp_path / "run")
  x = model.sample(8, seed=4)
  assert x.shape == (8, 8, 8, 1)
  bundle = model.export(tmp_path / "bundle")
  meta = json.loads((bundle / "bundle.json").read_text())
  meta["config"]["prior"]["vqvae_workdir"] = str(tmp_path / "moved away")
  (bundle / "bundle.json").write_text(json.dumps(meta))
  loaded = genjax.load(bundle)
  np.testing.assert_array_equal(loaded.sample(8, seed=4), x)
  uniform = loaded.sample(8, seed=4, sample_from="uniform")
  assert uniform.shape == x.shape and np.abs(uniform - x).max() > 0
  # The first stage itself: code maps and images back.
  vqvae = genjax.load(first_stage)
  images = experiment.build(_prior_config(first_stage), jax.devices()[:1]).dataset.test["image"][:4]
  codes = vqvae.encode(images)
  assert codes.shape == (4, 2, 2) and codes.dtype == np.int32
  assert vqvae.decode(codes).shape == (4, 8, 8, 1)
  with pytest.raises(ValueError, match="discrete codes"):
    vqvae.interpolate(images[:2], images[2:])

"""The GAN family's compiled two-player step, its validation and its resume."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from family_runs import assert_resume_is_bit_identical

from genjax import config as config_lib
from genjax.core import random as genjax_random
from genjax.data import pipeline
from genjax.families import gan as gan_family
from genjax.families.gan import DISCRIMINATOR, GENERATOR
from genjax.run import experiment, steps


def _config(**gan):
  c = config_lib.defaults()
  c.family, c.data.name, c.model.architecture = "gan", "ring8", "mlp"
  c.model.hidden_sizes, c.model.latent_dim = (16, 16), 2
  c.train.batch_size = c.eval.batch_size = 32
  c.gan.g_learning_rate = c.gan.d_learning_rate = 1e-3
  for k, v in gan.items():
    c.gan[k] = v
  return c


def _train(exp, num_steps):
  """Runs ``num_steps`` compiled steps from a fresh state; the metrics of each, on the host."""
  step_fn = exp.parallel.compile(
    steps.make_train_step(exp.family, seed=0, preprocess=exp.config.data.preprocess)
  )
  it = pipeline.make_train_iterator(
    exp.dataset.train, global_batch_size=32, seed=0, minibatches=exp.family.minibatches
  )
  state = exp.parallel.put_replicated(exp.init_state())
  history = []
  for _ in range(num_steps):
    state, metrics = step_fn(state, exp.parallel.put_batch(next(it)))
    history.append(jax.device_get(exp.parallel.get_replicated(metrics)))
  return history


def _step_inputs(exp, seed=0):
  it = pipeline.make_train_iterator(
    exp.dataset.train, global_batch_size=32, seed=seed, minibatches=exp.family.minibatches
  )
  return next(it)


@pytest.mark.parametrize("d_steps", [1, 3])
def test_k_step_scan_equals_k_sequential_updates(d_steps):
  exp = experiment.build(_config(d_steps=d_steps, loss="hinge", r1_weight=1.0), jax.devices()[:1])
  fam, state = exp.family, exp.init_state()
  batch = _step_inputs(exp)
  step_fn = steps.make_train_step(fam, seed=0, preprocess=exp.config.data.preprocess)
  compiled = exp.parallel.compile(step_fn)
  scanned, _ = compiled(exp.parallel.put_replicated(state), exp.parallel.put_batch(batch))
  scanned = exp.parallel.get_replicated(scanned)

  def sequential(state, batch):
    # The same keys the step derives, then one D update per minibatch in a Python loop.
    keys = jax.random.fold_in(genjax_random.stream_key(0, genjax_random.TRAIN_STREAM), state.step)
    index = batch["index"].reshape(32, -1)
    x = batch["points"].reshape(32, -1, 2)
    labels = batch["label"].reshape(32, -1)
    flat_keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(keys, index.reshape(-1))
    model_keys = jax.vmap(lambda k: jax.random.split(k, 2)[1])(flat_keys).reshape(index.shape)
    carry = (state.params[DISCRIMINATOR], state.opt_state[DISCRIMINATOR], {})
    g = (state.params[GENERATOR], {})
    for j in range(d_steps):
      carry, _ = fam._d_update(*g, carry, (x[:, j], labels[:, j], model_keys[:, j]))
    d_params = carry[0]
    g_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(model_keys[:, -1], 1)
    grads = jax.grad(lambda p: fam._g_loss(p, {}, d_params, {}, g_keys, labels[:, -1])[0])(g[0])
    updates, _ = fam.tx_g.update(grads, state.opt_state[GENERATOR], g[0])
    return d_params, optax.apply_updates(g[0], updates)

  fn = exp.parallel.compile(lambda s, b: sequential(s, b))
  d_params, g_params = exp.parallel.get_replicated(
    fn(exp.parallel.put_replicated(state), exp.parallel.put_batch(batch))
  )
  for got, want in (
    (scanned.params[DISCRIMINATOR], d_params),
    (scanned.params[GENERATOR], g_params),
  ):
    jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-7), got, want)
  for player in (GENERATOR, DISCRIMINATOR):  # Both players took a step.
    moved = jax.tree.map(
      lambda a, b: float(jnp.abs(a - b).max()), *(p.params[player] for p in (scanned, state))
    )
    assert max(jax.tree.leaves(moved)) > 1e-4


def test_discriminator_steps_use_distinct_minibatches():
  exp = experiment.build(_config(d_steps=3), jax.devices()[:1])
  batch = _step_inputs(exp)
  assert batch["points"].shape == (32, 3, 2) and batch["index"].shape == (32, 3)
  assert len(np.unique(batch["index"])) == 96
  # Minibatch j of step s is exactly global batch s * k + j of the plain stream.
  plain = pipeline.make_train_iterator(exp.dataset.train, global_batch_size=32, seed=0)
  for j in range(3):
    np.testing.assert_array_equal(batch["points"][:, j], next(plain)["points"])


@pytest.mark.parametrize(
  "overrides,message",
  [
    (dict(loss="wasserstein"), "config.gan.loss='wasserstein'"),
    (dict(d_steps=0), "config.gan.d_steps=0"),
    (dict(loss="wgan", gp_weight=10.0, d_norm="batch"), "d_norm='layer', 'spectral' or 'none'"),
    (dict(conditioning="film"), "config.gan.conditioning='film'"),
  ],
)
def test_invalid_gan_configs_name_the_field(overrides, message):
  with pytest.raises(config_lib.ConfigError, match=message):
    experiment.build(_config(**overrides), jax.devices()[:1])


def test_image_gans_need_dcgan_and_pm1_data():
  c = _config()
  c.data.name, c.model.architecture, c.data.preprocess = "mnist", "mlp", "scale_01"
  with pytest.raises(config_lib.ConfigError) as info:
    config_lib.validate(c, 1)
  assert "use 'dcgan'" in str(info.value) and "use 'scale_pm1'" in str(info.value)


def test_gradient_penalty_and_r1_are_logged_and_finite():
  exp = experiment.build(
    _config(loss="wgan", gp_weight=10.0, r1_weight=1.0, d_steps=2), jax.devices()[:1]
  )
  (metrics,) = _train(exp, 1)
  assert {"gradient_penalty", "r1_penalty", "d_loss", "g_loss"} <= set(metrics)
  assert all(np.isfinite(float(v)) for v in metrics.values())


def test_resumed_gan_run_matches_an_uninterrupted_one(tmp_path, shrink):
  def config(num_steps):
    c = shrink(_config(d_steps=2), num_steps=num_steps)
    c.gan.d_norm, c.train.ema_decay, c.train.checkpoint_every = "batch", 0.9, 2
    c.evals = ""
    return c

  state = assert_resume_is_bit_identical(config, tmp_path)
  assert state.model_state[DISCRIMINATOR]  # BatchNorm statistics are checkpointed


def test_conditional_gan_samples_depend_on_the_label():
  c = _config()
  c.family = "cgan"
  exp = experiment.build(c, jax.devices()[:1])
  params = exp.family.eval_params(exp.init_state())
  keys = jax.random.split(jax.random.key(0), 4)
  a = exp.family.sample(params, keys, jnp.zeros(4, jnp.int32))
  b = exp.family.sample(params, keys, jnp.ones(4, jnp.int32))
  assert a.shape == (4, 2) and float(jnp.abs(a - b).max()) > 1e-4


def test_ema_generator_samples_with_its_own_batchnorm_statistics():
  c = _config()
  c.family, c.data.name, c.data.preprocess = "cgan", "mnist", "scale_pm1"
  c.model.architecture, c.model.latent_dim, c.gan.base_channels = "dcgan", 8, 4
  c.train.ema_decay = 0.9
  exp = experiment.build(c, jax.devices()[:1])
  fam, state = exp.family, exp.init_state()
  # An EMA that differs from the raw generator, as it does during training.
  ema = jax.tree.map(lambda p: 1.5 * p + 0.05, state.params)
  state = state.replace(ema_params=ema)
  params = fam.eval_params(state)
  n = gan_family.STANDING_STATS_EXAMPLES
  keys = jax.random.split(jax.random.key(c.seed), n)
  labels = jnp.arange(n, dtype=jnp.int32) % 10
  # Eval-mode samples of the standing batch = training-mode (batch-statistics) output.
  module = fam.generator.clone(axis_name=None)
  z = jax.vmap(lambda k: jax.random.normal(k, (8,)))(keys)
  want, _ = module.apply(
    {"params": ema[GENERATOR], "batch_stats": state.model_state[GENERATOR]},
    z,
    labels,
    train=True,
    mutable=["batch_stats"],
  )
  got = fam.sample(params, keys, labels)
  np.testing.assert_allclose(got, want, atol=2e-4)
  stale = dict(params, batch_stats=state.model_state)  # the raw generator's statistics
  assert float(jnp.abs(fam.sample(stale, keys, labels) - want).max()) > 1e-2


@pytest.mark.parametrize(
  "overrides,family,message",
  [
    (dict(code_classes=1), "gan", "config.gan.code_classes=1"),
    (dict(code_classes=-2), "gan", "config.gan.code_classes=-2"),
    (dict(code_classes=4), "cgan", "has labels already"),
    (dict(code_classes=4, info_weight=-1.0), "gan", "config.gan.info_weight=-1.0"),
  ],
)
def test_invalid_infogan_configs_name_the_field(overrides, family, message):
  c = _config(**overrides)
  c.family = family
  with pytest.raises(config_lib.ConfigError, match=message):
    config_lib.validate(c, 1)


def test_infogan_head_learns_to_read_back_the_code():
  # The code that G is given must be the one Q is scored against: with any
  # mismatch the head could not beat chance (1/8).
  c = _config(code_classes=8, d_steps=2)
  c.model.hidden_sizes = (32, 32)
  history = _train(experiment.build(c, jax.devices()[:1]), 300)
  first, last = history[0], history[-10:]
  assert abs(float(first["info_loss"]) - np.log(8)) < 0.3  # an untrained head guesses
  assert np.mean([float(m["code_accuracy"]) for m in last]) > 0.6
  assert np.mean([float(m["info_loss"]) for m in last]) < 0.5 * np.log(8)
  assert all(np.isfinite(float(v)) for m in history for v in m.values())


def test_infogan_samples_draw_their_code_from_the_key():
  c = _config(code_classes=4)
  c.data.name, c.data.preprocess = "mnist", "scale_pm1"
  c.model.architecture, c.model.latent_dim, c.gan.base_channels = "dcgan", 8, 4
  exp = experiment.build(c, jax.devices()[:1])
  fam = exp.family
  params = fam.eval_params(exp.init_state())
  keys = jax.random.split(jax.random.key(3), 16)
  labels = jnp.zeros(16, jnp.int32)  # ignored: the model is unconditional
  drawn = fam.sample(params, keys, labels)
  codes = fam._codes(keys)
  assert len(np.unique(np.asarray(codes))) > 1
  np.testing.assert_array_equal(drawn, fam.sample(params, keys, labels, codes))
  other = fam.sample(params, keys, labels, (codes + 1) % 4)
  assert float(jnp.abs(drawn - other).max()) > 1e-4
  pictures = fam.pictures(params, None, jax.random.key(0))
  # 4 code rows of 10 images of 28 px (with 2 px borders), plus the plain grid.
  assert {"samples_by_code", "samples", "interpolations"} <= set(pictures)
  assert pictures["samples_by_code"].shape[0] > pictures["samples_by_code"].shape[1] / 10 * 3

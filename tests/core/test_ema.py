"""The EMA of the parameters is debiased: a normalised exponential average of the steps seen."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import config as config_lib
from genjax.core.train_state import ema_update
from genjax.data import pipeline
from genjax.run import experiment, steps


def _closed_form(history, decay):
  """``sum_i decay^(n-i) p_i / sum_i decay^(n-i)`` in float64."""
  n = len(history)
  weights = decay ** np.arange(n - 1, -1, -1, dtype=np.float64)
  return np.tensordot(weights, np.stack(history).astype(np.float64), axes=1) / weights.sum()


@pytest.mark.parametrize("decay, n", [(0.9, 1), (0.9, 7), (0.999, 3), (0.999, 2500), (0.9999, 40)])
def test_ema_is_the_normalised_exponential_average(decay, n):
  rng = np.random.default_rng(n)
  history = [rng.normal(size=(3,)).astype(np.float32) for _ in range(n)]
  init = np.full((3,), 100.0, np.float32)  # Any weight on the initial value would show.
  update = jax.jit(ema_update, static_argnums=2)
  ema = {"w": jnp.asarray(init)}
  for count, p in enumerate(history, start=1):
    ema = update(ema, {"w": jnp.asarray(p)}, decay, jnp.int32(count))
  np.testing.assert_allclose(ema["w"], _closed_form(history, decay), rtol=2e-4, atol=2e-5)
  if n == 1:  # The first update is the parameters themselves, bit for bit.
    np.testing.assert_array_equal(ema["w"], history[0])


def test_ema_keeps_dtypes_and_decay_zero_returns_the_parameters():
  ema = {"a": jnp.zeros((2,), jnp.bfloat16), "b": jnp.zeros((2,), jnp.float32)}
  params = {"a": jnp.ones((2,), jnp.bfloat16), "b": jnp.ones((2,), jnp.float32)}
  out = ema_update(ema, params, 0.99, jnp.int32(5))
  assert {k: v.dtype for k, v in out.items()} == {"a": jnp.bfloat16, "b": jnp.float32}
  assert ema_update(ema, params, 0.0, jnp.int32(5)) is params


def _config(family):
  c = config_lib.defaults()
  c.family, c.data.name = family, "digits"
  c.model.hidden_sizes, c.model.latent_dim = (16,), 2
  if family == "gan":
    c.data.name, c.model.architecture = "ring8", "mlp"
  c.train.batch_size, c.train.ema_decay = 32, 0.5
  c.gan.g_learning_rate = c.gan.d_learning_rate = 1e-2
  return c


@pytest.mark.parametrize("family", ["vae", "gan"])  # The two train steps that update the EMA.
def test_train_step_counts_updates_for_the_ema(family):
  exp = experiment.build(_config(family), devices=jax.devices()[:1])
  cfg = exp.config
  step_fn = exp.parallel.compile(
    steps.make_train_step(exp.family, seed=cfg.seed, preprocess=cfg.data.preprocess)
  )
  batches = pipeline.make_train_iterator(
    exp.dataset.train, global_batch_size=32, seed=0, minibatches=exp.family.minibatches
  )
  state = exp.parallel.put_replicated(exp.init_state())
  history = []
  for _ in range(3):
    state, _ = step_fn(state, exp.parallel.put_batch(next(batches)))
    host = jax.device_get(exp.parallel.get_replicated(state))
    history.append(host.params)
    want = jax.tree.map(lambda *ps: _closed_form(ps, 0.5), *history)
    jax.tree.map(
      lambda got, w: np.testing.assert_allclose(got, w, rtol=1e-5, atol=1e-6),
      host.ema_params,
      want,
    )

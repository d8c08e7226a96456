"""Tests for genjax.objectives.autoregressive and the raster-order sampler."""

import doctest
import math

import jax
import jax.numpy as jnp
import numpy as np
from scipy import special, stats

from genjax.objectives import autoregressive
from genjax.samplers import autoregressive as ar_sampler


def _rng(seed=0):
  return np.random.default_rng(seed)


def _keys(b, seed=0):
  return jax.random.split(jax.random.key(seed), b)


# ---------------------------------------------------------------------------
# Likelihoods.
# ---------------------------------------------------------------------------


def test_categorical_nll_matches_numpy():
  rng = _rng(0)
  logits = rng.normal(scale=2.0, size=(3, 4, 5, 6))
  targets = rng.integers(0, 6, size=(3, 4, 5))
  got = autoregressive.categorical_nll(jnp.asarray(logits, jnp.float32), jnp.asarray(targets))
  log_p = logits - special.logsumexp(logits, axis=-1, keepdims=True)
  want = -np.take_along_axis(log_p, targets[..., None], -1).reshape(3, -1).sum(1)
  np.testing.assert_allclose(got, want, rtol=1e-5)


def test_bernoulli_nll_equals_two_class_categorical_and_is_stable():
  rng = _rng(1)
  logits = jnp.asarray(rng.normal(scale=3.0, size=(4, 5, 5)), jnp.float32)
  targets = jnp.asarray(rng.integers(0, 2, size=(4, 5, 5)))
  two_class = jnp.stack([jnp.zeros_like(logits), logits], axis=-1)
  np.testing.assert_allclose(
    autoregressive.bernoulli_nll(logits, targets),
    autoregressive.categorical_nll(two_class, targets),
    rtol=1e-5,
  )
  extreme = autoregressive.bernoulli_nll(jnp.array([[100.0, -100.0]]), jnp.array([[0, 1]]))
  np.testing.assert_allclose(extreme, [200.0], rtol=1e-6)


def test_bits_per_dim():
  nll = jnp.array([10.0, 784 * math.log(2.0)])
  np.testing.assert_allclose(
    autoregressive.bits_per_dim(nll, 784), [10.0 / (784 * math.log(2.0)), 1.0], rtol=1e-6
  )


# ---------------------------------------------------------------------------
# Sampler against a hand-built model with known conditionals.
# ---------------------------------------------------------------------------

# A 1x3 grid with V = 3: x0 ~ p0[label], x1 | x0 ~ P1[x0], x2 | x0, x1 ~ P2[x0, x1].
_P0 = np.array([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]])
_P1 = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.3, 0.4, 0.3]])
_P2 = _rng(2).dirichlet(np.ones(3), size=(3, 3))


def _logits_fn(x, labels):
  # Causal by construction: position p reads only x[:, 0, :p].
  x0, x1 = x[:, 0, 0], x[:, 0, 1]
  l0 = jnp.log(jnp.asarray(_P0, jnp.float32))[labels]
  l1 = jnp.log(jnp.asarray(_P1, jnp.float32))[x0]
  l2 = jnp.log(jnp.asarray(_P2, jnp.float32))[x0, x1]
  return jnp.stack([l0, l1, l2], axis=1)[:, None]  # [B, 1, 3, V]


def _chi_square_ok(samples: np.ndarray, probs: np.ndarray) -> None:
  observed = np.bincount(samples, minlength=probs.size)
  expected = probs.ravel() * samples.size
  chi2 = np.sum((observed - expected) ** 2 / expected)
  assert chi2 < stats.chi2.ppf(0.999, probs.size - 1), chi2


def test_sampler_reproduces_the_exact_joint():
  n = 20000
  labels = jnp.asarray(np.repeat([0, 1], n // 2))
  sample = jax.jit(lambda keys, labels: ar_sampler.sample(_logits_fn, (1, 3), keys, labels=labels))
  x = np.asarray(sample(_keys(n), labels))
  assert x.shape == (n, 1, 3) and x.dtype == np.int32
  codes = x[:, 0, 0] * 9 + x[:, 0, 1] * 3 + x[:, 0, 2]
  for label in (0, 1):
    joint = _P0[label][:, None, None] * _P1[:, :, None] * _P2  # [x0, x1, x2]
    _chi_square_ok(codes[np.asarray(labels) == label], joint)


def test_sampler_completion_keeps_prefix_and_samples_the_conditional():
  n = 10000
  init = jnp.zeros((n, 1, 3), jnp.int32).at[:, 0, 0].set(2).at[:, 0, 2].set(1)
  x = np.asarray(
    ar_sampler.sample(
      _logits_fn, (1, 3), _keys(n, 1), labels=jnp.zeros(n, jnp.int32), init=init, start=1
    )
  )
  np.testing.assert_array_equal(x[:, 0, 0], 2)
  joint = _P1[2][:, None] * _P2[2]  # [x1, x2] given x0 = 2
  _chi_square_ok(x[:, 0, 1] * 3 + x[:, 0, 2], joint)
  # start = H * W samples nothing.
  done = ar_sampler.sample(
    _logits_fn, (1, 3), _keys(4), labels=jnp.zeros(4, jnp.int32), init=init[:4], start=3
  )
  np.testing.assert_array_equal(done, init[:4])


def test_sampler_temperature_and_per_example_keys():
  n = 20000
  keys, labels = _keys(n, 4), jnp.ones(n, jnp.int32)
  x = ar_sampler.sample(_logits_fn, (1, 3), keys, labels=labels, temperature=2.0)
  want = special.softmax(np.log(_P0[1]) / 2.0)
  _chi_square_ok(np.asarray(x[:, 0, 0]), want)
  # Example i depends only on keys[i], not on the rest of the batch.
  part = ar_sampler.sample(_logits_fn, (1, 3), keys[5:9], labels=labels[5:9], temperature=2.0)
  np.testing.assert_array_equal(x[5:9], part)


def test_docstring_examples():
  for module in (autoregressive, ar_sampler):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0

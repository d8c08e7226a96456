"""Tests for genjax.core.random (per-example randomness)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.core import random


def _keys(b, seed=0):
  return jax.random.split(jax.random.key(seed), b)


def test_normal_shape_stats_and_row_independence():
  keys = _keys(8)
  z = random.normal(keys, (500, 3))
  assert z.shape == (8, 500, 3) and z.dtype == jnp.float32
  assert np.all(np.isfinite(z))
  assert abs(float(z.mean())) < 0.05 and abs(float(z.std()) - 1.0) < 0.05
  # Row i is exactly jax.random.normal(keys[i]): independent of the batch.
  np.testing.assert_array_equal(z[3], jax.random.normal(keys[3], (500, 3)))
  np.testing.assert_array_equal(random.normal(keys[:2], (500, 3)), z[:2])


def test_uniform_range_and_dtype():
  u = random.uniform(_keys(4), (1000,), minval=-2.0, maxval=3.0, dtype=jnp.bfloat16)
  assert u.shape == (4, 1000) and u.dtype == jnp.bfloat16
  u = np.asarray(u, np.float32)
  assert u.min() >= -2.0 and u.max() <= 3.0
  assert abs(u.mean() - 0.5) < 0.15


def test_bernoulli_per_example_probabilities():
  p = jnp.stack([jnp.full((4000,), 0.1), jnp.full((4000,), 0.7)])
  draws = random.bernoulli(_keys(2), p)
  assert draws.shape == (2, 4000) and draws.dtype == jnp.bool_
  np.testing.assert_allclose(draws.mean(axis=1), [0.1, 0.7], atol=0.03)


def test_randint_range_uniformity_and_row_independence():
  keys = _keys(6000)
  codes = random.randint(keys, 10)
  assert codes.shape == (6000,) and codes.dtype == jnp.int32
  counts = np.bincount(np.asarray(codes), minlength=10)
  assert counts.size == 10 and counts.min() > 0
  # Chi-square with 9 degrees of freedom: 27.9 is its 0.999 quantile.
  assert float(np.sum((counts - 600.0) ** 2 / 600.0)) < 27.9
  assert int(codes[17]) == int(jax.random.randint(keys[17], (), 0, 10))
  np.testing.assert_array_equal(random.randint(keys[:5], 10), codes[:5])


def test_split_layout_and_independence():
  keys = _keys(5)
  parts = random.split(keys, 3)
  assert parts.shape == (3, 5)
  assert jax.dtypes.issubdtype(parts.dtype, jax.dtypes.prng_key)
  for j in range(3):
    np.testing.assert_array_equal(
      jax.random.key_data(parts[j, 2]),
      jax.random.key_data(jax.random.split(keys[2], 3)[j]),
    )
  a, b = random.normal(parts[0], (16,)), random.normal(parts[1], (16,))
  assert not np.allclose(a, b)


def test_fold_in_and_example_keys():
  key = jax.random.key(42)
  idx = jnp.array([7, 3, 1000])
  ek = random.example_keys(key, idx)
  assert ek.shape == (3,)
  for n, i in enumerate([7, 3, 1000]):
    np.testing.assert_array_equal(
      jax.random.key_data(ek[n]), jax.random.key_data(jax.random.fold_in(key, i))
    )
  f1, f2 = random.fold_in(ek, 1), random.fold_in(ek, 2)
  assert f1.shape == (3,)
  assert not np.allclose(random.normal(f1, (8,)), random.normal(f2, (8,)))
  # Same global index -> same noise regardless of its batch position.
  ek2 = random.example_keys(key, jnp.array([1000, 7]))
  np.testing.assert_array_equal(random.normal(ek2, (4,))[0], random.normal(ek, (4,))[2])


def test_fold_in_traced_under_jit():
  keys = _keys(3)
  out = jax.jit(lambda k, j: random.normal(random.fold_in(k, j), (2,)))(keys, 5)
  np.testing.assert_array_equal(out, random.normal(random.fold_in(keys, 5), (2,)))


def test_rejects_legacy_keys():
  legacy = jax.random.split(jax.random.PRNGKey(0), 4)
  with pytest.raises(TypeError, match="typed PRNG key"):
    random.normal(legacy, (2,))

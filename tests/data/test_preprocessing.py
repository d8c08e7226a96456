"""Tests for genjax.data.preprocessing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.data.preprocessing import PREPROCESSORS, preprocess, to_uint8


def _images(b=4, seed=0):
  rng = np.random.default_rng(seed)
  return jnp.asarray(rng.integers(0, 256, (b, 6, 6, 1), dtype=np.uint8))


def _keys(b, seed=0):
  return jax.random.split(jax.random.key(seed), b)


@pytest.mark.parametrize("name", sorted(PREPROCESSORS))
def test_all_ops_float32_finite_and_jittable(name):
  x = _images()
  out = jax.jit(lambda x, k: preprocess(name, x, k))(x, _keys(4))
  assert out.dtype == jnp.float32 and out.shape == x.shape
  assert bool(jnp.isfinite(out).all())


def test_deterministic_scalings():
  x = jnp.array([[0, 127, 255]], jnp.uint8)
  np.testing.assert_allclose(preprocess("scale_01", x, None), [[0, 127 / 255, 1]])
  np.testing.assert_allclose(
    preprocess("scale_pm1", x, None), [[-1, 127 / 127.5 - 1, 1]], atol=1e-6
  )
  np.testing.assert_array_equal(preprocess("none", x, None), [[0.0, 127.0, 255.0]])
  np.testing.assert_array_equal(preprocess("binarize_static", x, None), [[0, 0, 1]])


def test_binarize_static_ignores_keys():
  x = _images()
  a = preprocess("binarize_static", x, _keys(4, 0))
  b = preprocess("binarize_static", x, _keys(4, 1))
  np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(a, (np.asarray(x) > 127.5).astype(np.float32))


def test_binarize_dynamic_mean_matches_intensity():
  x = _images(b=1)
  reps = 4000
  keys = _keys(reps, seed=3)
  batch = jnp.broadcast_to(x, (reps,) + x.shape[1:])
  samples = np.asarray(jax.jit(lambda x, k: preprocess("binarize_dynamic", x, k))(batch, keys))
  assert set(np.unique(samples)) <= {0.0, 1.0}
  p = np.asarray(x[0], np.float64) / 255
  # 5 binomial standard errors, plus slack for p near 0 or 1.
  tol = 5 * np.sqrt(p * (1 - p) / reps) + 1e-3
  assert (np.abs(samples.mean(0) - p) <= tol).all()
  # Pixels 0 and 255 are deterministic.
  assert (samples[:, np.asarray(x[0]) == 0] == 0).all()
  assert (samples[:, np.asarray(x[0]) == 255] == 1).all()


@pytest.mark.parametrize("name", ["binarize_dynamic", "dequantize"])
def test_example_depends_only_on_its_key(name):
  fn = jax.jit(lambda x, k: preprocess(name, x, k))
  x = _images(b=6)
  keys = _keys(6, seed=1)
  full = fn(x, keys)
  # Example 2 alone with its key, and inside a different batch: same output.
  alone = fn(x[2:3], keys[2:3])
  np.testing.assert_array_equal(full[2], alone[0])
  other_keys = jnp.concatenate([jax.random.key(99)[None], keys[1:]])
  mixed = fn(x, other_keys)
  np.testing.assert_array_equal(full[1:], mixed[1:])
  assert not np.array_equal(full[0], mixed[0])
  # Same image, different keys: different noise.
  same = jnp.broadcast_to(x[:1], x.shape)
  out = np.asarray(fn(same, keys))
  assert not np.array_equal(out[0], out[1])


def test_dequantize_bounds():
  x = jnp.tile(jnp.arange(256, dtype=jnp.uint8)[None, :], (64, 1))
  out = np.asarray(jax.jit(lambda x, k: preprocess("dequantize", x, k))(x, _keys(64)))
  lo = np.asarray(x, np.float64) / 256
  assert (out >= lo).all() and (out < lo + 1 / 256).all()
  assert out.max() < 1.0 and out.min() >= 0.0
  # Genuinely continuous: fractional parts are spread over [0, 1).
  frac = out * 256 - np.asarray(x)
  assert 0.45 < frac.mean() < 0.55


def test_unknown_name():
  with pytest.raises(ValueError, match="scale_01"):
    preprocess("bogus", _images(), None)
  with pytest.raises(ValueError, match="binarize_dynamic"):
    to_uint8(jnp.zeros((1, 2)), "bogus")


@pytest.mark.parametrize("name", ["scale_01", "scale_pm1", "dequantize", "none"])
def test_to_uint8_inverts(name):
  x = _images()
  back = to_uint8(preprocess(name, x, _keys(4)), name)
  assert back.dtype == jnp.uint8
  # Dequantization noise adds at most one level.
  assert int(jnp.abs(back.astype(jnp.int32) - x.astype(jnp.int32)).max()) <= 1


def test_to_uint8_clips():
  out = to_uint8(jnp.array([[-3.0, 0.5, 7.0]]), "scale_01")
  np.testing.assert_array_equal(out, [[0, 128, 255]])
  out = to_uint8(jnp.array([[-3.0, 0.0, 7.0]]), "scale_pm1")
  np.testing.assert_array_equal(out, [[0, 128, 255]])

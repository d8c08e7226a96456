"""Tests for genjax.objectives.ae (reconstruction losses and DAE corruptions)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from genjax.objectives import ae


def _keys(b, seed=0):
  return jax.random.split(jax.random.key(seed), b)


def _images(shape, seed=0):
  # Strictly inside (0.1, 0.9) so pixels set to 0 or 1 are unambiguous.
  return jnp.asarray(np.random.default_rng(seed).uniform(0.1, 0.9, size=shape), jnp.float32)


def test_l2_reconstruction_error():
  rng = np.random.default_rng(1)
  x, x_hat = rng.normal(size=(3, 4, 5)), rng.normal(size=(3, 4, 5))
  f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
  got = ae.reconstruction_error(f32(x), f32(x_hat), "l2")
  np.testing.assert_allclose(got, ((x - x_hat) ** 2).reshape(3, -1).sum(1), rtol=1e-5)


def test_bce_reconstruction_error():
  rng = np.random.default_rng(2)
  x, logits = rng.uniform(size=(3, 6)), rng.normal(scale=4.0, size=(3, 6))
  p = special.expit(logits)
  want = -(x * np.log(p) + (1 - x) * np.log1p(-p)).sum(1)
  f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
  got = ae.reconstruction_error(f32(x), f32(logits), "bce")
  assert np.all(np.isfinite(got))
  np.testing.assert_allclose(got, want, rtol=1e-5)
  extreme = ae.reconstruction_error(jnp.array([[0.0, 1.0]]), jnp.array([[100.0, -100.0]]), "bce")
  np.testing.assert_allclose(extreme, [200.0], rtol=1e-6)
  with pytest.raises(ValueError, match="allowed"):
    ae.reconstruction_error(jnp.ones((1, 2)), jnp.ones((1, 2)), "l1")


def test_mask_fraction():
  x = _images((4, 20000))
  out = ae.corrupt("mask", _keys(4), x, 0.3)
  dropped = np.asarray(out == 0)
  np.testing.assert_allclose(dropped.mean(axis=1), 0.3, atol=0.02)
  np.testing.assert_array_equal(np.asarray(out)[~dropped], np.asarray(x)[~dropped])


def test_salt_pepper_values_and_fraction():
  x = _images((4, 20000), seed=3)
  out = np.asarray(ae.corrupt("salt_pepper", _keys(4, 1), x, 0.2))
  changed = out != np.asarray(x)
  assert set(np.unique(out[changed])) == {0.0, 1.0}
  np.testing.assert_allclose(changed.mean(axis=1), 0.2, atol=0.02)
  np.testing.assert_allclose((out[changed] == 1.0).mean(), 0.5, atol=0.02)


def test_gaussian_noise_std_no_clipping():
  x = _images((4, 20000), seed=4)
  out = ae.corrupt("gaussian", _keys(4, 2), x, 0.5)
  noise = np.asarray(out - x)
  assert abs(noise.mean()) < 0.02
  np.testing.assert_allclose(noise.std(axis=1), 0.5, rtol=0.03)
  assert out.min() < 0.0 and out.max() > 1.0


def test_none_is_identity():
  x = _images((2, 5))
  np.testing.assert_array_equal(ae.corrupt("none", _keys(2), x, 0.7), x)


@pytest.mark.parametrize("name", ["gaussian", "mask", "salt_pepper"])
def test_per_example_key_independence(name):
  x = _images((3, 8, 8, 1), seed=5)
  keys = _keys(3, 7)
  out = ae.corrupt(name, keys, x, 0.4)
  assert out.shape == x.shape and out.dtype == x.dtype and np.all(np.isfinite(out))
  other = ae.corrupt(name, keys.at[1].set(jax.random.key(99)), x, 0.4)
  np.testing.assert_array_equal(out[0], other[0])
  np.testing.assert_array_equal(out[2], other[2])
  assert not np.array_equal(out[1], other[1])
  # Splitting the batch (as across devices) does not change any example's noise.
  halves = jnp.concatenate(
    [ae.corrupt(name, keys[:1], x[:1], 0.4), ae.corrupt(name, keys[1:], x[1:], 0.4)]
  )
  np.testing.assert_array_equal(halves, out)


def test_corruption_jittable_with_traced_level():
  x = _images((2, 16), seed=6)
  fn = jax.jit(lambda k, x, level: ae.corrupt("mask", k, x, level))
  np.testing.assert_array_equal(fn(_keys(2), x, 0.5), ae.corrupt("mask", _keys(2), x, 0.5))


def test_unknown_corruption_names_allowed():
  with pytest.raises(ValueError, match=r"blur.*gaussian.*mask.*none.*salt_pepper"):
    ae.corrupt("blur", _keys(1), jnp.ones((1, 2)), 0.1)

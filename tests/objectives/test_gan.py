"""Tests for genjax.objectives.gan against float64 numpy formulas and closed forms."""

import doctest
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.objectives import gan

_NAMES = ("minimax", "non_saturating", "lsgan", "hinge", "wgan")


def _rng(seed=0):
  return np.random.default_rng(seed)


def _f32(a):
  return jnp.asarray(a, jnp.float32)


# Independent float64 references, written from the formulas in probability space.
def _log_d(x):
  return np.log(1.0 / (1.0 + np.exp(-x)))


def _log_one_minus_d(x):
  return np.log(1.0 - 1.0 / (1.0 + np.exp(-x)))


_REFERENCE = {
  "minimax": (
    lambda r, f: -_log_d(r) - _log_one_minus_d(f),
    lambda f: _log_one_minus_d(f),
  ),
  "non_saturating": (
    lambda r, f: -_log_d(r) - _log_one_minus_d(f),
    lambda f: -_log_d(f),
  ),
  "lsgan": (
    lambda r, f: 0.5 * (r - 1.0) ** 2 + 0.5 * f**2,
    lambda f: 0.5 * (f - 1.0) ** 2,
  ),
  "hinge": (
    lambda r, f: np.maximum(0.0, 1.0 - r) + np.maximum(0.0, 1.0 + f),
    lambda f: -f,
  ),
  "wgan": (lambda r, f: f - r, lambda f: -f),
}

_R = np.array([0.0, 2.0, -1.0])
_F = np.array([0.0, -3.0, 1.0])


# ---------------------------------------------------------------------------
# Loss values.
# ---------------------------------------------------------------------------


class GanVariantsTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_losses_match_float64_formulas(self):
    assert sorted(gan.LOSSES) == sorted(_NAMES)
    for name in _NAMES:
      loss = gan.get_loss(name)
      d_loss = self.variant(loss.discriminator)(_f32(_R), _f32(_F))
      g_loss = self.variant(loss.generator)(_f32(_F))
      chex.assert_shape((d_loss, g_loss), (3,))
      chex.assert_tree_all_finite((d_loss, g_loss))
      want_d, want_g = _REFERENCE[name]
      np.testing.assert_allclose(d_loss, want_d(_R, _F), rtol=1e-6, atol=1e-6, err_msg=name)
      np.testing.assert_allclose(g_loss, want_g(_F), rtol=1e-6, atol=1e-6, err_msg=name)

  @chex.variants(with_jit=True, without_jit=True)
  def test_minimax_value_is_negated_discriminator_loss(self):
    value = self.variant(gan.minimax_value)(_f32(_R), _f32(_F))
    np.testing.assert_allclose(value, _log_d(_R) + _log_one_minus_d(_F), rtol=1e-6)
    np.testing.assert_allclose(value, -gan.minimax_discriminator_loss(_f32(_R), _f32(_F)))

  @chex.variants(with_jit=True, without_jit=True)
  def test_gradient_penalty_linear_critic_on_images(self):
    rng = _rng(1)
    b = 5
    w = _f32(rng.normal(scale=0.4, size=(4, 4, 1)))
    critic = lambda x: jnp.sum(x * w, axis=(1, 2, 3)) + 0.7
    real, fake = (_f32(rng.normal(size=(b, 4, 4, 1))) for _ in range(2))
    alpha = _f32(rng.uniform(size=b))
    gp = self.variant(lambda r, f, a: gan.gradient_penalty(critic, r, f, a))(real, fake, alpha)
    chex.assert_shape(gp, (b,))
    want = (np.linalg.norm(np.asarray(w, np.float64)) - 1.0) ** 2
    np.testing.assert_allclose(gp, np.full(b, want), rtol=1e-5)


def test_p_equals_q_gives_minus_log4():
  value = gan.minimax_value(jnp.zeros(3), jnp.zeros(3))
  np.testing.assert_allclose(value, np.full(3, -math.log(4.0)), rtol=1e-7)


def test_optimal_discriminator_attains_minus_log4_plus_2jsd():
  # Empirical distributions on 3 points: the batch holds each point in proportion
  # to p (real) and q (fake), so batch means are exact expectations.
  p, q = np.array([4, 2, 2]) / 8.0, np.array([1, 3, 4]) / 8.0
  real_idx, fake_idx = np.repeat(np.arange(3), [4, 2, 2]), np.repeat(np.arange(3), [1, 3, 4])
  d_star_logits = _f32(np.log(p) - np.log(q))  # logit(p / (p + q))

  def value(table):
    return gan.minimax_value(table[real_idx], table[fake_idx]).mean()

  m = 0.5 * (p + q)
  jsd = 0.5 * np.sum(p * np.log(p / m)) + 0.5 * np.sum(q * np.log(q / m))
  v, grad = jax.value_and_grad(value)(d_star_logits)
  np.testing.assert_allclose(v, -math.log(4.0) + 2.0 * jsd, rtol=1e-6)
  np.testing.assert_allclose(grad, np.zeros(3), atol=1e-6)  # stationary ...
  for delta in _rng(2).normal(scale=0.3, size=(4, 3)):
    assert value(d_star_logits + _f32(delta)) < v  # ... and a maximum.
  loss = gan.minimax_discriminator_loss(d_star_logits[real_idx], d_star_logits[fake_idx])
  np.testing.assert_allclose(loss.mean(), -v, rtol=1e-6)


# ---------------------------------------------------------------------------
# Sign conventions and stability.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", _NAMES)
def test_sign_conventions(name):
  # Logits inside every loss's informative region (hinge margin, LSGAN targets).
  rng = _rng(3)
  r, f = _f32(rng.uniform(-0.9, 0.9, size=6)), _f32(rng.uniform(0.1, 0.9, size=6))
  loss = gan.get_loss(name)
  g_real, g_fake = jax.grad(lambda r, f: loss.discriminator(r, f).sum(), argnums=(0, 1))(r, f)
  g_gen = jax.grad(lambda f: loss.generator(f).sum())(f)
  assert np.all(g_real < 0) and np.all(g_fake > 0) and np.all(g_gen < 0), name


def test_saturating_generator_gradient_vanishes_non_saturating_does_not():
  f = jnp.array([-10.0])
  g_sat = jax.grad(lambda f: gan.get_loss("minimax").generator(f).sum())(f)
  g_ns = jax.grad(lambda f: gan.get_loss("non_saturating").generator(f).sum())(f)
  assert abs(float(g_sat[0])) < 1e-4  # -sigmoid(-10) ~ -4.5e-5
  assert abs(float(g_ns[0])) > 0.99  # -sigmoid(10) ~ -1
  # Both losses share their fixed point: the gradients agree at D = 1/2.
  g0 = [
    jax.grad(lambda f, n=n: gan.get_loss(n).generator(f).sum())(jnp.zeros(1)) for n in _NAMES[:2]
  ]
  np.testing.assert_allclose(g0[0], g0[1])


@pytest.mark.parametrize("name", _NAMES)
def test_extreme_logits_finite(name):
  r = jnp.array([1e4, -1e4, 1e4, -1e4, 3.0])
  f = jnp.array([1e4, 1e4, -1e4, -1e4, -2.0])
  loss = gan.get_loss(name)
  values = (loss.discriminator(r, f), loss.generator(f), gan.minimax_value(r, f))
  grads = (
    jax.grad(lambda r, f: loss.discriminator(r, f).sum(), argnums=(0, 1))(r, f),
    jax.grad(lambda f: loss.generator(f).sum())(f),
    jax.grad(lambda r, f: gan.minimax_value(r, f).sum(), argnums=(0, 1))(r, f),
  )
  chex.assert_tree_all_finite((values, grads))


def test_get_loss_unknown_name_lists_allowed():
  with pytest.raises(ValueError, match="allowed") as err:
    gan.get_loss("wgan_gp")
  for name in _NAMES:
    assert name in str(err.value)


# ---------------------------------------------------------------------------
# Gradient penalties.
# ---------------------------------------------------------------------------


def _linear(w, b=0.0):
  return lambda x: x @ w + b


def test_gradient_penalty_linear_critic_any_alpha():
  rng = _rng(4)
  w = _f32(rng.normal(scale=0.15, size=5))
  want = (np.linalg.norm(np.asarray(w, np.float64)) - 1.0) ** 2
  assert want > 0.1
  for seed in range(3):
    r = np.random.default_rng(10 + seed)
    real, fake = _f32(r.normal(size=(4, 5))), _f32(r.normal(scale=3.0, size=(4, 5)))
    alpha = _f32(np.array([0.0, 1.0, r.uniform(), r.uniform()]))
    gp = gan.gradient_penalty(_linear(w, -0.4), real, fake, alpha)
    np.testing.assert_allclose(gp, np.full(4, want), rtol=1e-5)
  # Unit-norm critic: penalty 0. The safe norm adds no eps, so only float32
  # rounding of ||w|| (~1e-7, squared) remains.
  unit = w / jnp.linalg.norm(w)
  gp = gan.gradient_penalty(_linear(unit), real, fake, alpha)
  np.testing.assert_allclose(gp, np.zeros(4), atol=1e-12)


def test_gradient_penalty_quadratic_critic_checks_interpolation():
  # critic(x) = 1/2 ||x||^2 has gradient x_hat itself.
  rng = _rng(5)
  real, fake = rng.normal(size=(4, 3, 2)), rng.normal(scale=0.5, size=(4, 3, 2))
  alpha = rng.uniform(size=4)
  critic = lambda x: 0.5 * jnp.sum(jnp.square(x), axis=(1, 2))
  gp = gan.gradient_penalty(critic, _f32(real), _f32(fake), _f32(alpha))
  x_hat = alpha[:, None, None] * real + (1.0 - alpha[:, None, None]) * fake
  want = (np.linalg.norm(x_hat.reshape(4, -1), axis=1) - 1.0) ** 2
  np.testing.assert_allclose(gp, want, rtol=1e-5, atol=1e-7)


def test_gradient_penalty_parameter_gradient_matches_closed_form():
  # For a linear critic the penalty is (||w|| - 1)^2, so d/dw = 2 (||w|| - 1) w / ||w||.
  rng = _rng(6)
  w = _f32(rng.normal(size=3))
  real, fake, alpha = _f32(rng.normal(size=(2, 3))), _f32(rng.normal(size=(2, 3))), _f32([0.2, 0.6])
  g = jax.grad(lambda w: gan.gradient_penalty(_linear(w), real, fake, alpha).mean())(w)
  w64 = np.asarray(w, np.float64)
  norm = np.linalg.norm(w64)
  np.testing.assert_allclose(g, 2.0 * (norm - 1.0) * w64 / norm, rtol=1e-5)


def test_gradient_penalty_zero_input_gradient_is_finite():
  rng = _rng(7)
  real, fake, alpha = (
    _f32(rng.normal(size=(3, 4))),
    _f32(rng.normal(size=(3, 4))),
    _f32([0.1, 0.5, 0.9]),
  )
  # The hazard being guarded against: the plain norm's gradient at 0 is NaN.
  assert np.isnan(jax.grad(jnp.linalg.norm)(jnp.zeros(4))).any()

  def penalty(params):
    w, c = params
    critic = lambda x: x @ w + c * jnp.ones(x.shape[0])  # w = 0: zero input gradient
    return gan.gradient_penalty(critic, real, fake, alpha)

  params = (jnp.zeros(4), jnp.float32(1.5))
  gp = penalty(params)
  np.testing.assert_allclose(gp, np.ones(3), rtol=0)
  grads = jax.jit(jax.grad(lambda p: penalty(p).sum()))(params)
  chex.assert_tree_all_finite(grads)
  # A critic that ignores its input entirely.
  gp, g_c = jax.value_and_grad(
    lambda c: gan.gradient_penalty(
      lambda x: c * jnp.sum(0.0 * x, axis=1) + c, real, fake, alpha
    ).sum()
  )(jnp.float32(2.0))
  np.testing.assert_allclose(gp, 3.0)
  chex.assert_tree_all_finite(g_c)


def test_gradient_penalty_rejects_bad_shapes():
  x = _f32(_rng(8).normal(size=(3, 2)))
  with pytest.raises(ValueError, match="per-example scores"):
    gan.gradient_penalty(lambda x: x @ jnp.ones((2, 1)), x, -x, jnp.full(3, 0.5))
  with pytest.raises(ValueError, match="alpha"):
    gan.gradient_penalty(_linear(jnp.ones(2)), x, -x, jnp.full((3, 1), 0.5))


def test_r1_penalty():
  rng = _rng(9)
  w = _f32(rng.normal(size=(3, 2)))
  real = _f32(rng.normal(size=(5, 3, 2)))
  r1 = jax.jit(lambda x: gan.r1_penalty(lambda x: jnp.sum(x * w, axis=(1, 2)) - 1.0, x))(real)
  chex.assert_shape(r1, (5,))
  np.testing.assert_allclose(r1, np.full(5, np.sum(np.asarray(w, np.float64) ** 2)), rtol=1e-5)
  # Quadratic critic: gradient x, so R1 = ||x||^2 per example.
  r1 = gan.r1_penalty(lambda x: 0.5 * jnp.sum(jnp.square(x), axis=(1, 2)), real)
  np.testing.assert_allclose(r1, np.sum(np.asarray(real) ** 2, axis=(1, 2)), rtol=1e-5)
  g = jax.grad(lambda w: gan.r1_penalty(_linear(w), real[:, :, 0]).sum())(jnp.zeros(3))
  chex.assert_tree_all_finite(g)


def test_info_code_loss_is_the_cross_entropy_of_the_code():
  rng = _rng(11)
  logits = _f32(rng.normal(size=(6, 5)) * 3.0)
  codes = jnp.asarray(rng.integers(0, 5, size=6), jnp.int32)
  got = jax.jit(gan.info_code_loss)(logits, codes)
  chex.assert_shape(got, (6,))
  l64 = np.asarray(logits, np.float64)
  want = np.log(np.exp(l64).sum(-1)) - l64[np.arange(6), np.asarray(codes)]
  np.testing.assert_allclose(got, want, rtol=1e-5)
  # A head that is sure of the right code pays nothing, the MI bound log K - CE is
  # then log K, and it never exceeds log K.
  sure = 50.0 * jax.nn.one_hot(codes, 5)
  np.testing.assert_allclose(gan.info_code_loss(sure, codes), 0.0, atol=1e-6)
  assert float(math.log(5) - got.mean()) <= math.log(5)
  # Extreme wrong logits stay finite, and so do their gradients.
  wrong = -1e4 * jax.nn.one_hot(codes, 5)
  g = jax.grad(lambda z: gan.info_code_loss(z, codes).sum())(wrong)
  chex.assert_tree_all_finite((gan.info_code_loss(wrong, codes), g))
  with pytest.raises(ValueError, match="code_logits"):
    gan.info_code_loss(logits[:, 0], codes)


def test_docstring_examples():
  result = doctest.testmod(gan, optionflags=doctest.NORMALIZE_WHITESPACE)
  assert result.attempted > 0 and result.failed == 0

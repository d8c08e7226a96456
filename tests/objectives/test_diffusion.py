"""Tests for genjax.objectives.diffusion against float64 closed forms and scipy."""

import doctest
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from genjax.objectives import diffusion as dm


def _keys(b, seed=0):
  return jax.random.split(jax.random.key(seed), b)


def _rng(seed=0):
  return np.random.default_rng(seed)


def _f32(a):
  return jnp.asarray(a, jnp.float32)


_T = 1000
_LINEAR = dm.make_schedule(dm.linear_betas(_T))
_BETAS64 = np.linspace(1e-4, 0.02, _T)  # the paper's schedule, written out independently
_AC64 = np.cumprod(1.0 - _BETAS64)


def _pixels(rng, shape):
  """Random 8-bit images scaled to [-1, 1]."""
  return rng.integers(0, 256, size=shape) / 127.5 - 1.0


# ---------------------------------------------------------------------------
# Schedules.
# ---------------------------------------------------------------------------


def test_linear_schedule_final_alpha_bar():
  alpha_bar_T = math.prod(1.0 - (1e-4 + (0.02 - 1e-4) * i / 999) for i in range(1000))
  assert f"{alpha_bar_T:.3g}" == "4.04e-05"
  np.testing.assert_allclose(alpha_bar_T, 4.0358e-5, rtol=2e-4)
  np.testing.assert_allclose(_LINEAR.alphas_cumprod[-1], alpha_bar_T, rtol=1e-5)
  np.testing.assert_allclose(dm.linear_betas(_T), _BETAS64, rtol=1e-12)
  assert dm.linear_betas(_T).dtype == np.float64


def test_cosine_schedule_matches_direct_evaluation():
  num_steps, s = 200, 0.008
  f = lambda t: np.cos((t / num_steps + s) / (1 + s) * np.pi / 2) ** 2  # noqa: E731
  betas = dm.cosine_betas(num_steps)
  assert betas.dtype == np.float64 and betas.shape == (num_steps,)
  # Only the last step hits the clip (f(T) is 0, so its raw β is 1).
  assert betas[-1] == 0.999 and np.all(betas[:-1] < 0.999) and np.all(betas > 0)
  ac = np.cumprod(1.0 - betas)
  steps = np.arange(1, num_steps)
  np.testing.assert_allclose(ac[:-1], f(steps) / f(0), rtol=1e-10)
  np.testing.assert_allclose(ac[-1], f(num_steps - 1) / f(0) * (1 - 0.999), rtol=1e-10)
  np.testing.assert_allclose(dm.make_betas("cosine", num_steps), betas)
  np.testing.assert_allclose(dm.make_betas("linear", 10, 0.1, 0.2), np.linspace(0.1, 0.2, 10))
  with pytest.raises(ValueError, match="allowed.*linear.*cosine"):
    dm.make_betas("quadratic", 10)


def test_make_schedule_constants_and_pytree():
  betas = dm.cosine_betas(50)
  sched = dm.make_schedule(betas)
  assert sched.num_steps == 50
  for leaf in jax.tree.leaves(sched):
    assert leaf.shape == (50,) and leaf.dtype == jnp.float32
  chex.assert_tree_all_finite(sched)
  ac = np.cumprod(1.0 - betas)
  ac_prev = np.concatenate([[1.0], ac[:-1]])
  np.testing.assert_allclose(sched.alphas_cumprod_prev, ac_prev, rtol=1e-6)
  np.testing.assert_allclose(sched.sqrt_recipm1_alphas_cumprod, np.sqrt((1 - ac) / ac), rtol=1e-5)
  var = betas * (1 - ac_prev) / (1 - ac)
  assert sched.posterior_variance[0] == 0.0
  np.testing.assert_allclose(sched.posterior_log_variance_clipped[0], np.log(var[1]), rtol=1e-6)
  np.testing.assert_allclose(sched.posterior_log_variance_clipped[1:], np.log(var[1:]), rtol=1e-5)
  # Usable as a jit argument (pytree) with a static number of steps.
  mean = jax.jit(lambda s: s.betas.sum() / s.num_steps)(sched)
  np.testing.assert_allclose(mean, betas.mean(), rtol=1e-5)


@pytest.mark.parametrize(
  "betas,match",
  [
    (np.full((3, 2), 0.1), "1-D"),
    (np.array([0.1]), "at least 2"),
    (np.array([0.1, 0.0]), r"\(0, 1\]"),
    (np.array([0.1, 1.2]), r"\(0, 1\]"),
    (np.array([0.1, np.nan]), r"\(0, 1\]"),
  ],
)
def test_make_schedule_rejects_bad_betas(betas, match):
  with pytest.raises(ValueError, match=match):
    dm.make_schedule(betas)


def test_extract_shapes():
  got = dm.extract(_LINEAR.betas, jnp.array([0, 999, 5]), 4)
  chex.assert_shape(got, (3, 1, 1, 1))
  np.testing.assert_allclose(got.ravel(), _BETAS64[[0, 999, 5]], rtol=1e-6)
  with pytest.raises(ValueError, match=r"\[B\]"):
    dm.extract(_LINEAR.betas, jnp.array(3), 2)


def test_prior_kl_is_negligible_for_linear_schedule():
  x0 = _f32(_pixels(_rng(1), (4, 3, 8, 8)))
  kl = dm.prior_kl(_LINEAR, x0)
  chex.assert_shape(kl, (4,))
  chex.assert_tree_all_finite(kl)
  per_dim = np.asarray(kl) / (3 * 8 * 8)
  assert np.all(per_dim < 1e-4) and np.all(per_dim > -1e-7)
  # Closed form KL(N(√ᾱ x, 1 - ᾱ) || N(0, 1)) in float64.
  a = _AC64[-1]
  want = 0.5 * (-np.log1p(-a) - a + a * np.square(np.asarray(x0, np.float64))).sum((1, 2, 3))
  np.testing.assert_allclose(kl, want, rtol=2e-3)


# ---------------------------------------------------------------------------
# Forward process, posterior and parameterizations.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("t", [1, 2, 37, 500, _T - 1])
def test_q_posterior_matches_product_of_gaussians(t):
  rng = _rng(t)
  x0, x_t = rng.uniform(-1, 1, size=(3, 5)), rng.normal(size=(3, 5))
  # q(x_{t-1} | x0) = N(√ᾱ_{t-1} x0, 1 - ᾱ_{t-1}) times q(x_t | x_{t-1}) = N(√α_t x_{t-1}, β_t).
  ac_prev, alpha, beta = _AC64[t - 1], 1.0 - _BETAS64[t], _BETAS64[t]
  precision = 1.0 / (1.0 - ac_prev) + alpha / beta
  var = 1.0 / precision
  mean = var * (np.sqrt(ac_prev) * x0 / (1.0 - ac_prev) + np.sqrt(alpha) * x_t / beta)
  got_mean, got_var, got_log_var = dm.q_posterior(_LINEAR, _f32(x0), _f32(x_t), jnp.full((3,), t))
  chex.assert_shape((got_var, got_log_var), (3, 1))
  np.testing.assert_allclose(got_mean, mean, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(got_var, np.full((3, 1), var), rtol=1e-5)
  np.testing.assert_allclose(got_log_var, np.full((3, 1), np.log(var)), rtol=1e-5)


def test_q_posterior_at_first_step_is_the_data():
  x0 = _f32(_rng(2).uniform(-1, 1, size=(2, 3)))
  x_t = _f32(_rng(3).normal(size=(2, 3)))
  mean, var, log_var = dm.q_posterior(_LINEAR, x0, x_t, jnp.zeros((2,), jnp.int32))
  np.testing.assert_allclose(mean, x0, rtol=1e-6, atol=1e-7)
  np.testing.assert_array_equal(var, 0.0)
  assert np.all(np.isfinite(log_var))


def test_q_sample_and_q_mean_variance():
  rng = _rng(4)
  x0, eps = _f32(rng.uniform(-1, 1, (4, 2, 3))), _f32(rng.normal(size=(4, 2, 3)))
  t = jnp.array([0, 10, 500, 999])
  a = _AC64[np.asarray(t)][:, None, None]
  want = np.sqrt(a) * np.asarray(x0) + np.sqrt(1 - a) * np.asarray(eps)
  np.testing.assert_allclose(dm.q_sample(_LINEAR, x0, t, eps), want, rtol=1e-5, atol=1e-6)
  mean, var, log_var = dm.q_mean_variance(_LINEAR, x0, t)
  np.testing.assert_allclose(mean, np.sqrt(a) * np.asarray(x0), rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(var, 1 - a, rtol=1e-4)
  np.testing.assert_allclose(log_var, np.log1p(-a), rtol=1e-4)


def test_conversions_invert_each_other():
  rng = _rng(5)
  b = 64
  x0, eps = _f32(rng.uniform(-1, 1, (b, 3, 2))), _f32(rng.normal(size=(b, 3, 2)))
  t = jnp.asarray(np.concatenate([[0, _T - 1], rng.integers(0, _T, b - 2)]), jnp.int32)
  x_t = dm.q_sample(_LINEAR, x0, t, eps)
  v = dm.v_from_x0_eps(_LINEAR, t, x0, eps)
  a = _AC64[np.asarray(t)][:, None, None]
  want_v = np.sqrt(a) * np.asarray(eps) - np.sqrt(1 - a) * np.asarray(x0)
  np.testing.assert_allclose(v, want_v, rtol=1e-5, atol=1e-6)
  close = lambda got, want: np.testing.assert_allclose(got, want, atol=2e-4)  # noqa: E731
  close(dm.x0_from_eps(_LINEAR, x_t, t, eps), x0)
  close(dm.eps_from_x0(_LINEAR, x_t, t, x0), eps)
  close(dm.x0_from_v(_LINEAR, x_t, t, v), x0)
  close(dm.eps_from_v(_LINEAR, x_t, t, v), eps)
  for param, output in (("eps", eps), ("x0", x0), ("v", v)):
    x0_hat, eps_hat = dm.predict_x0_eps(_LINEAR, param, x_t, t, output)
    close(x0_hat, x0)
    close(eps_hat, eps)
    close(dm.training_target(_LINEAR, param, x0, eps, t), output)
  with pytest.raises(ValueError, match="allowed"):
    dm.predict_x0_eps(_LINEAR, "score", x_t, t, eps)


def test_snr_matches_closed_form():
  t = jnp.array([0, 1, 250, 999])
  a = _AC64[np.asarray(t)]
  np.testing.assert_allclose(dm.snr(_LINEAR, t), a / (1 - a), rtol=1e-5)


# ---------------------------------------------------------------------------
# Densities.
# ---------------------------------------------------------------------------


def test_normal_kl_matches_closed_form():
  rng = _rng(6)
  m1, m2 = rng.normal(size=(2, 7))
  lv1, lv2 = rng.uniform(-3, 2, size=(2, 7))
  v1, v2 = np.exp(lv1), np.exp(lv2)
  want = 0.5 * (np.log(v2 / v1) + (v1 + (m1 - m2) ** 2) / v2 - 1.0)
  np.testing.assert_allclose(dm.normal_kl(*map(_f32, (m1, lv1, m2, lv2))), want, rtol=1e-5)
  # Nearly equal variances: KL ≈ d²/4 must not be lost to cancellation.
  np.testing.assert_allclose(dm.normal_kl(0.0, 1e-3, 0.0, 0.0), 0.25e-6, rtol=1e-2)


_GRID = np.linspace(-1.0, 1.0, 256)
_EDGES = np.concatenate([[-np.inf], (_GRID[:-1] + _GRID[1:]) / 2, [np.inf]])


@pytest.mark.parametrize("mean", [-1.0, -0.9995, 0.0, 0.37, 0.9995, 1.0])
def test_discretized_gaussian_sums_to_one_and_matches_scipy(mean):
  log_scales = np.array([-9.0, -5.0, -3.0, -1.0, 0.0, 2.0])
  x = _f32(np.broadcast_to(_GRID[None, :], (6, 256)))
  lp = dm.discretized_gaussian_log_likelihood(x, mean, _f32(log_scales)[:, None])
  chex.assert_shape(lp, (6, 256))
  chex.assert_tree_all_finite(lp)
  probs = np.exp(np.asarray(lp, np.float64))
  np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
  for row, ls in zip(probs, log_scales):
    want = np.diff(stats.norm.cdf(_EDGES, mean, np.exp(ls)))
    np.testing.assert_allclose(row, want, atol=2e-6)


def test_discretized_gaussian_tails_and_extremes_are_finite():
  # Bins many standard deviations away: compare log-probabilities with scipy's logcdf.
  x = _f32(_GRID[[1, 40, 128, 200, 220]])[None]
  mean, log_scale = 0.8, math.log(0.02)
  lp = dm.discretized_gaussian_log_likelihood(x, mean, log_scale)
  sd = 0.02
  lo = (np.asarray(x[0], np.float64) - mean - 1 / 255) / sd
  hi = lo + 2 / 255 / sd
  # log(Φ(hi) - Φ(lo)) = logΦ(hi) + log1p(-exp(logΦ(lo) - logΦ(hi))); all bins lie below the mean.
  want = stats.norm.logcdf(hi) + np.log1p(-np.exp(stats.norm.logcdf(lo) - stats.norm.logcdf(hi)))
  np.testing.assert_allclose(lp[0], want, rtol=1e-4)
  x = _f32(np.tile(_GRID[[0, 1, 127, 254, 255]], (4, 1)))
  means = _f32([[-50.0], [50.0], [0.99], [-1.0]])
  log_scales = _f32([[-20.0], [6.0], [-15.0], [10.0]])
  f = lambda m, s: dm.discretized_gaussian_log_likelihood(x, m, s).sum()  # noqa: E731
  value, grads = jax.jit(jax.value_and_grad(f, argnums=(0, 1)))(means, log_scales)
  chex.assert_tree_all_finite((value, grads))


# ---------------------------------------------------------------------------
# Variational bound and losses.
# ---------------------------------------------------------------------------


def _noised(seed, b=6, shape=(2, 3)):
  rng = _rng(seed)
  x0 = _f32(_pixels(rng, (b,) + shape))
  eps = _f32(rng.normal(size=(b,) + shape))
  t = jnp.asarray(np.concatenate([[0, 1, _T - 1], rng.integers(2, _T - 1, b - 3)]), jnp.int32)
  return x0, eps, t, dm.q_sample(_LINEAR, x0, t, eps)


def test_vlb_term_matches_hand_computed_kl_and_decoder_nll():
  x0, eps, t, x_t = _noised(7)
  # Near x0, so that the decoder probabilities do not underflow in float64.
  x0_hat = x0 + _f32(0.01 * _rng(8).normal(size=x0.shape))
  got = dm.vlb_term(_LINEAR, "beta", x0, x_t, t, x0_hat)
  chex.assert_shape(got, (6,))
  chex.assert_tree_all_finite(got)
  f64 = lambda a: np.asarray(a, np.float64)  # noqa: E731
  for i, ti in enumerate(np.asarray(t)):
    ac, ac_prev = _AC64[ti], _AC64[ti - 1] if ti else 1.0
    beta = _BETAS64[ti]
    c1 = beta * np.sqrt(ac_prev) / (1 - ac)
    c2 = (1 - ac_prev) * np.sqrt(1 - beta) / (1 - ac)
    model_mean = c1 * f64(x0_hat[i]) + c2 * f64(x_t[i])
    if ti == 0:
      # Decoder: discretized Gaussian with σ² = β̃ of step 1 (the official "fixedlarge" clip).
      sd = np.sqrt(_BETAS64[1] * (1 - _AC64[0]) / (1 - _AC64[1]))
      lo = np.where(f64(x0[i]) < -0.999, -np.inf, f64(x0[i]) - 1 / 255)
      hi = np.where(f64(x0[i]) > 0.999, np.inf, f64(x0[i]) + 1 / 255)
      mass = stats.norm.cdf(hi, model_mean, sd) - stats.norm.cdf(lo, model_mean, sd)
      want = -np.log(mass).sum()
    else:
      true_mean = c1 * f64(x0[i]) + c2 * f64(x_t[i])
      true_var = beta * (1 - ac_prev) / (1 - ac)
      want = (
        0.5 * (np.log(beta / true_var) + (true_var + (true_mean - model_mean) ** 2) / beta - 1)
      ).sum()
    np.testing.assert_allclose(got[i], want, rtol=2e-3, atol=1e-8, err_msg=f"t={ti}")


def test_vlb_with_perfect_x0_is_zero_for_posterior_variance():
  x0, eps, t, x_t = _noised(9)
  later = np.asarray(t) > 0
  exact = dm.vlb_term(_LINEAR, "posterior", x0, x_t, t, x0)
  np.testing.assert_array_equal(np.asarray(exact)[later], 0.0)
  assert np.all(np.asarray(exact)[~later] > 0)
  # The "beta" variance leaves only the variance mismatch KL(N(0, β̃) || N(0, β)) per dim.
  ti = np.asarray(t)[later]
  r = _BETAS64[ti] * (1 - _AC64[ti - 1]) / (1 - _AC64[ti]) / _BETAS64[ti]
  want = 0.5 * (r - 1 - np.log(r)) * 6
  got = dm.vlb_term(_LINEAR, "beta", x0, x_t, t, x0)
  np.testing.assert_allclose(np.asarray(got)[later], want, rtol=1e-3, atol=1e-7)
  # The same through the loss, from an exact prediction in every parameterization.
  for param in dm.PARAMETERIZATIONS:
    output = dm.training_target(_LINEAR, param, x0, eps, t)
    loss = dm.per_example_loss(
      _LINEAR, param, "vlb", output, x0, eps, t, x_t, model_variance="posterior"
    )
    chex.assert_tree_all_finite(loss)
    np.testing.assert_allclose(np.asarray(loss)[later], 0.0, atol=0.02)


@pytest.mark.parametrize("param", dm.PARAMETERIZATIONS)
def test_simple_loss_is_zero_for_the_true_target_and_mse_otherwise(param):
  x0, eps, t, x_t = _noised(10)
  target = dm.training_target(_LINEAR, param, x0, eps, t)
  for weighting in ("simple", "min_snr"):
    loss = dm.per_example_loss(_LINEAR, param, weighting, target, x0, eps, t, x_t)
    # The compiled loss may round the v target differently in the last bit.
    np.testing.assert_allclose(loss, np.zeros(6), atol=0 if param != "v" else 1e-12)
  output = _f32(_rng(11).normal(size=x0.shape))
  want = ((np.asarray(output) - np.asarray(target)) ** 2).reshape(6, -1).mean(1)
  got = dm.per_example_loss(_LINEAR, param, "simple", output, x0, eps, t, x_t)
  np.testing.assert_allclose(got, want, rtol=1e-5)


@pytest.mark.parametrize("param,gamma", [("eps", 5.0), ("x0", 5.0), ("v", 5.0), ("v", 1.0)])
def test_min_snr_weights_match_formula(param, gamma):
  x0, eps, t, x_t = _noised(12)  # the shapes of the other loss tests: no new compiles
  output = _f32(_rng(13).normal(size=x0.shape))
  loss = lambda w: dm.per_example_loss(  # noqa: E731
    _LINEAR, param, w, output, x0, eps, t, x_t, min_snr_gamma=gamma
  )
  weight = np.asarray(loss("min_snr")) / np.asarray(loss("simple"))
  a = _AC64[np.asarray(t)]
  s = a / (1 - a)
  want = {
    "eps": np.minimum(s, gamma) / s,
    "x0": np.minimum(s, gamma),
    "v": np.minimum(s, gamma) / (s + 1),
  }[param]
  np.testing.assert_allclose(weight, want, rtol=1e-4)


def test_loss_jits_with_closed_over_schedule_and_rejects_bad_names():
  x0, eps, t, x_t = _noised(14)
  fn = jax.jit(lambda out: dm.per_example_loss(_LINEAR, "v", "vlb", out, x0, eps, t, x_t).mean())
  value, grad = jax.value_and_grad(fn)(jnp.zeros_like(x0))
  chex.assert_tree_all_finite((value, grad))
  with pytest.raises(ValueError, match="allowed.*simple"):
    dm.per_example_loss(_LINEAR, "eps", "p2", eps, x0, eps, t, x_t)
  with pytest.raises(ValueError, match="allowed.*beta"):
    dm.per_example_loss(_LINEAR, "eps", "vlb", eps, x0, eps, t, x_t, model_variance="learned")


# ---------------------------------------------------------------------------
# Training-time randomness.
# ---------------------------------------------------------------------------


def test_sample_timesteps_uniform_and_per_example():
  keys = _keys(5000, seed=1)
  t = dm.sample_timesteps(keys, 10)
  assert t.shape == (5000,) and t.dtype == jnp.int32
  counts = np.bincount(np.asarray(t), minlength=10)
  assert counts.size == 10
  chi2 = stats.chisquare(counts)
  assert chi2.pvalue > 1e-3, counts
  # Entry i depends only on keys[i] (a reversed batch keeps the shape: no recompile).
  np.testing.assert_array_equal(dm.sample_timesteps(keys[::-1], 10), t[::-1])
  with pytest.raises(TypeError, match="typed PRNG key"):
    dm.sample_timesteps(jax.random.PRNGKey(0)[None], 10)


def test_drop_labels_rate_and_edge_cases():
  b = 5000
  keys = _keys(b, seed=2)
  labels = jnp.asarray(_rng(15).integers(0, 10, b), jnp.int32)
  dropped = dm.drop_labels(keys, labels, 0.2, 10)
  assert dropped.shape == (b,) and dropped.dtype == jnp.int32
  is_null = np.asarray(dropped) == 10
  assert abs(is_null.mean() - 0.2) < 0.02  # 3.5 standard errors
  np.testing.assert_array_equal(np.asarray(dropped)[~is_null], np.asarray(labels)[~is_null])
  np.testing.assert_array_equal(dm.drop_labels(keys, labels, 0.0, 10), labels)
  np.testing.assert_array_equal(dm.drop_labels(keys, labels, 1.0, 10), np.full(b, 10))
  # Example i's decision depends only on keys[i] and labels[i].
  np.testing.assert_array_equal(dm.drop_labels(keys[::-1], labels[::-1], 0.2, 10), dropped[::-1])


def test_docstring_examples():
  result = doctest.testmod(dm, optionflags=doctest.NORMALIZE_WHITESPACE)
  assert result.attempted > 0 and result.failed == 0

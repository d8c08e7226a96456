"""Tests for genjax.objectives.sde: marginals, SDE coefficients, parameterizations, DSM loss.

Truth comes from outside the module: DDPM's discrete ᾱ (objectives.diffusion), the
Fokker–Planck moment equations of a linear SDE checked by automatic
differentiation, and the closed-form posterior of Gaussian data.
"""

import doctest

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from genjax.objectives import diffusion as dm
from genjax.objectives import sde as S

SDES = {
  "vp": S.vp(),
  "vp_cosine": S.vp(schedule="cosine"),
  "subvp": S.subvp(),
  "subvp_cosine": S.subvp(schedule="cosine"),
  "ve": S.ve(),
}
_MU, _VAR = np.array([0.5, -0.3]), np.array([0.64, 0.25])


def _keys(b, seed=0):
  return jax.random.split(jax.random.key(seed), b)


def test_doctests():
  assert doctest.testmod(S).failed == 0


def _alpha_bar_gap(schedule: str, num_steps: int) -> float:
  """Max |ᾱ| gap between T discrete steps and the SDE; linear β scaled so the SDE stays VP(0.1, 20)."""
  betas = dm.make_betas(schedule, num_steps, 0.1 / num_steps, 20.0 / num_steps)
  ac = np.asarray(dm.make_schedule(betas).alphas_cumprod, np.float64)
  # 0-based step k has taken k + 1 steps of length 1 / T.
  t = np.arange(1, num_steps + 1) / num_steps
  sde = S.vp_from_discrete(1000) if schedule == "linear" else S.vp(schedule="cosine")
  return float(np.max(np.abs(np.asarray(S.mean_coef(sde, t), np.float64) ** 2 - ac)))


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_vp_marginals_are_the_limit_of_ddpm(schedule):
  assert _alpha_bar_gap(schedule, 1000) < 1e-3
  if schedule == "linear":  # and the gap closes like 1 / T
    assert _alpha_bar_gap(schedule, 4000) < 0.3 * _alpha_bar_gap(schedule, 1000)


@pytest.mark.parametrize("name", SDES)
def test_marginals_solve_the_moment_equations(name):
  # For dx = f(t) x dt + g(t) dW: dm/dt = f m and dσ²/dt = 2 f σ² + g².
  sde = SDES[name]
  t = jnp.array([0.02, 0.3, 0.6, 0.9, 0.99])
  dm_dt = jax.vmap(jax.grad(lambda t: S.mean_coef(sde, t)))(t)
  dvar_dt = jax.vmap(jax.grad(lambda t: S.std(sde, t) ** 2))(t)
  f, g = S.drift_coef(sde, t), S.diffusion(sde, t)
  np.testing.assert_allclose(dm_dt, f * S.mean_coef(sde, t), rtol=2e-3, atol=1e-5)
  np.testing.assert_allclose(dvar_dt, 2 * f * S.std(sde, t) ** 2 + g**2, rtol=2e-3, atol=1e-5)
  x = jnp.ones((5, 3))
  np.testing.assert_allclose(S.drift(sde, x, t), f[:, None] * x)


@pytest.mark.parametrize("name", SDES)
def test_transition_composes_with_the_marginal(name):
  sde = SDES[name]
  s, t = jnp.array([0.1, 0.5]), jnp.array([0.4, 0.95])
  a, v = S.transition(sde, s, t)
  np.testing.assert_allclose(a * S.mean_coef(sde, s), S.mean_coef(sde, t), rtol=1e-5)
  np.testing.assert_allclose(
    a**2 * S.std(sde, s) ** 2 + v, S.std(sde, t) ** 2, rtol=1e-4, atol=1e-6
  )


def test_end_points_and_prior():
  for name in ("vp", "subvp", "vp_cosine"):
    sde = SDES[name]
    assert float(S.mean_coef(sde, 0.0)) == 1.0 and float(S.std(sde, 0.0)) == 0.0
    assert float(S.mean_coef(sde, 1.0)) < 0.015 and abs(float(S.std(sde, 1.0)) - 1) < 1e-3
  sde = S.ve(0.01, 50.0)
  np.testing.assert_allclose([S.std(sde, 0.0), S.std(sde, 1.0)], [0.01, 50.0], rtol=1e-5)
  x = S.prior_sample(sde, _keys(3), (4,))
  want = stats.norm(0.0, 50.0).logpdf(np.asarray(x, np.float64)).sum(-1)
  np.testing.assert_allclose(S.prior_log_prob(sde, x), want, rtol=1e-5)
  assert x.shape == (3, 4) and float(jnp.abs(x).max()) > 5.0


@pytest.mark.parametrize("parameterization", S.PARAMETERIZATIONS)
@pytest.mark.parametrize("name", ["vp", "subvp", "ve"])
def test_parameterizations_recover_the_noise(name, parameterization):
  sde = SDES[name]
  x0, eps = jax.random.normal(jax.random.key(1), (2, 4, 3))
  t = jnp.array([0.05, 0.3, 0.7, 0.99])
  x_t = S.perturb(sde, x0, t, eps)
  target = S.training_target(sde, parameterization, x0, eps, t)
  np.testing.assert_allclose(
    S.predict_eps(sde, parameterization, x_t, t, target), eps, rtol=1e-3, atol=2e-3
  )
  score = S.score_from_eps(sde, eps, t)
  np.testing.assert_allclose(S.eps_from_score(sde, score, t), eps, rtol=1e-6)


def _gaussian_score(sde, x, t):
  """∇log p_t for x_0 ~ N(μ, diag(s²)): p_t = N(m μ, m² s² + σ²)."""
  m, s = S.expand(S.mean_coef(sde, t), x), S.expand(S.std(sde, t), x)
  return -(x - m * _MU) / (m**2 * _VAR + s**2)


@pytest.mark.parametrize("name", ["vp", "ve"])
def test_tweedie_is_the_gaussian_posterior_mean(name):
  sde = SDES[name]
  x_t = jax.random.normal(jax.random.key(2), (3, 2))
  t = jnp.array([0.1, 0.5, 0.9])
  m, s = S.mean_coef(sde, t)[:, None], S.std(sde, t)[:, None]
  want = _MU + _VAR * m * (x_t - m * _MU) / (m**2 * _VAR + s**2)
  got = S.tweedie_denoise(sde, x_t, t, _gaussian_score(sde, x_t, t))
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["vp", "subvp", "ve"])
def test_dsm_loss_prefers_the_true_score(name):
  sde, b = SDES[name], 4096
  k_x, k_eps, k_t = jax.random.split(jax.random.key(3), 3)
  x0 = _MU + np.sqrt(_VAR) * jax.random.normal(k_x, (b, 2))
  eps = jax.random.normal(k_eps, (b, 2))
  t = S.sample_time(_keys(b, 4), 1e-3)
  x_t = S.perturb(sde, x0, t, eps)
  true_eps = S.eps_from_score(sde, _gaussian_score(sde, x_t, t), t)
  for weighting in S.WEIGHTINGS:
    loss = lambda out, w=weighting: float(S.dsm_loss(sde, out, x0, eps, t, weighting=w).mean())
    assert loss(true_eps) < loss(true_eps * 1.1) and loss(true_eps) < loss(true_eps + 0.1)


@pytest.mark.parametrize("parameterization", S.PARAMETERIZATIONS)
@pytest.mark.parametrize("name", ["vp", "subvp", "ve"])
def test_likelihood_weighting_is_g_squared(name, parameterization):
  sde = SDES[name]
  k1, k2, k3 = jax.random.split(jax.random.key(5), 3)
  x0, eps, eps_hat = (jax.random.normal(k, (4, 3, 2)) for k in (k1, k2, k3))
  t = jnp.array([0.01, 0.2, 0.6, 0.95])
  x_t = S.perturb(sde, x0, t, eps)
  # The output that, in this parameterization, predicts eps_hat.
  x0_hat = (x_t - S.expand(S.std(sde, t), x_t) * eps_hat) / S.expand(S.mean_coef(sde, t), x_t)
  output = S.training_target(sde, parameterization, x0_hat, eps_hat, t)
  got = S.dsm_loss(
    sde, output, x0, eps, t, parameterization=parameterization, weighting="likelihood"
  )
  score_error = S.score_from_eps(sde, eps_hat, t) - S.score_from_eps(sde, eps, t)
  want = 0.5 * S.diffusion(sde, t) ** 2 * jnp.sum(score_error**2, axis=(1, 2))
  np.testing.assert_allclose(got, want, rtol=2e-3)
  np.testing.assert_allclose(S.likelihood_weight(sde, t), S.diffusion(sde, t) ** 2)


def test_sample_time_is_uniform_per_example():
  t = S.sample_time(_keys(20000, 6), 0.1)
  assert float(t.min()) >= 0.1 and float(t.max()) <= 1.0
  assert abs(float(t.mean()) - 0.55) < 0.01
  np.testing.assert_array_equal(S.sample_time(_keys(20000, 6)[:5], 0.1), t[:5])

"""The VDM objective: schedule, decoder, continuous-time loss and its variance gradient.

Truths from outside the code under test: α² + σ² = 1; a Gaussian data set whose
optimal ε̂ and log-density are known in closed form; the discrete-time loss at
large T; autodiff of the squared loss.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.objectives import vdm


def _random_schedule(seed, features=32, scale=1.0):
  """A learned schedule far from its near-linear init (weights of both signs)."""
  sched = vdm.init_schedule(jax.random.key(seed), -9.0, 4.0, features)
  leaves, treedef = jax.tree.flatten(sched["shape"])
  keys = jax.random.split(jax.random.key(seed + 100), len(leaves))
  noisy = [p + scale * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)]
  sched["shape"] = treedef.unflatten(noisy)
  return sched


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_schedule_is_monotone_with_exact_endpoints_and_variance_preserving(seed):
  sched = _random_schedule(seed)
  t = jnp.linspace(0.0, 1.0, 2001)
  g = np.asarray(vdm.gamma(sched, t))
  assert np.all(np.diff(g) > 0)
  np.testing.assert_allclose(g[[0, -1]], [-9.0, 4.0], atol=1e-5)
  alpha_sq, sigma_sq = vdm.alpha_sigma_sq(jnp.asarray(g))
  np.testing.assert_allclose(np.asarray(alpha_sq + sigma_sq), 1.0, atol=1e-6)
  _, slope = vdm.fraction_and_slope(sched["shape"], t)
  assert np.all(np.asarray(slope) > 0)
  # The slope integrates to u(1) - u(0) = 1 (trapezoid rule on 2001 points).
  assert float(jnp.trapezoid(slope, t)) == pytest.approx(1.0, abs=1e-4)


def test_decoder_probabilities_sum_to_one_and_pick_the_nearest_level():
  z = jax.random.uniform(jax.random.key(0), (4, 5), minval=-1.2, maxval=1.2)
  for gamma0 in (-13.3, -6.0, 0.0):
    probs = jnp.exp(vdm.decoder_log_probs(z, jnp.float32(gamma0)))
    np.testing.assert_allclose(np.asarray(probs.sum(-1)), 1.0, atol=1e-5)
  levels = jnp.arange(256).reshape(2, 128)
  z = vdm.encode(levels)
  picked = jnp.argmax(vdm.decoder_log_probs(z, jnp.float32(-13.3)), axis=-1)
  np.testing.assert_array_equal(np.asarray(picked), np.asarray(levels))
  x = vdm.from_levels(levels)  # scale_pm1's values round-trip to their levels
  np.testing.assert_array_equal(np.asarray(vdm.to_levels(x)), np.asarray(levels))


def test_prior_kl_matches_the_gaussian_kl():
  f = jax.random.uniform(jax.random.key(1), (3, 7), minval=-1, maxval=1)
  gamma1 = jnp.float32(2.0)
  alpha_sq, sigma_sq = 1 / (1 + math.exp(2.0)), 1 / (1 + math.exp(-2.0))
  mean = math.sqrt(alpha_sq) * np.asarray(f)
  expected = 0.5 * (mean**2 + sigma_sq - math.log(sigma_sq) - 1).sum(-1)
  np.testing.assert_allclose(np.asarray(vdm.prior_kl(f, gamma1)), expected, rtol=1e-5)


def test_continuous_loss_is_the_large_T_limit_of_the_discrete_loss():
  """E_t of the T-step loss (t on its grid) -> E_t of the continuous one, fixed linear γ."""
  x = jax.random.uniform(jax.random.key(2), (2, 6), minval=-1, maxval=1)
  eps = jax.random.normal(jax.random.key(3), x.shape)
  lo, hi = -8.0, 4.0

  def gamma(t):
    return lo + (hi - lo) * t

  def eps_hat(z, g):  # any smooth predictor will do
    return jnp.tanh(z) * jax.nn.sigmoid(g)[:, None]

  def expected(t, loss):  # mean over the times, per example
    b = x.shape[0]
    tt = jnp.repeat(t, b)
    xs, es = jnp.tile(x, (t.shape[0], 1)), jnp.tile(eps, (t.shape[0], 1))
    pred = eps_hat(vdm.diffuse(xs, gamma(tt), es), gamma(tt))
    return loss(tt, es, pred).reshape(-1, b).mean(0)

  num_steps = 20_000
  grid = jnp.arange(1, num_steps + 1) / num_steps
  discrete = expected(
    grid,
    lambda t, e, p: vdm.discrete_diffusion_loss(
      e, p, gamma(t), gamma(t - 1 / num_steps), num_steps
    ),
  )
  mid = (jnp.arange(num_steps) + 0.5) / num_steps
  continuous = expected(mid, lambda t, e, p: vdm.diffusion_loss(e, p, jnp.full_like(t, hi - lo)))
  np.testing.assert_allclose(np.asarray(discrete), np.asarray(continuous), rtol=2e-3)
  # And the discrete loss is larger for fewer steps (the paper's section 4.1).
  coarse = expected(
    jnp.arange(1, 11) / 10.0,
    lambda t, e, p: vdm.discrete_diffusion_loss(e, p, gamma(t), gamma(t - 0.1), 10),
  )
  assert np.all(np.asarray(coarse) > np.asarray(continuous))


@pytest.mark.parametrize("seed", [0, 3])
def test_elbo_of_gaussian_data_with_the_optimal_denoiser_is_the_exact_nll(seed):
  """x ~ N(0, s² I): E[ε | z_t] is linear in z_t, and the expected ELBO is -E log p(x).

  Holds for any schedule shape (the bound depends only on its endpoints), so the
  test uses a random learned schedule. The decoder here is the Gaussian
  p(x | z₀) = N(z₀ / α₀, exp(γ₀)), whose expected NLL is ½ d (log 2π + γ₀ + 1).
  """
  d, s = 3, 0.7
  sched = _random_schedule(seed, scale=2.0)
  sched["gamma0"], sched["gamma1"] = jnp.float32(-16.0), jnp.float32(12.0)
  num = 20_000
  t = (jnp.arange(num) + 0.5) / num
  u, du = vdm.fraction_and_slope(sched["shape"], t)
  g0, g1 = sched["gamma0"], sched["gamma1"]
  gamma_t, slope = g0 + (g1 - g0) * u, (g1 - g0) * du
  alpha_sq, sigma_sq = vdm.alpha_sigma_sq(gamma_t)
  c = jnp.sqrt(sigma_sq) / (alpha_sq * s**2 + sigma_sq)  # E[ε | z] = c z
  # E_{x, ε} ||ε - c z||² per dimension, with z = α x + σ ε.
  mse = (1 - c * jnp.sqrt(sigma_sq)) ** 2 + c**2 * alpha_sq * s**2
  eps = jnp.ones((num, d))  # diffusion_loss of a residual whose square sums to d * mse
  diff = vdm.diffusion_loss(eps, eps - jnp.sqrt(mse)[:, None], slope).mean()
  f = jnp.full((1, d), s)  # E ||f||² = d s² for the prior KL, which is linear in f²
  prior = vdm.prior_kl(f, g1)[0]
  recon = 0.5 * d * (math.log(2 * math.pi) + g0 + 1)
  exact = 0.5 * d * math.log(2 * math.pi * math.e * s**2)
  assert float(prior + recon + diff) == pytest.approx(exact, abs=2e-3)


def test_variance_weighted_gradient_is_that_of_the_squared_loss_for_the_shape():
  sched = _random_schedule(4)
  t = jax.random.uniform(jax.random.key(5), (6,))
  x = jax.random.normal(jax.random.key(6), (6, 5))
  noise_keys = jax.random.split(jax.random.key(7), 6)

  def per_example(u, du, ends, w, x, keys):
    gamma_t = ends[0] + (ends[1] - ends[0]) * u
    eps = jax.vmap(lambda k: jax.random.normal(k, (5,)))(keys)
    z = vdm.diffuse(x, gamma_t, eps)
    return vdm.diffusion_loss(eps, jnp.tanh(w * z), (ends[1] - ends[0]) * du)

  def losses(params, trick):
    u, du = vdm.fraction_and_slope(params["schedule"]["shape"], t)
    ends = jnp.stack([params["schedule"]["gamma0"], params["schedule"]["gamma1"]])
    args = (ends, params["w"], x, noise_keys)
    return vdm.variance_weighted(per_example, u, du, *args) if trick else per_example(u, du, *args)

  params = {"schedule": sched, "w": jnp.float32(0.8)}
  tricked = jax.jit(jax.grad(lambda p: losses(p, True).mean()))(params)
  plain = jax.grad(lambda p: losses(p, False).mean())(params)
  squared = jax.grad(lambda p: jnp.square(losses(p, False)).mean())(params)
  np.testing.assert_allclose(
    float(losses(params, True).mean()), float(losses(params, False).mean())
  )
  for leaf_t, leaf_sq in zip(
    jax.tree.leaves(tricked["schedule"]["shape"]), jax.tree.leaves(squared["schedule"]["shape"])
  ):
    np.testing.assert_allclose(np.asarray(leaf_t), np.asarray(leaf_sq), rtol=1e-4, atol=1e-6)
  for name in ("gamma0", "gamma1"):
    np.testing.assert_allclose(
      float(tricked["schedule"][name]), float(plain["schedule"][name]), rtol=1e-4
    )
  np.testing.assert_allclose(float(tricked["w"]), float(plain["w"]), rtol=1e-4)


def test_low_discrepancy_times_cover_the_unit_interval_evenly():
  t = np.asarray(vdm.low_discrepancy_times(jnp.float32(0.93), jnp.arange(8), 8))
  assert np.all((t >= 0) & (t < 1))
  np.testing.assert_allclose(np.sort(t), np.sort((0.93 + np.arange(8) / 8) % 1.0), atol=1e-6)
  assert np.histogram(t, bins=8, range=(0, 1))[0].tolist() == [1] * 8


def test_ancestral_step_with_the_true_noise_is_the_forward_posterior_mean():
  """With ε̂ = ε and zero noise, z_s is the posterior mean q(z_s | z_t, x): α_s x + σ_s' ε."""
  f = jax.random.uniform(jax.random.key(8), (2, 4), minval=-1, maxval=1)
  eps = jax.random.normal(jax.random.key(9), f.shape)
  gamma_t, gamma_s = jnp.float32(1.0), jnp.float32(-2.0)
  z_t = vdm.diffuse(f, gamma_t, eps)
  z_s = vdm.ancestral_step(z_t, eps, gamma_t, gamma_s, jnp.zeros_like(f))
  alpha_sq_s, sigma_sq_s = vdm.alpha_sigma_sq(gamma_s)
  # Posterior mean of q(z_s | z_t, x) (Kingma et al. eq. 30), written from SNRs.
  root_snr_ratio = math.exp((-2.0 - 1.0) / 2)  # √(SNR(t) / SNR(s)) = exp((γ_s - γ_t) / 2)
  mean = jnp.sqrt(alpha_sq_s) * f + jnp.sqrt(sigma_sq_s) * root_snr_ratio * eps
  np.testing.assert_allclose(np.asarray(z_s), np.asarray(mean), atol=1e-5)

"""Tests for genjax.samplers.sde, driven by the exact score of Gaussian data and mixtures.

For x_0 ~ Σ_k w_k N(μ_k, diag(s_k²)) the marginal p_t is Σ_k w_k N(m μ_k, m² s_k² + σ²)
in closed form, and so is its score. Each sampler starts from exact samples of
p_1 and must return samples of p_{t_min}, checked against its moments with
tolerances of a few standard errors (plus the discretization error of the step
counts used).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.objectives import sde as S
from genjax.samplers import sde as samplers

_N = 4000
_MU, _VAR = np.array([0.5, -0.3]), np.array([0.64, 0.25])
_VP, _SUBVP, _VE, _COSINE = S.vp(), S.subvp(), S.ve(), S.vp(schedule="cosine")


def _keys(b, seed=0):
  return jax.random.split(jax.random.key(seed), b)


def _mixture_score(sde, weights, mus, variances, x, t):
  """Score of p_t for x_0 ~ Σ_k w_k N(μ_k, diag(s_k²)); arrays are [K, D]."""
  m, s = S.expand(S.mean_coef(sde, t), x), S.expand(S.std(sde, t), x)
  var = m[:, None] ** 2 * variances + s[:, None] ** 2  # [B, K, D]
  diff = x[:, None] - m[:, None] * mus
  log_comp = -0.5 * jnp.sum(diff**2 / var + jnp.log(var), axis=-1) + jnp.log(weights)
  resp = jax.nn.softmax(log_comp, axis=-1)  # [B, K]
  return jnp.sum(resp[..., None] * (-diff / var), axis=1)


def _gaussian_score(sde, mu=_MU, var=_VAR):
  one = lambda a: jnp.asarray(a, jnp.float32)[None]
  return functools.partial(_mixture_score, sde, jnp.ones((1,)), one(mu), one(var))


def _exact_marginal(sde, t, mu=_MU, var=_VAR, n=_N, seed=1):
  """n exact samples of p_t for Gaussian data, and p_t's mean and variance."""
  m, s = float(S.mean_coef(sde, t)), float(S.std(sde, t))
  mean, variance = m * mu, m**2 * var + s**2
  x = mean + np.sqrt(variance) * jax.random.normal(jax.random.key(seed), (n, len(mu)))
  return x.astype(jnp.float32), mean, variance


def _check_gaussian(x, mean, variance, slack=0.0):
  """Sample mean, variances and correlation within 4 standard errors (+ relative slack)."""
  x, n = np.asarray(x, np.float64), x.shape[0]
  np.testing.assert_array_less(np.abs(x.mean(0) - mean), 4 * np.sqrt(variance / n) + 1e-3)
  rel = np.abs(x.var(0) / variance - 1)
  np.testing.assert_array_less(rel, 4 * np.sqrt(2 / n) + slack)
  assert abs(np.corrcoef(x.T)[0, 1]) < 4 / np.sqrt(n)


_CASES = {
  "em_vp": (_VP, "euler_maruyama", dict(num_steps=500), 0.02),
  "em_subvp": (_SUBVP, "euler_maruyama", dict(num_steps=500), 0.02),
  "em_ve": (_VE, "euler_maruyama", dict(num_steps=500), 0.02),
  "em_cosine": (_COSINE, "euler_maruyama", dict(num_steps=500), 0.02),
  # In 2-D the per-example Langevin step is unstable (see predictor_corrector).
  "pc_vp": (_VP, "pc", dict(num_steps=200, langevin_norms="batch"), 0.03),
  "pc_ve": (
    _VE,
    "pc",
    dict(num_steps=200, langevin_norms="batch", predictor="euler_maruyama"),
    0.03,
  ),
  "ode_euler_vp": (_VP, "ode_euler", dict(num_steps=200), 0.02),
  "ode_heun_vp": (_VP, "ode_heun", dict(num_steps=50), 0.0),
  "ode_heun_ve": (_VE, "ode_heun", dict(num_steps=400), 0.0),
  "ode_heun_subvp": (_SUBVP, "ode_heun", dict(num_steps=50), 0.0),
  "ode_adaptive_vp": (_VP, "ode_adaptive", {}, 0.0),
  "ode_adaptive_ve": (_VE, "ode_adaptive", {}, 0.0),
}


@pytest.mark.parametrize("case", _CASES)
def test_samplers_reach_the_gaussian_marginal(case):
  sde, name, kwargs, slack = _CASES[case]
  t_min = 1e-3
  x_1, _, _ = _exact_marginal(sde, 1.0)
  run = jax.jit(lambda x, k: samplers.sample(name, _gaussian_score(sde), sde, x, k, **kwargs))
  x = run(x_1, _keys(_N))
  _, mean, variance = _exact_marginal(sde, t_min)
  _check_gaussian(x, mean, variance, slack)


@pytest.mark.parametrize("name", ["euler_maruyama", "pc", "ode_heun", "ode_adaptive"])
def test_samplers_recover_mixture_weights(name):
  weights = jnp.array([0.3, 0.7])
  mus, variances = jnp.array([[-1.5, 0.0], [1.5, 0.5]]), jnp.full((2, 2), 0.1)
  sde = _VP
  score = functools.partial(_mixture_score, sde, weights, mus, variances)
  keys = _keys(_N, 2)
  x_1 = S.prior_sample(sde, keys, (2,))
  kwargs = {"ode_adaptive": {}, "ode_heun": dict(num_steps=50)}.get(name, dict(num_steps=300))
  if name == "pc":
    kwargs["langevin_norms"] = "batch"
  x = jax.jit(lambda x, k: samplers.sample(name, score, sde, x, k, **kwargs))(x_1, keys)
  frac = float(jnp.mean(x[:, 0] > 0))
  assert abs(frac - 0.7) < 4 * np.sqrt(0.21 / _N)
  # Each mode keeps its spread: a sample's distance to its own mean is N(0, 0.1).
  near = jnp.where(x[:, :1] > 0, x - mus[1], x - mus[0])
  np.testing.assert_allclose(jnp.var(near, axis=0), 0.1, rtol=0.1)


@pytest.mark.parametrize("sde", [_VP, _VE], ids=["vp", "ve"])
def test_pc_per_example_steps_match_batch_steps_in_high_dimension(sde):
  # Where ||z|| and ||score|| concentrate (relative spread √(2 / D)), the paper's
  # per-example step and the official code's batch step, tested above, agree.
  d, n = 512, 128
  mu, var = np.linspace(-1, 1, d), np.full(d, 0.25)
  x_1, _, _ = _exact_marginal(sde, 1.0, mu, var, n=n)
  score = _gaussian_score(sde, mu, var)
  run = jax.jit(
    lambda x, k, norms: samplers.predictor_corrector(
      score, sde, x, k, num_steps=50, langevin_norms=norms
    ),
    static_argnums=2,
  )
  _, _, variance = _exact_marginal(sde, 1e-3, mu, var)
  ratios = [np.mean(np.var(run(x_1, _keys(n), m), axis=0) / variance) for m in ("example", "batch")]
  assert abs(ratios[0] - ratios[1]) < 0.01


def test_nfe_counts():
  x, keys = jnp.zeros((3, 2)), _keys(3)
  score = _gaussian_score(_VP)
  cases = {
    ("euler_maruyama", 10, False): 10,
    ("pc", 10, False): 20,
    ("ode_euler", 10, True): 11,
    ("ode_heun", 10, False): 20,
  }
  for (name, steps, denoise), want in cases.items():
    _, nfe = samplers.sample(
      name, score, _VP, x, keys, num_steps=steps, denoise=denoise, return_nfe=True
    )
    np.testing.assert_array_equal(nfe, want)


def test_adaptive_nfe_counts_every_evaluation():
  calls = []

  def score(x, t):
    jax.debug.callback(lambda: calls.append(1))
    return _gaussian_score(_VP)(x, t)

  x_1 = jnp.array([[0.3, -1.2]])
  _, nfe = samplers.probability_flow(score, _VP, x_1, method="adaptive", return_nfe=True)
  assert int(nfe[0]) == len(calls) > 10


def test_samples_depend_only_on_their_own_key_and_start():
  x_1, keys = _exact_marginal(_VP, 1.0, n=6)[0], _keys(6, 3)
  score = _gaussian_score(_VP)
  for name in ("euler_maruyama", "pc", "ode_adaptive"):
    full = samplers.sample(name, score, _VP, x_1, keys, num_steps=20)
    part = samplers.sample(name, score, _VP, x_1[2:4], keys[2:4], num_steps=20)
    np.testing.assert_allclose(part, full[2:4], rtol=1e-5, atol=1e-6)


def test_denoise_is_tweedie_at_t_min():
  x_1, keys = _exact_marginal(_VP, 1.0, n=4)[0], _keys(4)
  score = _gaussian_score(_VP)
  noisy = samplers.euler_maruyama(score, _VP, x_1, keys, num_steps=30, t_min=0.05)
  clean = samplers.euler_maruyama(score, _VP, x_1, keys, num_steps=30, t_min=0.05, denoise=True)
  t = jnp.full((4,), 0.05)
  np.testing.assert_allclose(clean, S.tweedie_denoise(_VP, noisy, t, score(noisy, t)), rtol=1e-5)


def test_rejects_bad_options():
  x, keys = jnp.zeros((2, 2)), _keys(2)
  with pytest.raises(ValueError, match="sampler"):
    samplers.sample("ddpm", _gaussian_score(_VP), _VP, x, keys)
  with pytest.raises(ValueError, match="predictor"):
    samplers.predictor_corrector(_gaussian_score(_VP), _VP, x, keys, predictor="x")
  with pytest.raises(ValueError, match="t_min"):
    samplers.euler_maruyama(_gaussian_score(_VP), _VP, x, keys, t_min=0.0)

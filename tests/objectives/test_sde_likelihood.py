"""Tests for genjax.objectives.sde_likelihood: PF-ODE log-likelihoods of Gaussian data.

For x_0 ~ N(μ, C) the exact score of p_t = N(m μ, m² C + σ² I) drives the ODE,
and the result must equal the analytic log-density of p_{t_min}.
"""

import doctest
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from genjax.objectives import sde as S
from genjax.objectives import sde_likelihood as L

_MU = np.array([0.5, -0.3])
_COV = np.array([[0.64, 0.2], [0.2, 0.25]])
_B, _T_MIN = 32, 1e-5


def _keys(b, seed=0):
  return jax.random.split(jax.random.key(seed), b)


def _score(sde, mu, cov, x, t):
  lam, u = np.linalg.eigh(cov)
  m, s = S.mean_coef(sde, t)[:, None], S.std(sde, t)[:, None]
  y = (x - m * mu) @ u  # coordinates in C's eigenbasis, where p_t factorizes
  return -(y / (m**2 * lam + s**2)) @ u.T


def _case(sde, mu, cov, seed=1):
  """Data, its exact log p_{t_min}, and the exact score as a hashable function."""
  x = np.random.default_rng(seed).multivariate_normal(mu, cov, _B).astype(np.float32)
  m, s = float(S.mean_coef(sde, _T_MIN)), float(S.std(sde, _T_MIN))
  exact = stats.multivariate_normal(m * mu, m**2 * cov + s**2 * np.eye(len(mu))).logpdf(x)
  return jnp.asarray(x), exact, functools.partial(_score, sde, mu, cov)


def test_doctests():
  assert doctest.testmod(L).failed == 0


# The prior N(0, σ_max² I) ignores VE's p_1 mean m μ = μ, an error of ~|x(1)| |μ| / σ_max²
# nats that is no fault of the solver: VE data are centred here.
_SDES = {
  "vp": (S.vp(), _MU),
  "subvp": (S.subvp(), _MU),
  "vp_cosine": (S.vp(schedule="cosine"), _MU),
  "ve": (S.ve(), np.zeros(2)),
}


@pytest.mark.parametrize("name", _SDES)
def test_exact_trace_gives_the_gaussian_log_density(name):
  sde, mu = _SDES[name]
  x, exact, score = _case(sde, mu, _COV)
  log_p, nfe = L.log_likelihood(
    score, sde, x, _keys(_B), trace="exact", t_min=_T_MIN, return_nfe=True
  )
  np.testing.assert_array_less(np.abs(np.asarray(log_p) - exact), 0.01 * 2)
  assert int(nfe.min()) > 10


def test_rademacher_probes_are_exact_for_a_diagonal_jacobian():
  # With C diagonal the ODE's Jacobian is diagonal, where εᵀ J ε = tr J for ε ∈ {±1}ᴰ.
  sde = S.vp()
  x, exact, score = _case(sde, _MU, np.diag([0.64, 0.25]))
  log_p = L.log_likelihood(score, sde, x, _keys(_B), probe="rademacher", t_min=_T_MIN)
  np.testing.assert_array_less(np.abs(np.asarray(log_p) - exact), 0.01 * 2)


def test_gaussian_probes_are_unbiased():
  sde = S.vp()
  x, exact, score = _case(sde, _MU, _COV)
  log_p = L.log_likelihood(score, sde, x, _keys(_B), probe="gaussian", num_probes=500, t_min=_T_MIN)
  err = np.asarray(log_p, np.float64) - exact
  # Each example's estimate is noisy; their mean is within 0.01 nats per dimension.
  assert abs(err.mean()) < 0.01 * 2 + 3 * err.std() / math.sqrt(_B)
  assert err.std() > 1e-3  # the probes really are random


def test_dequantize_stays_in_its_bin():
  levels = jnp.arange(256, dtype=jnp.float32)
  x = jnp.tile(levels / 127.5 - 1.0, (4, 1))
  u = L.dequantize(_keys(4), x)
  k = jnp.floor((u + 1.0) * 128.0)
  np.testing.assert_array_equal(k, jnp.broadcast_to(levels, k.shape))
  assert float(u.min()) >= -1.0 and float(u.max()) < 1.0


def test_bits_per_dim_of_a_uniform_dequantized_model_is_8():
  # The density 2⁻ᴰ on [-1, 1)ᴰ gives each of the 256 levels mass 1/256: 8 bits.
  d = 5
  np.testing.assert_allclose(L.bits_per_dim_8bit(jnp.array([-d * math.log(2.0)]), d), 8.0)


def test_rejects_bad_options():
  sde = S.vp()
  x, _, score = _case(sde, _MU, _COV)
  with pytest.raises(ValueError, match="trace"):
    L.log_likelihood(score, sde, x, _keys(_B), trace="x")
  with pytest.raises(ValueError, match="probe"):
    L.log_likelihood(score, sde, x, _keys(_B), probe="x")

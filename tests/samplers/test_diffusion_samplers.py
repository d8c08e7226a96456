"""Tests for genjax.samplers.diffusion: timestep spacings, DDPM, DDIM and guidance.

The statistical tests use Gaussian data N(μ, s² I), whose optimal ε-predictor is
known in closed form, so the samplers can be checked against the data and against
float64 re-implementations of the papers' update rules.
"""

import doctest
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.core import random
from genjax.objectives import diffusion as dm
from genjax.samplers import diffusion as sd


def _keys(b, seed=0):
  return jax.random.split(jax.random.key(seed), b)


def _normal(b, d, seed):
  return jax.random.normal(jax.random.key(seed), (b, d))


_B = 16  # one small batch size everywhere, so random inputs compile once
_MU = np.array([0.5, -0.3])
_STD = np.array([0.8, 0.5])


def _oracle_eps64(ac, x, mu=_MU, std=_STD):
  """E[ε | x_t] for x_0 ~ N(μ, s²), in float64: √(1-ᾱ)(x - √ᾱ μ) / (ᾱ s² + 1 - ᾱ)."""
  return np.sqrt(1 - ac) * (x - np.sqrt(ac) * mu) / (ac * std**2 + 1 - ac)


def _oracle(schedule, parameterization="eps", mu=_MU, std=_STD):
  """The optimal model function for Gaussian data, in any parameterization."""
  mu, var = jnp.asarray(mu, jnp.float32), jnp.asarray(std**2, jnp.float32)

  def model_fn(x, t):
    ac = schedule.alphas_cumprod[t][:, None]
    s1 = schedule.sqrt_one_minus_alphas_cumprod[t][:, None]
    eps = s1 * (x - schedule.sqrt_alphas_cumprod[t][:, None] * mu) / (ac * var + s1**2)
    if parameterization == "eps":
      return eps
    x0 = dm.x0_from_eps(schedule, x, t, eps)
    return x0 if parameterization == "x0" else dm.v_from_x0_eps(schedule, t, x0, eps)

  return model_fn


_LONG = dm.make_schedule(dm.linear_betas(1000))
_SHORT_BETAS = dm.linear_betas(20, 1e-3, 0.3)
_SHORT = dm.make_schedule(_SHORT_BETAS)


# ---------------------------------------------------------------------------
# Timestep spacings.
# ---------------------------------------------------------------------------


def test_timesteps_known_values():
  np.testing.assert_array_equal(sd.timesteps(1000, 10, "leading"), np.arange(900, -1, -100))
  np.testing.assert_array_equal(sd.timesteps(1000, 10, "trailing"), np.arange(999, 98, -100))
  np.testing.assert_array_equal(
    sd.timesteps(1000, 10, "linspace"), [999, 888, 777, 666, 555, 444, 333, 222, 111, 0]
  )
  np.testing.assert_array_equal(sd.timesteps(10, 3, "leading"), [6, 3, 0])
  np.testing.assert_array_equal(sd.timesteps(10, 3, "trailing"), [9, 6, 2])
  np.testing.assert_array_equal(sd.timesteps(10, 3, "linspace"), [9, 4, 0])
  assert sd.timesteps(1000, 10, "trailing").dtype == np.int64


@pytest.mark.parametrize("spacing", sd.SPACINGS)
@pytest.mark.parametrize("num_train", [10, 1000])
def test_timesteps_properties(spacing, num_train):
  for s in sorted({1, 2, 3, 7, num_train // 3, num_train - 1, num_train}):
    ts = sd.timesteps(num_train, s, spacing)
    assert ts.shape == (s,) and ts.dtype == np.int64
    assert np.all(np.diff(ts) < 0) and ts.min() >= 0 and ts.max() <= num_train - 1
    if spacing == "trailing":
      assert ts[0] == num_train - 1
      # The diffusers expression, where arange gives exactly S entries.
      ref = np.round(np.arange(num_train, 0, -num_train / s)).astype(np.int64) - 1
      if ref.size == s:
        np.testing.assert_array_equal(ts, ref)
  np.testing.assert_array_equal(
    sd.timesteps(num_train, num_train, spacing), np.arange(num_train - 1, -1, -1)
  )
  for bad in (0, num_train + 1):
    with pytest.raises(ValueError, match=rf"\({bad}\).*\({num_train}\)"):
      sd.timesteps(num_train, bad, spacing)


def test_timesteps_rejects_unknown_spacing_and_bad_sequences():
  with pytest.raises(ValueError, match="allowed.*leading"):
    sd.timesteps(100, 10, "uniform")
  x_T, keys = _normal(_B, 2, 0), _keys(_B)
  for bad in ([5, 5, 1], [3, 7], [20, 3], [4, -1]):
    with pytest.raises(ValueError, match="strictly decreasing"):
      sd.ddim_sample(_oracle(_SHORT), _SHORT, x_T, keys, timesteps=bad)


# ---------------------------------------------------------------------------
# Samplers against Gaussian data.
# ---------------------------------------------------------------------------


def _ddim_linear_map64(betas, ts, mu=_MU, std=_STD):
  """DDIM (η = 0) with the oracle is affine: x_0 = A x_T + c; float64 (A, c) per dim."""
  ac = np.cumprod(1.0 - betas)
  scale, shift = np.ones_like(mu), np.zeros_like(mu)
  for k, t in enumerate(ts):
    a, a_prev = ac[t], ac[ts[k + 1]] if k + 1 < len(ts) else 1.0
    eps_slope = np.sqrt(1 - a) / (a * std**2 + 1 - a)
    eps_shift = -eps_slope * np.sqrt(a) * mu
    x0_slope = (1 - np.sqrt(1 - a) * eps_slope) / np.sqrt(a)
    x0_shift = -np.sqrt((1 - a) / a) * eps_shift
    slope = np.sqrt(a_prev) * x0_slope + np.sqrt(1 - a_prev) * eps_slope
    offset = np.sqrt(a_prev) * x0_shift + np.sqrt(1 - a_prev) * eps_shift
    scale, shift = slope * scale, slope * shift + offset
  return scale, shift


@functools.partial(jax.jit, static_argnames="parameterization")
def _ddim_long(x_T, keys, parameterization="eps"):
  ts = sd.timesteps(1000, 100, "trailing")
  model_fn = _oracle(_LONG, parameterization)
  return sd.ddim_sample(
    model_fn, _LONG, x_T, keys, timesteps=ts, clip_x0=False, parameterization=parameterization
  )


def test_ddim_recovers_gaussian_data():
  n = 4000
  x_T, keys = _normal(n, 2, 1), _keys(n, 1)
  x0 = _ddim_long(x_T, keys)
  chex.assert_shape(x0, (n, 2))
  chex.assert_tree_all_finite(x0)
  # Deterministic and affine per dimension: exactly the float64 update rule.
  scale, shift = _ddim_linear_map64(dm.linear_betas(1000), sd.timesteps(1000, 100, "trailing"))
  np.testing.assert_allclose(x0, scale * np.asarray(x_T, np.float64) + shift, atol=2e-4)
  # And close to the data; 100 steps of the deterministic sampler leave a ~3 % lower spread.
  np.testing.assert_allclose(x0.mean(0), _MU, atol=0.03)
  np.testing.assert_allclose(x0.std(0), _STD, rtol=0.05)
  # The v-parameterized oracle gives the same samples.
  np.testing.assert_allclose(_ddim_long(x_T, keys, "v"), x0, atol=2e-4)


def _ddpm_moments64(betas, posterior, mu=_MU, std=_STD):
  """Exact mean and std of DDPM's output with the oracle (a linear-Gaussian chain), float64."""
  ac = np.cumprod(1.0 - betas)
  ac_prev = np.append(1.0, ac[:-1])
  var_post = betas * (1 - ac_prev) / (1 - ac)
  scale, shift, noise_var = np.ones_like(mu), np.zeros_like(mu), np.zeros_like(mu)
  for t in range(len(betas) - 1, -1, -1):
    a = ac[t]
    eps_slope = np.sqrt(1 - a) / (a * std**2 + 1 - a)
    x0_slope = (1 - np.sqrt(1 - a) * eps_slope) / np.sqrt(a)
    x0_shift = np.sqrt(1 - a) * eps_slope * mu
    c1 = betas[t] * np.sqrt(ac_prev[t]) / (1 - a)
    c2 = (1 - ac_prev[t]) * np.sqrt(1 - betas[t]) / (1 - a)
    slope = c1 * x0_slope + c2
    step_var = 0.0 if t == 0 else (var_post[t] if posterior else betas[t])
    scale, shift = slope * scale, slope * shift + c1 * x0_shift
    noise_var = slope**2 * noise_var + step_var
  return shift, np.sqrt(scale**2 + noise_var)


@pytest.mark.parametrize("model_variance", dm.MODEL_VARIANCES)
def test_ddpm_recovers_gaussian_data(model_variance):
  n = 4000
  sample = jax.jit(
    lambda x_T, keys: sd.ddpm_sample(
      _oracle(_LONG), _LONG, x_T, keys, model_variance=model_variance, clip_x0=False
    )
  )
  x0 = np.asarray(sample(_normal(n, 2, 2), _keys(n, 2)), np.float64)
  chex.assert_tree_all_finite(x0)
  mean, std = _ddpm_moments64(dm.linear_betas(1000), model_variance == "posterior")
  # Sampling error of 4000 draws: ~0.013 for the mean, ~1.1 % for the std.
  np.testing.assert_allclose(x0.mean(0), mean, atol=0.04)
  np.testing.assert_allclose(x0.std(0), std, rtol=0.035)
  np.testing.assert_allclose(x0.mean(0), _MU, atol=0.04)
  np.testing.assert_allclose(x0.std(0), _STD, rtol=0.04)


def test_ddpm_follows_algorithm_2_step_by_step():
  b, num_steps = _B, len(_SHORT_BETAS)
  x_T, keys = _normal(b, 2, 3), _keys(b, 3)
  sample = jax.jit(
    lambda x_T, keys: sd.ddpm_sample(
      _oracle(_SHORT),
      _SHORT,
      x_T,
      keys,
      clip_x0=False,
      return_trajectory=True,
      trajectory_steps=4,
    )
  )
  x0, traj = sample(x_T, keys)
  chex.assert_shape(traj, (4, b, 2))
  # Algorithm 2: x_{t-1} = (x_t - β_t / √(1 - ᾱ_t) ε_θ) / √α_t + σ_t z, σ_t² = β_t, in float64.
  betas = _SHORT_BETAS
  ac = np.cumprod(1.0 - betas)
  x, states = np.asarray(x_T, np.float64), []
  for t in range(num_steps - 1, -1, -1):
    z = np.asarray(random.normal(random.fold_in(keys, t), (2,)), np.float64)
    eps = _oracle_eps64(ac[t], x)
    x = (x - betas[t] / np.sqrt(1 - ac[t]) * eps) / np.sqrt(1 - betas[t])
    x = x + (np.sqrt(betas[t]) * z if t > 0 else 0.0)
    states.append(x)
  np.testing.assert_allclose(x0, states[-1], atol=1e-4)
  # Frames after 5, 10, 15 and 20 of the 20 steps.
  np.testing.assert_allclose(traj, np.stack([states[i] for i in (4, 9, 14, 19)]), atol=1e-4)


def test_ddim_follows_equation_12_with_noise():
  b, eta = _B, 0.5
  ts = sd.timesteps(20, 6, "linspace")
  x_T, keys = _normal(b, 2, 4), _keys(b, 4)
  x0, traj = sd.ddim_sample(
    _oracle(_SHORT),
    _SHORT,
    x_T,
    keys,
    timesteps=ts,
    eta=eta,
    clip_x0=False,
    return_trajectory=True,
  )
  chex.assert_shape(traj, (6, b, 2))
  np.testing.assert_array_equal(traj[-1], x0)
  ac = np.cumprod(1.0 - _SHORT_BETAS)
  x = np.asarray(x_T, np.float64)
  for k, t in enumerate(ts):
    a, a_prev = ac[t], ac[ts[k + 1]] if k + 1 < len(ts) else 1.0
    sigma = eta * np.sqrt((1 - a_prev) / (1 - a)) * np.sqrt(1 - a / a_prev)
    eps = _oracle_eps64(a, x)
    x0_hat = (x - np.sqrt(1 - a) * eps) / np.sqrt(a)
    z = np.asarray(random.normal(random.fold_in(keys, int(t)), (2,)), np.float64)
    x = np.sqrt(a_prev) * x0_hat + np.sqrt(1 - a_prev - sigma**2) * eps + sigma * z
    np.testing.assert_allclose(traj[k], x, atol=1e-4, err_msg=f"step {k} (t={t})")


def _clipping_oracle():
  # Data near the edge of [-1, 1], so that clipping the predicted x_0 matters.
  return _oracle(_SHORT, mu=np.array([0.9, -0.95]), std=np.array([0.5, 0.5]))


@jax.jit
def _ddpm_posterior(x_T, keys):
  return sd.ddpm_sample(_clipping_oracle(), _SHORT, x_T, keys, model_variance="posterior")


@jax.jit
def _ddim_all_steps(x_T, keys, eta=1.0):
  # η is traced here, so η = 0 runs the same program as η = 1.
  ts = np.arange(len(_SHORT_BETAS) - 1, -1, -1)
  return sd.ddim_sample(_clipping_oracle(), _SHORT, x_T, keys, timesteps=ts, eta=eta)


def test_ddim_without_noise_ignores_keys():
  x_T, keys = _normal(_B, 2, 9), _keys(_B, 9)
  out = _ddim_all_steps(x_T, keys, 0.0)
  chex.assert_tree_all_finite(out)
  np.testing.assert_array_equal(_ddim_all_steps(x_T, _keys(_B, 10), 0.0), out)
  assert not np.allclose(_ddim_all_steps(x_T, keys, 0.5), out, atol=1e-3)


def test_ddim_eta1_all_steps_is_ddpm_with_posterior_variance():
  x_T, keys = _normal(_B, 2, 5), _keys(_B, 5)
  ddpm, ddim = _ddpm_posterior(x_T, keys), _ddim_all_steps(x_T, keys)
  chex.assert_tree_all_finite((ddpm, ddim))
  # Same noise for the same timestep, so the samples agree, not just their laws.
  np.testing.assert_allclose(ddim, ddpm, atol=1e-4)
  # The data sit near the edge of [-1, 1], so the clip is active at the first step.
  t = jnp.full((_B,), len(_SHORT_BETAS) - 1, jnp.int32)
  x0_hat = dm.x0_from_eps(_SHORT, x_T, t, _clipping_oracle()(x_T, t))
  assert np.any(np.abs(x0_hat) > 1.0)


@pytest.mark.parametrize("sampler", [_ddpm_posterior, _ddim_all_steps])
def test_each_sample_depends_only_on_its_own_noise_and_key(sampler):
  x_T, keys = _normal(_B, 2, 6), _keys(_B, 6)
  perm = np.random.default_rng(0).permutation(_B)
  out = sampler(x_T, keys)
  np.testing.assert_allclose(sampler(x_T[perm], keys[perm]), out[perm], rtol=1e-6, atol=1e-7)
  other = sampler(x_T, keys.at[3].set(jax.random.key(99)))
  np.testing.assert_array_equal(np.delete(other, 3, 0), np.delete(out, 3, 0))
  assert not np.allclose(other[3], out[3])


# ---------------------------------------------------------------------------
# Classifier-free guidance and dispatch.
# ---------------------------------------------------------------------------


def test_guided_model_fn_combines_one_batched_call():
  calls = []

  def model(x, t, y):
    calls.append((x.shape, t.shape, y.shape))  # Python side effect: runs at trace time
    return jnp.sin(x * (1.0 + y[:, None].astype(x.dtype))) + 0.01 * t[:, None]

  b = _B
  labels = jnp.asarray(np.arange(b) % 3, jnp.int32)
  x, t = _normal(b, 2, 7), jnp.full((b,), 3, jnp.int32)
  cond, uncond = model(x, t, labels), model(x, t, jnp.full((b,), 5, jnp.int32))
  for scale, want in ((1.0, cond), (0.0, uncond), (2.5, uncond + 2.5 * (cond - uncond))):
    got = sd.guided_model_fn(model, labels, 5, scale)(x, t)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
  np.testing.assert_array_equal(sd.guided_model_fn(model, labels, 5, 1.0)(x, t), cond)
  np.testing.assert_array_equal(sd.guided_model_fn(model, labels, 5, 0.0)(x, t), uncond)
  # Inside a compiled sampler the model is traced once, on the doubled batch.
  calls.clear()
  guided = sd.guided_model_fn(model, labels, 5, 3.0)
  ts = sd.timesteps(20, 4, "trailing")
  out = jax.jit(lambda x: sd.ddim_sample(guided, _SHORT, x, _keys(b), timesteps=ts))(x)
  chex.assert_tree_all_finite(out)
  assert calls == [((2 * b, 2), (2 * b,), (2 * b,))]


def test_sample_dispatches_by_name(monkeypatch):
  calls = []
  for name in ("ddpm_sample", "ddim_sample"):
    fake = functools.partial(lambda name, *args, **kwargs: calls.append((name, args, kwargs)), name)
    monkeypatch.setattr(sd, name, fake)
  args = (_oracle(_SHORT), _SHORT, _normal(_B, 2, 8), _keys(_B, 8))
  sd.sample("ddpm", *args, clip_x0=False)
  sd.sample("ddim", *args, num_sample_steps=5, spacing="trailing", eta=0.3)
  sd.sample("ddim", *args, timesteps=[7, 2])
  sd.sample("ddim", *args)
  assert [(c[0], c[1]) for c in calls] == [("ddpm_sample", args)] + [("ddim_sample", args)] * 3
  assert calls[0][2] == {"clip_x0": False}
  np.testing.assert_array_equal(calls[1][2].pop("timesteps"), sd.timesteps(20, 5, "trailing"))
  assert calls[1][2] == {"eta": 0.3}
  assert calls[2][2] == {"timesteps": [7, 2]}
  np.testing.assert_array_equal(calls[3][2]["timesteps"], np.arange(19, -1, -1))
  with pytest.raises(ValueError, match="allowed.*ddpm"):
    sd.sample("euler", *args)
  with pytest.raises(ValueError, match="ddpm runs all 20"):
    sd.sample("ddpm", *args, num_sample_steps=5)


def test_ddpm_rejects_more_frames_than_steps():
  with pytest.raises(ValueError, match="trajectory_steps"):
    sd.ddpm_sample(
      _oracle(_SHORT),
      _SHORT,
      _normal(_B, 2, 8),
      _keys(_B),
      return_trajectory=True,
      trajectory_steps=21,
    )


def test_docstring_examples():
  result = doctest.testmod(sd, optionflags=doctest.NORMALIZE_WHITESPACE)
  assert result.attempted > 0 and result.failed == 0

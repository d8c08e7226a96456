"""Gaussian diffusion objectives: noise schedules, forward process, posteriors and losses.

Follows Ho et al. 2020 ("Denoising Diffusion Probabilistic Models") and its official
code (``diffusion_utils_2.py``) term by term, with the cosine schedule of Nichol &
Dhariwal 2021, the v-parameterization of Salimans & Ho 2022 and the Min-SNR-γ loss
weighting of Hang et al. 2023.

Conventions:
  * Timesteps are 0-indexed as in the official code: array index ``t`` in
    ``{0, ..., T-1}`` is the paper's step ``t + 1``. So ``betas[t]`` is the paper's
    β_{t+1}, ``alphas_cumprod[t] = prod_{s <= t} (1 - betas[s])`` (ᾱ), and
    ``alphas_cumprod_prev[0] = 1`` because the step before ``t = 0`` is the data.
    ``t = 0`` is the decoder step, ``t = T - 1`` the last noising step.
  * ``t`` is a per-example int array of shape ``[B]``; schedule values are gathered
    with :func:`extract` to ``[B, 1, ..., 1]`` and broadcast over ``x: [B, ...]``.
    Variances and log-variances are returned in that broadcastable shape.
  * Data ``x0`` lies in ``[-1, 1]``; the decoder likelihood assumes 256 levels.
  * Per-example losses have shape ``[B]``: the "simple" losses are means over the
    non-batch axes, variational-bound terms are nats summed over the non-batch axes.
  * Randomness comes from per-example typed keys ``keys: [B]``
    (see :mod:`genjax.core.random`).
  * Schedules are computed in float64 NumPy and stored as float32 arrays.
  * The heavier functions are jitted (string options static), so eager calls
    compile one program instead of dispatching many small ops.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import log_ndtr

from genjax.core import random
from genjax.objectives.reductions import sum_per_example

SCHEDULES = ("linear", "cosine")
PARAMETERIZATIONS = ("eps", "x0", "v")
WEIGHTINGS = ("simple", "vlb", "min_snr")
MODEL_VARIANCES = ("beta", "posterior")

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def check_choice(kind: str, value: str, allowed: tuple[str, ...]) -> None:
  """Refuses a named option outside ``allowed`` (schedules, parameterizations, ...)."""
  if value not in allowed:
    raise ValueError(f"unknown {kind} {value!r}; allowed: {list(allowed)}")


# ---------------------------------------------------------------------------
# Noise schedules.
# ---------------------------------------------------------------------------


def linear_betas(num_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02):
  """Linear schedule of Ho et al. 2020: β evenly spaced from ``beta_start`` to ``beta_end``.

  Args:
    num_steps: number of diffusion steps ``T``.
    beta_start: β of the first step.
    beta_end: β of the last step.

  Returns:
    float64 NumPy array ``[T]``.

  Example:
    >>> b = linear_betas(1000)
    >>> b.shape, float(b[0]), float(b[-1])
    ((1000,), 0.0001, 0.02)
  """
  return np.linspace(beta_start, beta_end, num_steps, dtype=np.float64)


def cosine_betas(num_steps: int, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
  """Cosine schedule of Nichol & Dhariwal 2021.

  ``ᾱ(t) = f(t) / f(0)`` with ``f(t) = cos²((t / T + s) / (1 + s) · π / 2)``, and
  ``β_t = 1 - ᾱ(t + 1) / ᾱ(t)`` clipped at ``max_beta`` (the last steps would
  otherwise reach β = 1, where x_T carries no signal and ε-prediction is singular).

  Args:
    num_steps: number of diffusion steps ``T``.
    s: small offset that keeps β of the first step from vanishing.
    max_beta: upper clip for β.

  Returns:
    float64 NumPy array ``[T]``.

  Example:
    >>> b = cosine_betas(1000)
    >>> float(b[-1])
    0.999
  """
  t = np.arange(num_steps + 1, dtype=np.float64) / num_steps
  f = np.cos((t + s) / (1.0 + s) * np.pi / 2) ** 2
  return np.minimum(1.0 - f[1:] / f[:-1], max_beta)


def make_betas(
  name: str, num_steps: int, beta_start: float = 1e-4, beta_end: float = 0.02
) -> np.ndarray:
  """Betas of a named schedule.

  Args:
    name: one of ``SCHEDULES``.
    num_steps: number of diffusion steps ``T``.
    beta_start: first β of the linear schedule (ignored for "cosine").
    beta_end: last β of the linear schedule (ignored for "cosine").

  Returns:
    float64 NumPy array ``[T]``.
  """
  check_choice("schedule", name, SCHEDULES)
  if name == "linear":
    return linear_betas(num_steps, beta_start, beta_end)
  return cosine_betas(num_steps)


class Schedule(NamedTuple):
  """Precomputed diffusion constants, each a float32 array ``[T]`` indexed by 0-based t.

  A pytree, so it can be passed to or closed over by jitted functions. Build it
  with :func:`make_schedule`.

  Attributes:
    betas: β_t.
    alphas_cumprod: ᾱ_t = prod_{s <= t} (1 - β_s).
    alphas_cumprod_prev: ᾱ_{t-1}, with 1 at t = 0.
    sqrt_alphas_cumprod: √ᾱ_t.
    sqrt_one_minus_alphas_cumprod: √(1 - ᾱ_t).
    log_one_minus_alphas_cumprod: log(1 - ᾱ_t).
    sqrt_recip_alphas_cumprod: 1 / √ᾱ_t.
    sqrt_recipm1_alphas_cumprod: √(1 / ᾱ_t - 1).
    posterior_variance: β̃_t = β_t (1 - ᾱ_{t-1}) / (1 - ᾱ_t), the variance of
      q(x_{t-1} | x_t, x_0); 0 at t = 0.
    posterior_log_variance_clipped: log β̃_t with β̃ at t = 1 used at t = 0 (where
      β̃ = 0), as in the official code.
    posterior_mean_coef1: coefficient of x_0 in the posterior mean.
    posterior_mean_coef2: coefficient of x_t in the posterior mean.
  """

  betas: jax.Array
  alphas_cumprod: jax.Array
  alphas_cumprod_prev: jax.Array
  sqrt_alphas_cumprod: jax.Array
  sqrt_one_minus_alphas_cumprod: jax.Array
  log_one_minus_alphas_cumprod: jax.Array
  sqrt_recip_alphas_cumprod: jax.Array
  sqrt_recipm1_alphas_cumprod: jax.Array
  posterior_variance: jax.Array
  posterior_log_variance_clipped: jax.Array
  posterior_mean_coef1: jax.Array
  posterior_mean_coef2: jax.Array

  @property
  def num_steps(self) -> int:
    """Number of diffusion steps ``T`` (static, also under jit)."""
    return self.betas.shape[0]


def make_schedule(betas) -> Schedule:
  """Computes every schedule constant in float64, then stores them as float32.

  Args:
    betas: β_t, array-like ``[T]`` with ``T >= 2`` and every value in ``(0, 1]``.
      β = 1 makes ᾱ = 0 at the end, where only the "x0" and "v"
      parameterizations stay defined.

  Returns:
    A :class:`Schedule`.

  Raises:
    ValueError: if ``betas`` is not 1-D with at least 2 entries in ``(0, 1]``.

  Example:
    >>> sched = make_schedule(linear_betas(1000))
    >>> sched.num_steps, float(sched.alphas_cumprod_prev[0])
    (1000, 1.0)
  """
  betas = np.asarray(betas, dtype=np.float64)
  if betas.ndim != 1 or betas.shape[0] < 2:
    raise ValueError(f"betas must be 1-D with at least 2 steps, got shape {betas.shape}")
  if not np.all((betas > 0.0) & (betas <= 1.0)):  # also rejects NaN
    raise ValueError(f"betas must lie in (0, 1], got min {np.min(betas)} and max {np.max(betas)}")
  alphas = 1.0 - betas
  ac = np.cumprod(alphas)
  ac_prev = np.append(1.0, ac[:-1])
  posterior_variance = betas * (1.0 - ac_prev) / (1.0 - ac)
  with np.errstate(divide="ignore"):  # β = 1 gives ᾱ = 0 and infinite reciprocals
    consts = dict(
      betas=betas,
      alphas_cumprod=ac,
      alphas_cumprod_prev=ac_prev,
      sqrt_alphas_cumprod=np.sqrt(ac),
      sqrt_one_minus_alphas_cumprod=np.sqrt(1.0 - ac),
      log_one_minus_alphas_cumprod=np.log(1.0 - ac),
      sqrt_recip_alphas_cumprod=np.sqrt(1.0 / ac),
      sqrt_recipm1_alphas_cumprod=np.sqrt(1.0 / ac - 1.0),
      posterior_variance=posterior_variance,
      # β̃ is 0 at t = 0; its log is clipped by reusing t = 1.
      posterior_log_variance_clipped=np.log(
        np.append(posterior_variance[1], posterior_variance[1:])
      ),
      posterior_mean_coef1=betas * np.sqrt(ac_prev) / (1.0 - ac),
      posterior_mean_coef2=(1.0 - ac_prev) * np.sqrt(alphas) / (1.0 - ac),
    )
  return Schedule(**{k: jnp.asarray(v, jnp.float32) for k, v in consts.items()})


def extract(values: jax.Array, t: jax.Array, ndim: int) -> jax.Array:
  """Gathers ``values[t]`` and reshapes it to broadcast against a batch of rank ``ndim``.

  Args:
    values: per-step constants ``[T]``.
    t: per-example timesteps ``[B]``, ints in ``[0, T)``.
    ndim: rank of the array to broadcast against (``x.ndim``, batch axis included).

  Returns:
    ``[B, 1, ..., 1]`` with ``ndim`` axes.
  """
  t = jnp.asarray(t)
  if t.ndim != 1:
    raise ValueError(f"t must be per-example timesteps of shape [B], got shape {t.shape}")
  return values[t].reshape(t.shape + (1,) * (ndim - 1))


# ---------------------------------------------------------------------------
# Forward process and its posterior.
# ---------------------------------------------------------------------------


def q_sample(schedule: Schedule, x0: jax.Array, t: jax.Array, noise: jax.Array) -> jax.Array:
  """Draws x_t ~ q(x_t | x_0) = N(√ᾱ_t x_0, (1 - ᾱ_t) I) with the given noise.

  Args:
    schedule: diffusion constants.
    x0: data ``[B, ...]`` in ``[-1, 1]``.
    t: timesteps ``[B]``.
    noise: standard normal ε, same shape as ``x0``.

  Returns:
    x_t ``[B, ...]``.

  Example:
    >>> import jax.numpy as jnp
    >>> sched = make_schedule(linear_betas(1000))
    >>> x0, eps = jnp.ones((2, 3)), jnp.zeros((2, 3))
    >>> q_sample(sched, x0, jnp.array([0, 999]), eps).round(4)
    Array([[1.    , 1.    , 1.    ],
           [0.0064, 0.0064, 0.0064]], dtype=float32)
  """
  return (
    extract(schedule.sqrt_alphas_cumprod, t, x0.ndim) * x0
    + extract(schedule.sqrt_one_minus_alphas_cumprod, t, x0.ndim) * noise
  )


def q_mean_variance(schedule: Schedule, x0: jax.Array, t: jax.Array):
  """Mean, variance and log-variance of q(x_t | x_0).

  Args:
    schedule: diffusion constants.
    x0: data ``[B, ...]``.
    t: timesteps ``[B]``.

  Returns:
    ``(mean [B, ...], variance [B, 1, ...], log_variance [B, 1, ...])``.
  """
  mean = extract(schedule.sqrt_alphas_cumprod, t, x0.ndim) * x0
  # Not 1 - ᾱ in float32, which loses precision where ᾱ is close to 1.
  variance = jnp.square(extract(schedule.sqrt_one_minus_alphas_cumprod, t, x0.ndim))
  log_variance = extract(schedule.log_one_minus_alphas_cumprod, t, x0.ndim)
  return mean, variance, log_variance


def q_posterior(schedule: Schedule, x0: jax.Array, x_t: jax.Array, t: jax.Array):
  """Mean and variance of the forward-process posterior q(x_{t-1} | x_t, x_0).

  Args:
    schedule: diffusion constants.
    x0: data ``[B, ...]``.
    x_t: noised data ``[B, ...]``.
    t: timesteps ``[B]``.

  Returns:
    ``(mean [B, ...], variance [B, 1, ...], log_variance_clipped [B, 1, ...])``;
    at ``t = 0`` the variance is 0 and the log-variance is that of ``t = 1``.
  """
  mean = (
    extract(schedule.posterior_mean_coef1, t, x0.ndim) * x0
    + extract(schedule.posterior_mean_coef2, t, x0.ndim) * x_t
  )
  variance = extract(schedule.posterior_variance, t, x0.ndim)
  log_variance = extract(schedule.posterior_log_variance_clipped, t, x0.ndim)
  return mean, variance, log_variance


# ---------------------------------------------------------------------------
# Parameterizations: conversions between x_0, ε and v.
# ---------------------------------------------------------------------------


def x0_from_eps(schedule: Schedule, x_t: jax.Array, t: jax.Array, eps: jax.Array) -> jax.Array:
  """x_0 = (x_t - √(1 - ᾱ_t) ε) / √ᾱ_t, all ``[B, ...]``."""
  return (
    extract(schedule.sqrt_recip_alphas_cumprod, t, x_t.ndim) * x_t
    - extract(schedule.sqrt_recipm1_alphas_cumprod, t, x_t.ndim) * eps
  )


def eps_from_x0(schedule: Schedule, x_t: jax.Array, t: jax.Array, x0: jax.Array) -> jax.Array:
  """ε = (x_t - √ᾱ_t x_0) / √(1 - ᾱ_t), all ``[B, ...]``."""
  return (extract(schedule.sqrt_recip_alphas_cumprod, t, x_t.ndim) * x_t - x0) / extract(
    schedule.sqrt_recipm1_alphas_cumprod, t, x_t.ndim
  )


def v_from_x0_eps(schedule: Schedule, t: jax.Array, x0: jax.Array, eps: jax.Array) -> jax.Array:
  """Velocity v = √ᾱ_t ε - √(1 - ᾱ_t) x_0 (Salimans & Ho 2022), all ``[B, ...]``."""
  return (
    extract(schedule.sqrt_alphas_cumprod, t, x0.ndim) * eps
    - extract(schedule.sqrt_one_minus_alphas_cumprod, t, x0.ndim) * x0
  )


def x0_from_v(schedule: Schedule, x_t: jax.Array, t: jax.Array, v: jax.Array) -> jax.Array:
  """x_0 = √ᾱ_t x_t - √(1 - ᾱ_t) v, all ``[B, ...]``."""
  return (
    extract(schedule.sqrt_alphas_cumprod, t, x_t.ndim) * x_t
    - extract(schedule.sqrt_one_minus_alphas_cumprod, t, x_t.ndim) * v
  )


def eps_from_v(schedule: Schedule, x_t: jax.Array, t: jax.Array, v: jax.Array) -> jax.Array:
  """ε = √(1 - ᾱ_t) x_t + √ᾱ_t v, all ``[B, ...]``."""
  return (
    extract(schedule.sqrt_one_minus_alphas_cumprod, t, x_t.ndim) * x_t
    + extract(schedule.sqrt_alphas_cumprod, t, x_t.ndim) * v
  )


def predict_x0_eps(
  schedule: Schedule, parameterization: str, x_t: jax.Array, t: jax.Array, output: jax.Array
):
  """Converts a network output in any parameterization to predictions of x_0 and ε.

  Args:
    schedule: diffusion constants.
    parameterization: one of ``PARAMETERIZATIONS``, what ``output`` predicts.
    x_t: noised input ``[B, ...]``.
    t: timesteps ``[B]``.
    output: network output ``[B, ...]``.

  Returns:
    ``(x0_hat, eps_hat)``, each ``[B, ...]``, unclipped.

  Example:
    >>> import jax.numpy as jnp
    >>> sched = make_schedule(linear_betas(10, 0.1, 0.2))
    >>> x_t, t = jnp.ones((1, 2)), jnp.array([3])
    >>> x0, eps = predict_x0_eps(sched, "v", x_t, t, jnp.zeros((1, 2)))
    >>> bool(jnp.allclose(q_sample(sched, x0, t, eps), x_t))
    True
  """
  check_choice("parameterization", parameterization, PARAMETERIZATIONS)
  if parameterization == "eps":
    return x0_from_eps(schedule, x_t, t, output), output
  if parameterization == "x0":
    return output, eps_from_x0(schedule, x_t, t, output)
  return x0_from_v(schedule, x_t, t, output), eps_from_v(schedule, x_t, t, output)


def training_target(
  schedule: Schedule, parameterization: str, x0: jax.Array, eps: jax.Array, t: jax.Array
) -> jax.Array:
  """Regression target of a parameterization: ε, x_0 or v, shape ``[B, ...]``."""
  check_choice("parameterization", parameterization, PARAMETERIZATIONS)
  if parameterization == "eps":
    return eps
  if parameterization == "x0":
    return x0
  return v_from_x0_eps(schedule, t, x0, eps)


def snr(schedule: Schedule, t: jax.Array) -> jax.Array:
  """Signal-to-noise ratio ᾱ_t / (1 - ᾱ_t), shape ``[B]``."""
  # From the square roots, which keep 1 - ᾱ accurate where ᾱ is close to 1.
  return jnp.square(schedule.sqrt_alphas_cumprod[t] / schedule.sqrt_one_minus_alphas_cumprod[t])


# ---------------------------------------------------------------------------
# Densities and the variational bound.
# ---------------------------------------------------------------------------


@jax.jit
def normal_kl(mean1, logvar1, mean2, logvar2) -> jax.Array:
  """Elementwise KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))) in nats.

  The official formula, with ``exp(d) - 1 - d`` written as ``expm1(d) - d`` so
  nearly equal variances do not cancel catastrophically.

  Args:
    mean1, logvar1, mean2, logvar2: mutually broadcastable arrays.

  Returns:
    KL with the broadcast shape.
  """
  d = logvar1 - logvar2
  return 0.5 * (jnp.expm1(d) - d + jnp.square(mean1 - mean2) * jnp.exp(-logvar2))


def _log_bin_mass(lo: jax.Array, hi: jax.Array, log_width: jax.Array) -> jax.Array:
  """log(Φ(hi) - Φ(lo)) for ``lo < hi``, accurate in both tails and NaN-free."""
  # Subtract on the side where the CDF is small, so the difference never cancels.
  flip = lo + hi > 0.0
  lo, hi = jnp.where(flip, -hi, lo), jnp.where(flip, -lo, hi)
  log_hi = log_ndtr(hi)
  frac = -jnp.expm1(log_ndtr(lo) - log_hi)  # 1 - Φ(lo) / Φ(hi), in [0, 1]
  exact = log_hi + jnp.log(jnp.maximum(frac, 1e-30))
  # Where the density barely changes across the bin (frac small), density x width
  # is accurate to ~frac², while the exact difference loses float32 precision.
  mid = 0.5 * (lo + hi)
  midpoint = -0.5 * jnp.square(mid) - _HALF_LOG_2PI + log_width
  return jnp.where(frac < 1e-3, midpoint, exact)


@jax.jit
def discretized_gaussian_log_likelihood(
  x: jax.Array, means: jax.Array, log_scales: jax.Array
) -> jax.Array:
  """Elementwise log-probability of 8-bit data under a discretized Gaussian.

  As in the official code, ``x`` lies in ``[-1, 1]`` on 256 levels, each level
  owns the Gaussian mass of a bin of width 2/255, and the edge bins extend to
  ±inf (thresholds ±0.999), so the 256 probabilities sum to one. The mass is
  computed with ``log_ndtr`` in log space instead of clamped CDF differences, so
  it stays accurate and finite for tiny scales and far-away means.

  Args:
    x: data ``[B, ...]`` in ``[-1, 1]`` on the 256-level grid.
    means: Gaussian means, broadcastable to ``x``.
    log_scales: log standard deviations, broadcastable to ``x``.

  Returns:
    Log-probabilities in nats with the broadcast shape (not summed).

  Example:
    >>> import jax.numpy as jnp
    >>> x = jnp.linspace(-1.0, 1.0, 256)
    >>> lp = discretized_gaussian_log_likelihood(x, 0.3, jnp.log(0.2))
    >>> round(float(jnp.exp(lp).sum()), 5)
    1.0
  """
  x, means, log_scales = jnp.broadcast_arrays(x, means, log_scales)
  inv_std = jnp.exp(-log_scales)
  centered = x - means
  plus_in = inv_std * (centered + 1.0 / 255.0)
  min_in = inv_std * (centered - 1.0 / 255.0)
  log_cdf_plus = log_ndtr(plus_in)
  log_one_minus_cdf_min = log_ndtr(-min_in)
  log_delta = _log_bin_mass(min_in, plus_in, math.log(2.0 / 255.0) - log_scales)
  return jnp.where(x < -0.999, log_cdf_plus, jnp.where(x > 0.999, log_one_minus_cdf_min, log_delta))


def _beta_log_variance(schedule: Schedule) -> jax.Array:
  # Official "fixedlarge": log β_t, with β̃ at t = 1 used at t = 0 so that the decoder
  # scale is not set by β_1 alone.
  return jnp.log(jnp.concatenate([schedule.posterior_variance[1:2], schedule.betas[1:]]))


def model_mean_variance(
  schedule: Schedule, model_variance: str, x_t: jax.Array, t: jax.Array, x0_hat: jax.Array
):
  """Mean and fixed variance of the reverse step p_θ(x_{t-1} | x_t).

  Args:
    schedule: diffusion constants.
    model_variance: one of ``MODEL_VARIANCES``: "beta" (σ² = β_t, the official
      "fixedlarge"; its log-variance uses β̃_1 at t = 0 as in the official code,
      while the returned variance is β_t) or "posterior" (σ² = β̃_t, "fixedsmall",
      clipped log).
    x_t: noised input ``[B, ...]``.
    t: timesteps ``[B]``.
    x0_hat: predicted x_0 ``[B, ...]`` (clip it first when sampling, if wanted).

  Returns:
    ``(mean [B, ...], variance [B, 1, ...], log_variance [B, 1, ...])``; the mean
    is the posterior mean of q(x_{t-1} | x_t, x0_hat).
  """
  check_choice("model_variance", model_variance, MODEL_VARIANCES)
  mean, posterior_var, posterior_log_var = q_posterior(schedule, x0_hat, x_t, t)
  if model_variance == "posterior":
    return mean, posterior_var, posterior_log_var
  variance = extract(schedule.betas, t, x_t.ndim)
  log_variance = extract(_beta_log_variance(schedule), t, x_t.ndim)
  return mean, variance, log_variance


def prior_kl(schedule: Schedule, x0: jax.Array) -> jax.Array:
  """KL(q(x_T | x_0) || N(0, I)) in nats summed over dims, shape ``[B]``.

  The prior term L_T of the bound; it has no parameters and is near zero for a
  well-chosen schedule.

  Args:
    schedule: diffusion constants.
    x0: data ``[B, ...]``.

  Returns:
    ``[B]``.
  """
  t = jnp.full((x0.shape[0],), schedule.num_steps - 1, jnp.int32)
  mean, _, log_variance = q_mean_variance(schedule, x0, t)
  return sum_per_example(normal_kl(mean, log_variance, 0.0, 0.0))


@functools.partial(jax.jit, static_argnames="model_variance")
def vlb_term(
  schedule: Schedule,
  model_variance: str,
  x0: jax.Array,
  x_t: jax.Array,
  t: jax.Array,
  x0_hat: jax.Array,
) -> jax.Array:
  """One term of the variational bound, nats summed over dims, shape ``[B]``.

  For ``t > 0`` it is L_{t} = KL(q(x_{t-1} | x_t, x_0) || p_θ(x_{t-1} | x_t)); for
  ``t = 0`` the decoder NLL -log p_θ(x_0 | x_1) under the discretized Gaussian
  with the model mean and log-scale 0.5 · model log-variance. ``t`` may mix both
  cases within a batch.

  Args:
    schedule: diffusion constants.
    model_variance: one of ``MODEL_VARIANCES``.
    x0: data ``[B, ...]`` on the 256-level grid in ``[-1, 1]``.
    x_t: ``q_sample(schedule, x0, t, eps)``, ``[B, ...]``.
    t: timesteps ``[B]``.
    x0_hat: the model's prediction of x_0, ``[B, ...]``.

  Returns:
    ``[B]``; the sum over all T timesteps plus :func:`prior_kl` is the negative
    ELBO in nats (divide by ``log(2) * num_dims`` for bits per dim).

  Example:
    >>> import jax.numpy as jnp
    >>> sched = make_schedule(linear_betas(1000))
    >>> x0 = jnp.zeros((2, 4))
    >>> vlb_term(sched, "posterior", x0, x0, jnp.array([5, 500]), x0)
    Array([0., 0.], dtype=float32)
  """
  true_mean, _, true_log_var = q_posterior(schedule, x0, x_t, t)
  model_mean, _, model_log_var = model_mean_variance(schedule, model_variance, x_t, t, x0_hat)
  kl = sum_per_example(normal_kl(true_mean, true_log_var, model_mean, model_log_var))
  decoder_nll = -sum_per_example(
    discretized_gaussian_log_likelihood(x0, model_mean, 0.5 * model_log_var)
  )
  return jnp.where(t == 0, decoder_nll, kl)


def _min_snr_weight(schedule: Schedule, parameterization: str, t: jax.Array, gamma) -> jax.Array:
  # Hang et al. 2023: min(SNR, γ) in x0-space, converted to each target's own scale.
  s = snr(schedule, t)
  clipped = jnp.minimum(s, gamma)
  if parameterization == "eps":
    return clipped / s
  if parameterization == "x0":
    return clipped
  return clipped / (s + 1.0)


@functools.partial(jax.jit, static_argnames=("parameterization", "weighting", "model_variance"))
def per_example_loss(
  schedule: Schedule,
  parameterization: str,
  weighting: str,
  model_output: jax.Array,
  x0: jax.Array,
  eps: jax.Array,
  t: jax.Array,
  x_t: jax.Array,
  *,
  model_variance: str = "beta",
  min_snr_gamma: float = 5.0,
) -> jax.Array:
  """Diffusion training loss per example, shape ``[B]``.

  Args:
    schedule: diffusion constants.
    parameterization: one of ``PARAMETERIZATIONS``, what ``model_output`` predicts.
    weighting: one of ``WEIGHTINGS``:
      "simple": mean squared error to the parameterization's own target, averaged
      over non-batch dims (Ho et al.'s L_simple for "eps");
      "min_snr": the simple loss times the Min-SNR-γ weight (Hang et al. 2023):
      min(SNR, γ) / SNR for "eps", min(SNR, γ) for "x0", min(SNR, γ) / (SNR + 1)
      for "v";
      "vlb": the true bound term :func:`vlb_term` (nats summed over dims) with
      x0_hat from the output, i.e. the λ_t of the variational bound.
    model_output: network output ``[B, ...]``.
    x0: data ``[B, ...]`` in ``[-1, 1]``.
    eps: the noise ``[B, ...]`` used to make ``x_t``.
    t: timesteps ``[B]``.
    x_t: ``q_sample(schedule, x0, t, eps)``.
    model_variance: reverse-process variance for "vlb" (one of ``MODEL_VARIANCES``).
    min_snr_gamma: γ for "min_snr".

  Returns:
    ``[B]``.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> sched = make_schedule(linear_betas(1000))
    >>> x0, eps, t = jnp.zeros((2, 3)), jnp.ones((2, 3)), jnp.array([1, 700])
    >>> x_t = q_sample(sched, x0, t, eps)
    >>> per_example_loss(sched, "eps", "simple", eps, x0, eps, t, x_t)
    Array([0., 0.], dtype=float32)
  """
  check_choice("weighting", weighting, WEIGHTINGS)
  check_choice("parameterization", parameterization, PARAMETERIZATIONS)
  if weighting == "vlb":
    x0_hat, _ = predict_x0_eps(schedule, parameterization, x_t, t, model_output)
    return vlb_term(schedule, model_variance, x0, x_t, t, x0_hat)
  target = training_target(schedule, parameterization, x0, eps, t)
  mse = jnp.square(model_output - target).reshape(x0.shape[0], -1).mean(axis=-1)
  if weighting == "simple":
    return mse
  return mse * _min_snr_weight(schedule, parameterization, t, min_snr_gamma)


# ---------------------------------------------------------------------------
# Training-time randomness.
# ---------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames="num_steps")
def sample_timesteps(keys: jax.Array, num_steps: int) -> jax.Array:
  """Draws one timestep per example uniformly from ``{0, ..., num_steps - 1}``.

  Args:
    keys: typed per-example keys ``[B]``.
    num_steps: number of diffusion steps ``T``.

  Returns:
    int32 ``[B]``; entry ``i`` depends only on ``keys[i]``.

  Example:
    >>> import jax
    >>> t = sample_timesteps(jax.random.split(jax.random.key(0), 4), 1000)
    >>> t.shape, t.dtype, bool(((t >= 0) & (t < 1000)).all())
    ((4,), dtype('int32'), True)
  """
  random.check_keys(keys)
  draw = functools.partial(jax.random.randint, shape=(), minval=0, maxval=num_steps)
  return jax.vmap(draw)(keys).astype(jnp.int32)


@jax.jit
def drop_labels(keys: jax.Array, labels: jax.Array, p_uncond: float, null_label) -> jax.Array:
  """Replaces each label by ``null_label`` with probability ``p_uncond``.

  Trains one network for both conditional and unconditional prediction, as
  classifier-free guidance needs (Ho & Salimans 2022). Use keys not used for
  anything else (e.g. one row of ``random.split(keys, n)``).

  Args:
    keys: typed per-example keys ``[B]``.
    labels: int labels ``[B]``.
    p_uncond: drop probability in ``[0, 1]`` (may be traced).
    null_label: the "no label" value, e.g. ``num_classes``.

  Returns:
    Labels ``[B]`` with the dtype of ``labels``; entry ``i`` depends only on
    ``keys[i]`` and ``labels[i]``.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> keys = jax.random.split(jax.random.key(0), 3)
    >>> drop_labels(keys, jnp.array([4, 5, 6]), 1.0, 10)
    Array([10, 10, 10], dtype=int32)
  """
  p = jnp.full(labels.shape[:1], p_uncond, jnp.float32)
  drop = random.bernoulli(keys, p)
  return jnp.where(drop, jnp.asarray(null_label, labels.dtype), labels)

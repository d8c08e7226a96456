"""Continuous-time diffusion: the VP, sub-VP and VE SDEs and denoising score matching.

Follows Song et al. 2021 ("Score-Based Generative Modeling through Stochastic
Differential Equations") and its official code, with the likelihood weighting of
Song et al. 2021 ("Maximum Likelihood Training of Score-Based Diffusion Models").

Every SDE here is linear, ``dx = f(t) x dt + g(t) dW`` on ``t ∈ [0, 1]``, so
``p(x_t | x_0) = N(m(t) x_0, σ(t)² I)`` in closed form:

  * VP (``kind="vp"``): ``f = -β/2``, ``g² = β``, ``m = √ᾱ``, ``σ² = 1 - ᾱ`` with
    ``ᾱ(t) = exp(-∫₀ᵗ β)``; the continuous limit of DDPM.
  * sub-VP (``kind="subvp"``): VP's drift with ``g² = β (1 - ᾱ²)``, ``σ = 1 - ᾱ``.
  * VE (``kind="ve"``): ``f = 0``, ``σ(t) = σ_min (σ_max / σ_min)^t``,
    ``g² = dσ²/dt``. As in the official code ``σ(0) = σ_min``: "x_0" is the data
    already perturbed by σ_min, which keeps the score finite at t = 0.

β(t) is "linear", ``β_min + t (β_max - β_min)`` (DDPM's schedule with T steps has
``β_min = T β_start``, ``β_max = T β_end``), or "cosine": the continuous ᾱ(t) of
Nichol & Dhariwal 2021, ``cos²((t + s) / (1 + s) · π/2) / cos²(s / (1 + s) · π/2)``,
whose β = π/(1+s) tan(·) diverges at t = 1; β is clipped at ``max_beta`` (ᾱ then
decays exponentially), the continuous counterpart of the discrete clip of β at 0.999.

Conventions: ``t`` is a float array ``[B]`` (one time per example); ``x`` is
``[B, ...]``; coefficients are broadcast with :func:`expand`. Randomness comes from
per-example typed keys ``[B]`` (:mod:`genjax.core.random`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable

import jax
import jax.numpy as jnp

from genjax.core import random
from genjax.objectives.diffusion import check_choice
from genjax.objectives.reductions import mean_per_example, sum_per_example

KINDS = ("vp", "subvp", "ve")
BETA_SCHEDULES = ("linear", "cosine")
PARAMETERIZATIONS = ("eps", "x0", "v")
WEIGHTINGS = ("simple", "likelihood")

ScoreFn = Callable[[jax.Array, jax.Array], jax.Array]


@jax.tree_util.register_static  # all fields are Python constants: jit treats it as static
@dataclasses.dataclass(frozen=True)
class SDE:
  """A linear forward SDE on t ∈ [0, 1]; build it with :func:`vp`, :func:`subvp` or :func:`ve`.

  Attributes:
    kind: one of ``KINDS``.
    schedule: β(t) of VP and sub-VP, one of ``BETA_SCHEDULES``.
    beta_min, beta_max: the linear schedule's β(0) and β(1).
    cosine_s: the cosine schedule's offset s.
    max_beta: the cosine schedule's clip for β.
    sigma_min, sigma_max: VE's σ(0) and σ(1).
  """

  kind: str = "vp"
  schedule: str = "linear"
  beta_min: float = 0.1
  beta_max: float = 20.0
  cosine_s: float = 0.008
  max_beta: float = 100.0
  sigma_min: float = 0.01
  sigma_max: float = 50.0

  def __post_init__(self):
    check_choice("sde kind", self.kind, KINDS)
    check_choice("beta schedule", self.schedule, BETA_SCHEDULES)


def vp(beta_min: float = 0.1, beta_max: float = 20.0, schedule: str = "linear", **kw) -> SDE:
  """The VP SDE (continuous DDPM). Extra keywords: ``cosine_s``, ``max_beta``."""
  return SDE("vp", schedule, float(beta_min), float(beta_max), **kw)


def subvp(beta_min: float = 0.1, beta_max: float = 20.0, schedule: str = "linear", **kw) -> SDE:
  """The sub-VP SDE, whose marginal variance stays below VP's."""
  return SDE("subvp", schedule, float(beta_min), float(beta_max), **kw)


def ve(sigma_min: float = 0.01, sigma_max: float = 50.0) -> SDE:
  """The VE SDE with geometric σ(t) (continuous NCSN / SMLD)."""
  return SDE("ve", sigma_min=float(sigma_min), sigma_max=float(sigma_max))


def vp_from_discrete(num_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02):
  """The VP SDE whose Euler discretization with ``num_steps`` steps is DDPM's linear schedule.

  Example:
    >>> vp_from_discrete(1000)
    SDE(kind='vp', schedule='linear', beta_min=0.1, beta_max=20.0, cosine_s=0.008, max_beta=100.0, sigma_min=0.01, sigma_max=50.0)
  """
  return vp(num_steps * beta_start, num_steps * beta_end)


def expand(c: jax.Array, x: jax.Array) -> jax.Array:
  """Reshapes per-example ``c [B]`` to ``[B, 1, ..., 1]`` to broadcast against ``x [B, ...]``."""
  return jnp.reshape(c, jnp.shape(c) + (1,) * (x.ndim - jnp.ndim(c)))


# ---------------------------------------------------------------------------
# Coefficients: closed forms in t (any shape, elementwise).
# ---------------------------------------------------------------------------


def _cosine_angle(sde: SDE, t):
  return (t + sde.cosine_s) / (1.0 + sde.cosine_s) * (math.pi / 2)


def _cosine_clip_time(sde: SDE) -> float:
  """The time at which the cosine schedule's β reaches ``max_beta``."""
  angle = math.atan(sde.max_beta * (1.0 + sde.cosine_s) / math.pi)
  return angle * 2.0 * (1.0 + sde.cosine_s) / math.pi - sde.cosine_s


def beta(sde: SDE, t: jax.Array) -> jax.Array:
  """β(t) = -d log ᾱ / dt of VP and sub-VP."""
  t = jnp.asarray(t, jnp.float32)
  if sde.schedule == "linear":
    return sde.beta_min + t * (sde.beta_max - sde.beta_min)
  tan = jnp.tan(_cosine_angle(sde, jnp.minimum(t, _cosine_clip_time(sde))))
  return jnp.where(t < _cosine_clip_time(sde), math.pi / (1.0 + sde.cosine_s) * tan, sde.max_beta)


def log_alpha_bar(sde: SDE, t: jax.Array) -> jax.Array:
  """log ᾱ(t) = -∫₀ᵗ β of VP and sub-VP (so ``m(t) = exp(log ᾱ / 2)``)."""
  t = jnp.asarray(t, jnp.float32)
  if sde.schedule == "linear":
    return -(sde.beta_min * t + 0.5 * (sde.beta_max - sde.beta_min) * jnp.square(t))
  t_clip = _cosine_clip_time(sde)
  log_cos = 2.0 * jnp.log(jnp.cos(_cosine_angle(sde, jnp.minimum(t, t_clip))))
  # The same float32 ops at t = 0, so that ᾱ(0) is exactly 1.
  log_cos0 = 2.0 * jnp.log(jnp.cos(_cosine_angle(sde, jnp.zeros_like(t))))
  return log_cos - log_cos0 - sde.max_beta * jnp.maximum(t - t_clip, 0.0)


def _ve_sigma(sde: SDE, t):
  return sde.sigma_min * jnp.power(sde.sigma_max / sde.sigma_min, t)


def mean_coef(sde: SDE, t: jax.Array) -> jax.Array:
  """m(t): the mean of p(x_t | x_0) is ``m(t) x_0``."""
  t = jnp.asarray(t, jnp.float32)
  if sde.kind == "ve":
    return jnp.ones_like(t)
  return jnp.exp(0.5 * log_alpha_bar(sde, t))


def std(sde: SDE, t: jax.Array) -> jax.Array:
  """σ(t), the standard deviation of p(x_t | x_0)."""
  t = jnp.asarray(t, jnp.float32)
  if sde.kind == "ve":
    return _ve_sigma(sde, t)
  one_minus = -jnp.expm1(log_alpha_bar(sde, t))  # 1 - ᾱ without cancellation near t = 0
  return one_minus if sde.kind == "subvp" else jnp.sqrt(one_minus)


def drift_coef(sde: SDE, t: jax.Array) -> jax.Array:
  """f(t) of the linear drift ``f(x, t) = f(t) x``."""
  t = jnp.asarray(t, jnp.float32)
  return jnp.zeros_like(t) if sde.kind == "ve" else -0.5 * beta(sde, t)


def diffusion(sde: SDE, t: jax.Array) -> jax.Array:
  """g(t), the diffusion coefficient."""
  t = jnp.asarray(t, jnp.float32)
  if sde.kind == "ve":
    return _ve_sigma(sde, t) * math.sqrt(2.0 * math.log(sde.sigma_max / sde.sigma_min))
  b = beta(sde, t)
  if sde.kind == "vp":
    return jnp.sqrt(b)
  return jnp.sqrt(b * -jnp.expm1(2.0 * log_alpha_bar(sde, t)))


def drift(sde: SDE, x: jax.Array, t: jax.Array) -> jax.Array:
  """f(x, t) for ``x [B, ...]`` and ``t [B]``."""
  return expand(drift_coef(sde, t), x) * x


def transition(sde: SDE, s: jax.Array, t: jax.Array):
  """``(a, v)`` with ``p(x_t | x_s) = N(a x_s, v I)`` for ``s <= t``.

  ``a = m(t) / m(s)`` and ``v = σ(t)² - a² σ(s)²``: the exact one-step
  discretization used by the reverse-diffusion predictor.
  """
  a = mean_coef(sde, t) / mean_coef(sde, s)
  return a, jnp.maximum(jnp.square(std(sde, t)) - jnp.square(a * std(sde, s)), 0.0)


# ---------------------------------------------------------------------------
# Forward process, prior and time sampling.
# ---------------------------------------------------------------------------


def perturb(sde: SDE, x0: jax.Array, t: jax.Array, noise: jax.Array) -> jax.Array:
  """x_t = m(t) x_0 + σ(t) ε, the continuous-time ``q_sample``."""
  return expand(mean_coef(sde, t), x0) * x0 + expand(std(sde, t), x0) * noise


def prior_std(sde: SDE) -> float:
  """Standard deviation of the prior N(0, σ² I) at t = 1."""
  return sde.sigma_max if sde.kind == "ve" else 1.0


def prior_sample(sde: SDE, keys: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """x_1 ~ N(0, prior_std² I), ``[B, *shape]``; row i depends only on ``keys[i]``."""
  return prior_std(sde) * random.normal(keys, shape)


def prior_log_prob(sde: SDE, x: jax.Array) -> jax.Array:
  """log N(x; 0, prior_std² I) in nats, summed per example, ``[B]``."""
  s = prior_std(sde)
  d = x[0].size
  return -0.5 * sum_per_example(jnp.square(x / s)) - d * (math.log(s) + 0.5 * math.log(2 * math.pi))


def sample_time(keys: jax.Array, t_min: float = 1e-5) -> jax.Array:
  """t ~ U(t_min, 1) per example, ``[B]``; t_min keeps the loss away from σ → 0."""
  return random.uniform(keys, (), minval=t_min, maxval=1.0)


# ---------------------------------------------------------------------------
# Parameterizations and scores.
# ---------------------------------------------------------------------------


def score_from_eps(sde: SDE, eps: jax.Array, t: jax.Array) -> jax.Array:
  """score = -ε / σ(t): the score of p(x_t | x_0), and of p_t when ε = E[ε | x_t]."""
  return -eps / expand(std(sde, t), eps)


def eps_from_score(sde: SDE, score: jax.Array, t: jax.Array) -> jax.Array:
  """ε = -σ(t) score, the inverse of :func:`score_from_eps`."""
  return -expand(std(sde, t), score) * score


def tweedie_denoise(sde: SDE, x_t: jax.Array, t: jax.Array, score: jax.Array) -> jax.Array:
  """Tweedie's formula E[x_0 | x_t] = (x_t + σ² ∇log p_t(x_t)) / m.

  Example:
    >>> import jax.numpy as jnp
    >>> sde = vp()
    >>> x, t = jnp.ones((1, 2)), jnp.array([0.5])
    >>> (tweedie_denoise(sde, x, t, jnp.zeros((1, 2))) * mean_coef(sde, t)).round(5)
    Array([[1., 1.]], dtype=float32)
  """
  s = expand(std(sde, t), x_t)
  return (x_t + jnp.square(s) * score) / expand(mean_coef(sde, t), x_t)


def predict_eps(
  sde: SDE, parameterization: str, x_t: jax.Array, t: jax.Array, output: jax.Array
) -> jax.Array:
  """Converts a network output that predicts ε, x_0 or v to a prediction of ε.

  v is ``m ε - σ x_0`` (Salimans & Ho 2022 when m² + σ² = 1); inverting
  ``[x_t, v] = [[m, σ], [-σ, m]] [x_0, ε]`` gives ``ε = (σ x_t + m v) / (m² + σ²)``,
  valid for every SDE here.
  """
  check_choice("parameterization", parameterization, PARAMETERIZATIONS)
  if parameterization == "eps":
    return output
  m, s = expand(mean_coef(sde, t), x_t), expand(std(sde, t), x_t)
  if parameterization == "x0":
    return (x_t - m * output) / s
  return (s * x_t + m * output) / (jnp.square(m) + jnp.square(s))


def training_target(
  sde: SDE, parameterization: str, x0: jax.Array, noise: jax.Array, t: jax.Array
) -> jax.Array:
  """Regression target of a parameterization: ε, x_0 or v = m ε - σ x_0."""
  check_choice("parameterization", parameterization, PARAMETERIZATIONS)
  if parameterization == "eps":
    return noise
  if parameterization == "x0":
    return x0
  return expand(mean_coef(sde, t), x0) * noise - expand(std(sde, t), x0) * x0


def model_score_fn(sde: SDE, model_fn, parameterization: str = "eps") -> ScoreFn:
  """Wraps ``model_fn(x_t [B, ...], t [B]) -> output`` as ``score_fn(x_t, t)``."""
  check_choice("parameterization", parameterization, PARAMETERIZATIONS)

  def score_fn(x: jax.Array, t: jax.Array) -> jax.Array:
    eps = predict_eps(sde, parameterization, x, t, model_fn(x, t))
    return score_from_eps(sde, eps, t)

  return score_fn


def reverse_drift(sde: SDE, score: jax.Array, x: jax.Array, t: jax.Array) -> jax.Array:
  """Drift of the reverse-time SDE, ``f(x, t) - g(t)² score``."""
  return drift(sde, x, t) - expand(jnp.square(diffusion(sde, t)), x) * score


def ode_drift(sde: SDE, score: jax.Array, x: jax.Array, t: jax.Array) -> jax.Array:
  """Velocity of the probability-flow ODE, ``f(x, t) - g(t)² score / 2``."""
  return drift(sde, x, t) - 0.5 * expand(jnp.square(diffusion(sde, t)), x) * score


# ---------------------------------------------------------------------------
# Denoising score matching.
# ---------------------------------------------------------------------------


def likelihood_weight(sde: SDE, t: jax.Array) -> jax.Array:
  """λ(t) = g(t)², the weighting that makes score matching bound the NLL."""
  return jnp.square(diffusion(sde, t))


@functools.partial(jax.jit, static_argnames=("sde", "parameterization", "weighting"))
def dsm_loss(
  sde: SDE,
  model_output: jax.Array,
  x0: jax.Array,
  noise: jax.Array,
  t: jax.Array,
  *,
  parameterization: str = "eps",
  weighting: str = "simple",
) -> jax.Array:
  """Continuous-time denoising score matching loss per example, ``[B]``.

  The network sees ``x_t = perturb(sde, x0, t, noise)`` and outputs
  ``model_output`` in ``parameterization``.

  Args:
    sde: the forward SDE.
    model_output: network output ``[B, ...]``.
    x0: data ``[B, ...]``.
    noise: the ε ``[B, ...]`` that made x_t.
    t: times ``[B]``, e.g. from :func:`sample_time`.
    parameterization: one of ``PARAMETERIZATIONS``.
    weighting: one of ``WEIGHTINGS``. "simple": mean squared error to the
      parameterization's own target over non-batch dims (for "eps", Song et al.'s
      λ = σ² up to a factor). "likelihood": ``g(t)²/2 · Σ ||s_θ - ∇log p(x_t|x_0)||²``
      with s_θ the model's score; its expectation over t ~ U(0, 1) plus the prior
      KL bounds the NLL up to a constant that does not depend on the model
      (Song et al. 2021, Theorem 1).

  Returns:
    ``[B]``.
  """
  check_choice("weighting", weighting, WEIGHTINGS)
  if weighting == "simple":
    target = training_target(sde, parameterization, x0, noise, t)
    return mean_per_example(jnp.square(model_output - target))
  x_t = perturb(sde, x0, t, noise)
  eps_hat = predict_eps(sde, parameterization, x_t, t, model_output)
  score_error = score_from_eps(sde, eps_hat - noise, t)
  return 0.5 * likelihood_weight(sde, t) * sum_per_example(jnp.square(score_error))

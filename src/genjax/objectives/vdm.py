"""Variational diffusion models (Kingma et al. 2021): learned schedule and continuous-time ELBO.

Follows the paper and the official ``google-research/vdm`` code:

  * The forward process is variance preserving with ``α_t² = sigmoid(-γ(t))`` and
    ``σ_t² = sigmoid(γ(t))``, so ``SNR(t) = exp(-γ(t))``.
  * ``γ(t) = γ₀ + (γ₁ - γ₀) · u(t)`` with ``u(t) = (γ̃(t) - γ̃(0)) / (γ̃(1) - γ̃(0))``
    and ``γ̃`` the monotone network of the paper's appendix H (official
    ``NoiseSchedule_NNet``): a positive-weight linear term plus a positive-weight MLP
    with a sigmoid layer. The endpoints γ₀, γ₁ are parameters of their own, so the
    ELBO depends on the schedule only through them (the paper's eq. 14); the shape
    ``u`` then only changes the variance of the Monte Carlo estimate, and it is
    trained to minimise that variance (:func:`variance_weighted`).
  * The data are the 8-bit levels ``x ∈ {0..255}`` encoded as ``(x + ½) / 128 - 1``
    (official ``EncDec.encode``). The bound is that of the discrete data, so its
    bits/dim compare directly with a discrete DDPM bound.
  * The loss per example has three terms in nats: the prior ``KL(q(z₁|x) || N(0, I))``,
    the reconstruction ``-log p(x | z₀)`` under a factorised 256-way decoder whose
    logits are ``-½ (z₀/α₀ - v)² / exp(γ₀)`` for every encoded level ``v``, and the
    continuous-time diffusion loss ``½ γ'(t) ||ε - ε̂(z_t; t)||²`` with ``t ~ U(0, 1)``.

Conventions: per-example arrays ``[B]``; ``x``, ``z``, ``ε`` are ``[B, ...]``.
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp

from genjax.objectives.reductions import sum_per_example

VOCAB_SIZE = 256
SCHEDULES = ("learned", "fixed")
TIME_SAMPLINGS = ("low_discrepancy", "uniform")


# ---------------------------------------------------------------------------
# The noise schedule.
# ---------------------------------------------------------------------------


def init_shape(key: jax.Array, features: int = 1024) -> dict[str, jax.Array]:
  """Parameters of the monotone network γ̃ (official init: N(0, 0.01²) kernels, zero bias).

  Its small kernels make the initial schedule linear in t to within about 10⁻⁴.
  """
  k2, k3 = jax.random.split(key)
  return {
    "l1_kernel": jnp.ones((), jnp.float32),
    "l2_kernel": 0.01 * jax.random.normal(k2, (features,), jnp.float32),
    "l2_bias": jnp.zeros((features,), jnp.float32),
    "l3_kernel": 0.01 * jax.random.normal(k3, (features,), jnp.float32),
  }


def init_schedule(
  key: jax.Array, gamma0: float = -13.3, gamma1: float = 5.0, features: int = 1024
) -> dict:
  """``{"gamma0", "gamma1", "shape"}``: the learned endpoints and the shape network."""
  return {
    "gamma0": jnp.asarray(gamma0, jnp.float32),
    "gamma1": jnp.asarray(gamma1, jnp.float32),
    "shape": init_shape(key, features),
  }


def _unnormalised_shape(shape: dict, t: jax.Array) -> jax.Array:
  """γ̃(t), increasing in t: every weight enters through its absolute value."""
  t = jnp.asarray(t, jnp.float32)
  h = jnp.abs(shape["l2_kernel"]) * (2.0 * t[..., None] - 1.0) + shape["l2_bias"]
  # 2 (sigmoid - ½) rather than tanh, as the official code (more stable, it says).
  hidden = 2.0 * (jax.nn.sigmoid(h) - 0.5)
  nonlinear = jnp.sum(jnp.abs(shape["l3_kernel"]) * hidden, axis=-1) / shape["l3_kernel"].shape[0]
  return jnp.abs(shape["l1_kernel"]) * t + nonlinear


def schedule_fraction(shape: dict, t: jax.Array) -> jax.Array:
  """``u(t) ∈ [0, 1]``, increasing, with ``u(0) = 0`` and ``u(1) = 1`` exactly."""
  lo, hi = _unnormalised_shape(shape, 0.0), _unnormalised_shape(shape, 1.0)
  return (_unnormalised_shape(shape, t) - lo) / (hi - lo)


def fraction_and_slope(shape: dict, t: jax.Array) -> tuple[jax.Array, jax.Array]:
  """``(u(t), du/dt)`` for times ``t: [B]`` (one forward-mode pass)."""
  return jax.jvp(lambda s: schedule_fraction(shape, s), (t,), (jnp.ones_like(t),))


def gamma(schedule: dict, t: jax.Array) -> jax.Array:
  """γ(t) = γ₀ + (γ₁ - γ₀) u(t) of a learned schedule (:func:`init_schedule`)."""
  g0, g1 = schedule["gamma0"], schedule["gamma1"]
  return g0 + (g1 - g0) * schedule_fraction(schedule["shape"], t)


def alpha_sigma_sq(gamma_t: jax.Array) -> tuple[jax.Array, jax.Array]:
  """``(α², σ²) = (sigmoid(-γ), sigmoid(γ))``; they sum to one (variance preserving)."""
  return jax.nn.sigmoid(-gamma_t), jax.nn.sigmoid(gamma_t)


def _expand(c: jax.Array, x: jax.Array) -> jax.Array:
  c = jnp.asarray(c)
  return c.reshape(c.shape + (1,) * (x.ndim - c.ndim))


def diffuse(f: jax.Array, gamma_t: jax.Array, eps: jax.Array) -> jax.Array:
  """``z_t = α_t f + σ_t ε`` for ``gamma_t: [B]`` (or a scalar)."""
  alpha_sq, sigma_sq = alpha_sigma_sq(gamma_t)
  return _expand(jnp.sqrt(alpha_sq), f) * f + _expand(jnp.sqrt(sigma_sq), f) * eps


# ---------------------------------------------------------------------------
# Data, decoder and prior.
# ---------------------------------------------------------------------------


def to_levels(x: jax.Array) -> jax.Array:
  """The 8-bit levels ``[..] int32`` of data in [-1, 1] scaled as ``level / 127.5 - 1``."""
  return jnp.clip(jnp.round((x + 1.0) * 127.5), 0, VOCAB_SIZE - 1).astype(jnp.int32)


def encode(levels: jax.Array) -> jax.Array:
  """Levels {0..255} to the centres of 256 equal bins of [-1, 1]: ``(x + ½) / 128 - 1``."""
  return 2.0 * ((jnp.asarray(levels, jnp.float32) + 0.5) / VOCAB_SIZE) - 1.0


def from_levels(levels: jax.Array) -> jax.Array:
  """Levels back to the data range of ``scale_pm1`` (``level / 127.5 - 1``)."""
  return jnp.asarray(levels, jnp.float32) / 127.5 - 1.0


def decoder_log_probs(z_rescaled: jax.Array, gamma0: jax.Array) -> jax.Array:
  """``log p(x = level | z₀)`` over the 256 levels, ``[..., 256]``.

  Args:
    z_rescaled: ``z₀ / α₀``, any shape.
    gamma0: γ(0), a scalar; ``exp(γ₀) = σ₀² / α₀²`` is the Gaussian's variance.
  """
  values = encode(jnp.arange(VOCAB_SIZE))
  logits = -0.5 * jnp.square(z_rescaled[..., None] - values) * jnp.exp(-gamma0)
  return jax.nn.log_softmax(logits, axis=-1)


def reconstruction_loss(levels: jax.Array, z_rescaled: jax.Array, gamma0: jax.Array) -> jax.Array:
  """``-log p(x | z₀)`` in nats, ``[B]``, of levels ``[B, ...]``."""
  log_probs = decoder_log_probs(z_rescaled, gamma0)
  picked = jnp.take_along_axis(log_probs, levels[..., None], axis=-1)[..., 0]
  return -sum_per_example(picked)


def prior_kl(f: jax.Array, gamma1: jax.Array) -> jax.Array:
  """``KL(N(α₁ f, σ₁²) || N(0, 1))`` summed per example, nats ``[B]``."""
  alpha_sq, sigma_sq = alpha_sigma_sq(gamma1)
  log_sigma_sq = jax.nn.log_sigmoid(gamma1)
  return 0.5 * sum_per_example(alpha_sq * jnp.square(f) + sigma_sq - log_sigma_sq - 1.0)


# ---------------------------------------------------------------------------
# The diffusion loss.
# ---------------------------------------------------------------------------


def diffusion_loss(eps: jax.Array, eps_hat: jax.Array, gamma_slope: jax.Array) -> jax.Array:
  """Continuous-time diffusion loss ``½ γ'(t) ||ε - ε̂||²`` in nats, ``[B]``.

  Its expectation over ``t ~ U(0, 1)`` and ε is the T → ∞ limit of the discrete
  loss (:func:`discrete_diffusion_loss`).

  >>> import jax.numpy as jnp
  >>> eps = jnp.ones((2, 3)); diffusion_loss(eps, 0 * eps, jnp.array([2.0, 1.0]))
  Array([3. , 1.5], dtype=float32)
  """
  return 0.5 * gamma_slope * sum_per_example(jnp.square(eps - eps_hat))


def discrete_diffusion_loss(
  eps: jax.Array, eps_hat: jax.Array, gamma_t: jax.Array, gamma_s: jax.Array, num_steps: int
) -> jax.Array:
  """The T-step loss ``½ T (exp(γ(t) - γ(s)) - 1) ||ε - ε̂||²`` at ``s = t - 1/T``, ``[B]``."""
  return 0.5 * num_steps * jnp.expm1(gamma_t - gamma_s) * sum_per_example(jnp.square(eps - eps_hat))


def low_discrepancy_times(offset: jax.Array, index: jax.Array, count: int) -> jax.Array:
  """``t_i = (offset + i / count) mod 1``: one shared uniform offset, evenly spread times.

  With ``index`` the examples' positions in the global batch and ``count`` its size,
  every batch covers [0, 1) evenly (the paper's low-discrepancy sampler), whatever
  the device layout, and each ``t_i`` is still marginally uniform.
  """
  return jnp.mod(offset + jnp.asarray(index, jnp.float32) / count, 1.0)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _variance_weighted(loss_fn, u, du, args):
  return loss_fn(u, du, *args)


def _variance_weighted_fwd(loss_fn, u, du, args):
  loss, vjp = jax.vjp(lambda u, du, args: loss_fn(u, du, *args), u, du, args)
  return loss, (loss, vjp)


def _variance_weighted_bwd(loss_fn, residuals, cotangent):
  del loss_fn
  loss, vjp = residuals
  cot_u, cot_du, cot_args = vjp(cotangent)
  # Example i's loss depends on u_i alone: scaling its cotangent by 2 L_i turns
  # d mean(L) / du into d mean(L²) / du, one backward pass for both gradients.
  scale = 2.0 * loss
  return cot_u * scale, cot_du * scale, cot_args


_variance_weighted.defvjp(_variance_weighted_fwd, _variance_weighted_bwd)


def variance_weighted(
  loss_fn: Callable[..., jax.Array], u: jax.Array, du: jax.Array, *args
) -> jax.Array:
  """``loss_fn(u, du, *args) -> L [B]`` whose gradient w.r.t. the schedule is that of ``L²``.

  The paper's variance minimisation (section 5.2): the schedule's endpoints get the
  ELBO's gradient, its shape the gradient of the estimator's second moment
  ``E[L²]``, which is the variance's gradient because ``E[L]`` does not depend on
  the shape. Only the cotangents of the per-example ``u = u(t_i)`` and
  ``du = u'(t_i)`` (through which the shape enters) are multiplied by ``2 L_i``;
  those of ``args`` (network weights, endpoints, data) are the loss's own.

  Args:
    loss_fn: per-example loss; example ``i`` must depend on ``u[i]``, ``du[i]`` only.
    u, du: ``[B]`` schedule fraction and its time derivative.
    *args: the loss's other inputs (arrays or pytrees of arrays).

  Returns:
    ``L [B]``, the value of ``loss_fn(u, du, *args)``.
  """
  return _variance_weighted(loss_fn, u, du, args)


# ---------------------------------------------------------------------------
# Sampling.
# ---------------------------------------------------------------------------


def ancestral_step(
  z_t: jax.Array, eps_hat: jax.Array, gamma_t: jax.Array, gamma_s: jax.Array, noise: jax.Array
) -> jax.Array:
  """One draw from ``p(z_s | z_t) = q(z_s | z_t, x = x̂(z_t))`` for ``s < t`` (official ``sample``).

  Args:
    z_t: ``[B, ...]``; eps_hat: ε̂(z_t; t); gamma_t, gamma_s: scalars or ``[B]``;
    noise: standard normal, like ``z_t``.
  """
  alpha_sq_s, sigma_sq_s = alpha_sigma_sq(gamma_s)
  alpha_sq_t, sigma_sq_t = alpha_sigma_sq(gamma_t)
  c = -jnp.expm1(gamma_s - gamma_t)  # 1 - SNR(t) / SNR(s)
  mean = _expand(jnp.sqrt(alpha_sq_s / alpha_sq_t), z_t) * (
    z_t - _expand(jnp.sqrt(sigma_sq_t) * c, z_t) * eps_hat
  )
  return mean + _expand(jnp.sqrt(sigma_sq_s * c), z_t) * noise

"""Exact log-likelihood of a score model through its probability-flow ODE.

The probability-flow ODE ``dx/dt = v(x, t) = f(x, t) - g(t)² ∇log p_t(x) / 2``
transports p_t exactly, and along a solution ``d log p_t(x(t)) / dt = -∇·v``
(instantaneous change of variables, Chen et al. 2018). Integrating from
``t_min`` to 1 (Song et al. 2021, Appendix D.2)::

  log p_{t_min}(x) = log p_1(x(1)) + ∫_{t_min}^1 ∇·v(x(t), t) dt,

with the prior N(0, prior_std² I) standing in for p_1. The divergence is exact
(D Jacobian-vector products, for small D) or Hutchinson's estimate
``E[εᵀ (∂v/∂x) ε]`` with Rademacher or Gaussian probes ε held fixed for the whole
solve, which keeps the estimate of log p unbiased. Each example is solved on
its own (:func:`genjax.core.ode.solve_per_example`) with probes from its own key.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from genjax.core import ode, random
from genjax.objectives import sde as sdes
from genjax.objectives.diffusion import check_choice
from genjax.objectives.sde import SDE, ScoreFn

TRACES = ("exact", "hutchinson")
PROBES = ("rademacher", "gaussian")


def _probes(keys: jax.Array, shape, trace: str, probe: str, num_probes: int):
  """Probe vectors ``[B, P, *shape]`` and their weight in the average."""
  b, d = keys.shape[0], math.prod(shape)
  if trace == "exact":  # Σ_i e_iᵀ J e_i over the standard basis is the trace
    basis = jnp.eye(d, dtype=jnp.float32).reshape((d,) + tuple(shape))
    return jnp.broadcast_to(basis, (b,) + basis.shape), 1.0
  z = random.normal(keys, (num_probes,) + tuple(shape))
  if probe == "rademacher":
    z = jnp.sign(z)  # ±1 with probability 1/2 each
  return z, 1.0 / num_probes


@functools.partial(
  jax.jit,
  static_argnames=("score_fn", "sde", "trace", "probe", "num_probes", "return_nfe"),
)
def log_likelihood(
  score_fn: ScoreFn,
  sde: SDE,
  x: jax.Array,
  keys: jax.Array,
  *,
  trace: str = "hutchinson",
  probe: str = "rademacher",
  num_probes: int = 1,
  t_min: float = 1e-5,
  rtol: float = 1e-5,
  atol: float = 1e-5,
  return_nfe: bool = False,
):
  """log p_{t_min}(x) in nats per example through the probability-flow ODE.

  Args:
    score_fn: ``(x [B, ...], t [B]) -> score [B, ...]`` (a hashable callable: it is
      a static argument of the jitted solve).
    sde: the forward SDE.
    x: data ``[B, ...]`` (dequantized, see :func:`dequantize`, for discrete data).
    keys: typed per-example keys ``[B]`` for the probes (unused by "exact").
    trace: one of ``TRACES``; "exact" costs D Jacobian-vector products per evaluation.
    probe: Hutchinson probe distribution, one of ``PROBES``.
    num_probes: Hutchinson probes per example, averaged.
    t_min: start of the integration; the result is the density of p_{t_min}.
    rtol, atol: tolerances of the adaptive solver (Tsit5).
    return_nfe: also return the evaluations of the ODE's velocity per example.

  Returns:
    ``log_p [B]``, or ``(log_p, nfe [B])``.
  """
  check_choice("trace", trace, TRACES)
  check_choice("probe", probe, PROBES)
  random.check_keys(keys)
  probes, weight = _probes(keys, x.shape[1:], trace, probe, num_probes)

  def velocity(y, t):  # one example
    tb = jnp.full((1,), t, jnp.float32)
    return sdes.ode_drift(sde, score_fn(y[None], tb), y[None], tb)[0]

  def field(t, state):
    y, _, eps = state
    v, jvp = jax.linearize(lambda y: velocity(y, t), y)
    div = weight * jnp.sum(eps * jax.vmap(jvp)(eps))
    return v, div, jnp.zeros_like(eps)

  state = (x, jnp.zeros((x.shape[0],), jnp.float32), probes)
  (z, delta, _), nfe = ode.solve_per_example(field, state, t_min, 1.0, rtol=rtol, atol=atol)
  log_p = sdes.prior_log_prob(sde, z) + delta
  return (log_p, nfe) if return_nfe else log_p


def dequantize(keys: jax.Array, x: jax.Array) -> jax.Array:
  """Uniform dequantization of 8-bit data scaled to [-1, 1].

  ``x`` holds levels ``k / 127.5 - 1`` for ``k ∈ {0, ..., 255}``; the result is
  ``(k + u) / 128 - 1`` with ``u ~ U[0, 1)`` per element, a continuous variable
  in ``[-1, 1)`` whose density under a model gives the bound of
  :func:`bits_per_dim_8bit`.
  """
  k = jnp.round((x + 1.0) * 127.5)
  return (k + random.uniform(keys, x.shape[1:])) / 128.0 - 1.0


def bits_per_dim_8bit(log_p: jax.Array, num_dims: int) -> jax.Array:
  """Bits per dimension of 8-bit data from the log-density of its dequantized version.

  With ``u = k + U ∈ [0, 256)`` the dequantized pixel value and ``x = u / 128 - 1``
  (:func:`dequantize`), the change of variables gives
  ``log p_u(u) = log p_x(x) + D log(2 / 256)``, and ``-log p_u`` upper-bounds the
  NLL of the discrete data in nats (Theis et al. 2016). So
  ``bpd = -log p_x / (D ln 2) + log₂ 128 = -log p_x / (D ln 2) + 7``.

  Args:
    log_p: log p_x(x) in nats per example ``[B]``, e.g. from :func:`log_likelihood`.
    num_dims: D, dimensions per example.

  Returns:
    ``[B]``.

  Example:
    >>> import math, jax.numpy as jnp
    >>> bits_per_dim_8bit(jnp.array([3 * math.log(0.5)]), 3)  # uniform density on [-1, 1)³
    Array([8.], dtype=float32)
  """
  return -log_p / (num_dims * math.log(2.0)) + 7.0

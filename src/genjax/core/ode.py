"""Adaptive ODE integration with diffrax, one independent solve per example.

Each example gets its own step sizes (the solve is vmapped over the batch), so an
example's result and its number of function evaluations do not depend on the rest
of the batch, as with per-example keys in :mod:`genjax.core.random`.
"""

from __future__ import annotations

from typing import Callable

import diffrax
import jax
import jax.numpy as jnp

# Tsit5 has 7 stages and reuses the last as the next step's first (FSAL): 6 new
# evaluations per attempted step, plus 1 for the first step's first stage.
_TSIT5_EVALS_PER_STEP = 6


def solve_per_example(
  field: Callable,
  y0,
  t0: float,
  t1: float,
  *,
  rtol: float = 1e-5,
  atol: float = 1e-5,
  max_steps: int = 4096,
  save_ts=None,
):
  """Integrates ``dy/dt = field(t, y)`` from ``t0`` to ``t1`` (either direction) with Tsit5.

  Args:
    field: ``(t scalar, y) -> dy/dt`` for ONE example; ``y`` is a pytree.
    y0: pytree whose leaves have a leading batch axis ``[B, ...]``.
    t0, t1: start and end times.
    rtol, atol: tolerances of the PID step-size controller.
    max_steps: cap on attempted steps per example (exceeding it raises).
    save_ts: optional times ``[K]`` between ``t0`` and ``t1`` at which to also
      return the state (dense interpolation: the steps taken do not change).

  Returns:
    ``(y1, nfe)``: the state at ``t1`` (same structure as ``y0``) and the number of
    evaluations of ``field`` per example, int32 ``[B]``; with ``save_ts``,
    ``(y1, nfe, ys)`` with leaves ``[B, K, ...]``.
  """
  term = diffrax.ODETerm(lambda t, y, args: field(t, y))
  controller = diffrax.PIDController(rtol=rtol, atol=atol)
  # A fixed first step keeps the count of evaluations exact (no step-size probe).
  dt0 = (t1 - t0) / 100.0

  saveat = diffrax.SaveAt(t1=True, ts=save_ts) if save_ts is not None else diffrax.SaveAt(t1=True)

  def one(y):
    sol = diffrax.diffeqsolve(
      term,
      diffrax.Tsit5(),
      t0,
      t1,
      dt0,
      y,
      stepsize_controller=controller,
      max_steps=max_steps,
      saveat=saveat,
    )
    nfe = jnp.asarray(_TSIT5_EVALS_PER_STEP * sol.stats["num_steps"] + 1, jnp.int32)
    last = jax.tree.map(lambda leaf: leaf[-1], sol.ys)
    if save_ts is None:
      return last, nfe
    return last, nfe, jax.tree.map(lambda leaf: leaf[:-1], sol.ys)

  return jax.vmap(one)(y0)

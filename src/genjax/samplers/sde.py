"""Samplers for continuous-time diffusion: reverse SDE, predictor–corrector, probability flow.

Conventions (see :mod:`genjax.objectives.sde`):
  * A *score function* is ``score_fn(x [B, ...], t [B] float) -> ∇log p_t(x) [B, ...]``;
    :func:`genjax.objectives.sde.model_score_fn` makes one from a network.
  * Every sampler integrates from t = 1 down to ``t_min`` on a uniform grid of
    ``num_steps`` steps (the adaptive ODE chooses its own) and returns a sample of
    p_{t_min}; ``denoise=True`` then applies Tweedie's formula at ``t_min`` (one
    more evaluation), as the official code's final denoising step.
  * The fixed-step loops are one ``lax.scan``: the score function is traced once.
  * Per-example randomness: the noise of step ``i`` for example ``j`` comes from
    ``fold_in(keys[j], i)``, so sample j depends only on ``x_1[j]`` and ``keys[j]``
    (the Langevin step size too, unless ``langevin_norms="batch"``).
  * With ``return_nfe=True`` a sampler returns ``(x, nfe)``, nfe being the score
    evaluations per example, int32 ``[B]``; with ``return_trajectory=True``,
    ``(x, trajectory [S, B, ...])`` (or ``(x, trajectory, nfe)``), the state after
    each of the S steps (the adaptive ODE: at ``trajectory_steps`` evenly spaced
    times), the last frame being x.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from genjax.core import ode, random
from genjax.objectives import sde as sdes
from genjax.objectives.sde import SDE, ScoreFn, expand

PREDICTORS = ("euler_maruyama", "reverse_diffusion")
LANGEVIN_NORMS = ("example", "batch")
ODE_METHODS = ("euler", "heun", "adaptive")
SAMPLERS = ("euler_maruyama", "pc", "ode_euler", "ode_heun", "ode_adaptive")


def _grid(num_steps: int, t_min: float) -> np.ndarray:
  if num_steps < 1 or not 0.0 < t_min < 1.0:
    raise ValueError(f"need num_steps >= 1 and 0 < t_min < 1, got {num_steps}, {t_min}")
  return np.linspace(1.0, t_min, num_steps + 1, dtype=np.float32)


def _full(t, x):
  return jnp.full((x.shape[0],), t, jnp.float32)


def _finish(score_fn, sde, x, t_min, denoise, nfe, return_nfe, path=None):
  if denoise:
    t = _full(t_min, x)
    x = sdes.tweedie_denoise(sde, x, t, score_fn(x, t))
    nfe = nfe + 1
  nfe = jnp.broadcast_to(jnp.asarray(nfe, jnp.int32), (x.shape[0],))
  out = (x,)
  if path is not None:  # The last frame is the returned sample, denoised or not.
    out += (path.at[-1].set(x),)
  if return_nfe:
    out += (nfe,)
  return out if len(out) > 1 else x


def _predict(score_fn, sde: SDE, predictor: str, x, t, t_next, noise_keys):
  """One reverse step from t to t_next < t: Euler–Maruyama or reverse diffusion."""
  score = score_fn(x, t)
  z = random.normal(noise_keys, x.shape[1:], x.dtype)
  if predictor == "euler_maruyama":
    dt = t_next - t  # negative
    g = expand(sdes.diffusion(sde, t), x)
    return (
      x + sdes.reverse_drift(sde, score, x, t) * expand(dt, x) + g * expand(jnp.sqrt(-dt), x) * z
    )
  # Song et al.'s reverse diffusion with the exact forward step x_t = a x_{t'} + √v z.
  a, v = sdes.transition(sde, t_next, t)
  a, v = expand(a, x), expand(v, x)
  return x - (a - 1.0) * x + v * score + jnp.sqrt(v) * z


def _langevin(score_fn, sde: SDE, x, t, dt, noise_keys, snr, norms):
  """One Langevin corrector step at time t with step size set by the target ``snr``."""
  grad = score_fn(x, t)
  z = random.normal(noise_keys, x.shape[1:], x.dtype)

  def norm(a):
    n = jnp.sqrt(jnp.sum(jnp.square(a.reshape(a.shape[0], -1)), axis=-1))
    return jnp.broadcast_to(n.mean(), n.shape) if norms == "batch" else n

  # α = 1 - β Δt for VP and sub-VP as in the official code (α_i of the discrete chain).
  alpha = 1.0 if sde.kind == "ve" else 1.0 - sdes.beta(sde, t) * dt
  step = 2.0 * alpha * jnp.square(snr * norm(z) / jnp.maximum(norm(grad), 1e-12))
  return x + expand(step, x) * grad + expand(jnp.sqrt(2.0 * step), x) * z


def euler_maruyama(
  score_fn: ScoreFn,
  sde: SDE,
  x_T: jax.Array,
  keys: jax.Array,
  *,
  num_steps: int = 1000,
  t_min: float = 1e-3,
  denoise: bool = False,
  return_nfe: bool = False,
  return_trajectory: bool = False,
):
  """Euler–Maruyama on the reverse SDE ``dx = [f - g² ∇log p_t] dt + g dW̄``.

  Args:
    score_fn: ``(x [B, ...], t [B]) -> score [B, ...]``.
    sde: the forward SDE.
    x_T: start ``[B, ...]``, usually :func:`genjax.objectives.sde.prior_sample`.
    keys: typed per-example keys ``[B]``.
    num_steps: uniform steps from 1 to ``t_min``.
    t_min: end time.
    denoise: finish with Tweedie's E[x_0 | x_{t_min}].
    return_nfe: also return the score evaluations per example.
    return_trajectory: also return the state after every step.

  Returns:
    x ``[B, ...]``, or ``(x, nfe [B])``.
  """
  return predictor_corrector(
    score_fn,
    sde,
    x_T,
    keys,
    num_steps=num_steps,
    predictor="euler_maruyama",
    corrector_steps=0,
    t_min=t_min,
    denoise=denoise,
    return_nfe=return_nfe,
    return_trajectory=return_trajectory,
  )


def predictor_corrector(
  score_fn: ScoreFn,
  sde: SDE,
  x_T: jax.Array,
  keys: jax.Array,
  *,
  num_steps: int = 1000,
  predictor: str = "reverse_diffusion",
  corrector_steps: int = 1,
  snr: float = 0.16,
  langevin_norms: str = "example",
  t_min: float = 1e-3,
  denoise: bool = False,
  return_nfe: bool = False,
  return_trajectory: bool = False,
):
  """Predictor–corrector sampling (Song et al. 2021, Algorithms 4 and 5).

  Each step runs the predictor from t to the next grid time t', then
  ``corrector_steps`` Langevin steps at t' with step size
  ``2 α (snr ||z|| / ||score||)²`` (per example).

  Args:
    score_fn, sde, x_T, keys, num_steps, t_min, denoise, return_nfe,
      return_trajectory: as :func:`euler_maruyama`.
    predictor: one of ``PREDICTORS``.
    corrector_steps: Langevin steps after each predictor step (0: predictor only).
    snr: the corrector's signal-to-noise ratio r (0.16 is the paper's for CIFAR-10).
    langevin_norms: one of ``LANGEVIN_NORMS``. "example": ||z|| and ||score|| of
      each sample, as the paper's algorithms; they concentrate in high dimension
      (images), but in a few dimensions ||score|| can be near 0 and the step
      explode, and in tens of dimensions the step's correlation with the state
      still inflates variances (about 9% for a 64-D Gaussian after 1000 steps).
      "batch": their means over the batch, as the official code; stable in low
      dimension, but a sample then depends on the rest of its batch.

  Returns:
    x ``[B, ...]``, or ``(x, nfe [B])``.
  """
  sdes.check_choice("predictor", predictor, PREDICTORS)
  sdes.check_choice("langevin_norms", langevin_norms, LANGEVIN_NORMS)
  random.check_keys(keys)
  grid = _grid(num_steps, t_min)
  predictor_keys, corrector_keys = random.split(keys, 2)

  def step(x, inputs):
    i, t, t_next = inputs
    tb, tb_next = _full(t, x), _full(t_next, x)
    x = _predict(score_fn, sde, predictor, x, tb, tb_next, random.fold_in(predictor_keys, i))
    step_keys = random.fold_in(corrector_keys, i)
    for j in range(corrector_steps):
      x = _langevin(
        score_fn, sde, x, tb_next, t - t_next, random.fold_in(step_keys, j), snr, langevin_norms
      )
    x = x.astype(x_T.dtype)
    return x, x if return_trajectory else None

  xs = (jnp.arange(num_steps), jnp.asarray(grid[:-1]), jnp.asarray(grid[1:]))
  x, path = jax.lax.scan(step, x_T, xs)
  nfe = num_steps * (1 + corrector_steps)
  return _finish(score_fn, sde, x, t_min, denoise, nfe, return_nfe, path)


def probability_flow(
  score_fn: ScoreFn,
  sde: SDE,
  x_T: jax.Array,
  keys: jax.Array | None = None,
  *,
  method: str = "heun",
  num_steps: int = 100,
  rtol: float = 1e-5,
  atol: float = 1e-5,
  t_min: float = 1e-3,
  denoise: bool = False,
  return_nfe: bool = False,
  return_trajectory: bool = False,
  trajectory_steps: int = 10,
):
  """Deterministic sampling along the probability-flow ODE ``dx/dt = f - g² ∇log p_t / 2``.

  Args:
    score_fn, sde, x_T, num_steps, t_min, denoise, return_nfe: as
      :func:`euler_maruyama` (``num_steps`` is ignored by "adaptive").
    keys: unused (the ODE is deterministic); accepted for a uniform signature.
    method: one of ``ODE_METHODS``: "euler" (1 evaluation per step), "heun"
      (2nd order, 2 per step) or "adaptive" (diffrax Tsit5 with a PID controller,
      step sizes chosen per example).
    rtol, atol: tolerances of "adaptive".
    return_trajectory: also return intermediate states (see the module's conventions).
    trajectory_steps: frames of the "adaptive" trajectory.

  Returns:
    x ``[B, ...]``, or ``(x, nfe [B])``.
  """
  sdes.check_choice("ode method", method, ODE_METHODS)
  velocity = lambda x, t: sdes.ode_drift(sde, score_fn(x, t), x, t)
  if method == "adaptive":

    def field(t, y):  # one example: add and remove a batch axis of 1
      return velocity(y[None], jnp.full((1,), t, jnp.float32))[0]

    save_ts = jnp.asarray(_grid(trajectory_steps, t_min)[1:]) if return_trajectory else None
    x, nfe, *path = ode.solve_per_example(
      field, x_T, 1.0, t_min, rtol=rtol, atol=atol, save_ts=save_ts
    )
    path = jnp.swapaxes(path[0], 0, 1) if path else None  # [B, S, ...] -> [S, B, ...]
    return _finish(score_fn, sde, x, t_min, denoise, nfe, return_nfe, path)

  grid = _grid(num_steps, t_min)

  def step(x, inputs):
    t, t_next = inputs
    tb, tb_next = _full(t, x), _full(t_next, x)
    dt = t_next - t
    d = velocity(x, tb)
    x_next = x + dt * d
    if method != "euler":
      x_next = x + 0.5 * dt * (d + velocity(x_next, tb_next))
    return x_next, x_next if return_trajectory else None

  x, path = jax.lax.scan(step, x_T, (jnp.asarray(grid[:-1]), jnp.asarray(grid[1:])))
  nfe = num_steps * (1 if method == "euler" else 2)
  return _finish(score_fn, sde, x, t_min, denoise, nfe, return_nfe, path)


def sample(name: str, score_fn: ScoreFn, sde: SDE, x_T: jax.Array, keys: jax.Array, **kwargs):
  """Runs a sampler by name, one of ``SAMPLERS``; ``kwargs`` go to that sampler."""
  sdes.check_choice("sampler", name, SAMPLERS)
  if name == "euler_maruyama":
    return euler_maruyama(score_fn, sde, x_T, keys, **kwargs)
  if name == "pc":
    return predictor_corrector(score_fn, sde, x_T, keys, **kwargs)
  return probability_flow(score_fn, sde, x_T, keys, method=name[len("ode_") :], **kwargs)

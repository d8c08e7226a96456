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
    evaluations per example, int32 ``[B]``.
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


def _finish(score_fn, sde, x, t_min, denoise, nfe, return_nfe):
  if denoise:
    t = _full(t_min, x)
    x = sdes.tweedie_denoise(sde, x, t, score_fn(x, t))
    nfe = nfe + 1
  nfe = jnp.broadcast_to(jnp.asarray(nfe, jnp.int32), (x.shape[0],))
  return (x, nfe) if return_nfe else x


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
):
  """Predictor–corrector sampling (Song et al. 2021, Algorithms 4 and 5).

  Each step runs the predictor from t to the next grid time t', then
  ``corrector_steps`` Langevin steps at t' with step size
  ``2 α (snr ||z|| / ||score||)²`` (per example).

  Args:
    score_fn, sde, x_T, keys, num_steps, t_min, denoise, return_nfe: as
      :func:`euler_maruyama`.
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
    return x.astype(x_T.dtype), None

  xs = (jnp.arange(num_steps), jnp.asarray(grid[:-1]), jnp.asarray(grid[1:]))
  x, _ = jax.lax.scan(step, x_T, xs)
  nfe = num_steps * (1 + corrector_steps)
  return _finish(score_fn, sde, x, t_min, denoise, nfe, return_nfe)


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

  Returns:
    x ``[B, ...]``, or ``(x, nfe [B])``.
  """
  sdes.check_choice("ode method", method, ODE_METHODS)
  velocity = lambda x, t: sdes.ode_drift(sde, score_fn(x, t), x, t)
  if method == "adaptive":

    def field(t, y):  # one example: add and remove a batch axis of 1
      return velocity(y[None], jnp.full((1,), t, jnp.float32))[0]

    x, nfe = ode.solve_per_example(field, x_T, 1.0, t_min, rtol=rtol, atol=atol)
    return _finish(score_fn, sde, x, t_min, denoise, nfe, return_nfe)

  grid = _grid(num_steps, t_min)

  def step(x, inputs):
    t, t_next = inputs
    tb, tb_next = _full(t, x), _full(t_next, x)
    dt = t_next - t
    d = velocity(x, tb)
    x_euler = x + dt * d
    if method == "euler":
      return x_euler, None
    return x + 0.5 * dt * (d + velocity(x_euler, tb_next)), None

  x, _ = jax.lax.scan(step, x_T, (jnp.asarray(grid[:-1]), jnp.asarray(grid[1:])))
  nfe = num_steps * (1 if method == "euler" else 2)
  return _finish(score_fn, sde, x, t_min, denoise, nfe, return_nfe)


def sample(name: str, score_fn: ScoreFn, sde: SDE, x_T: jax.Array, keys: jax.Array, **kwargs):
  """Runs a sampler by name, one of ``SAMPLERS``; ``kwargs`` go to that sampler."""
  sdes.check_choice("sampler", name, SAMPLERS)
  if name == "euler_maruyama":
    return euler_maruyama(score_fn, sde, x_T, keys, **kwargs)
  if name == "pc":
    return predictor_corrector(score_fn, sde, x_T, keys, **kwargs)
  return probability_flow(score_fn, sde, x_T, keys, method=name[len("ode_") :], **kwargs)

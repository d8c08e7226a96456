"""Sampling loops for Gaussian diffusion models: DDPM, DDIM and classifier-free guidance.

Conventions (see :mod:`genjax.objectives.diffusion`):
  * Timesteps are 0-indexed: ``t`` in ``{0, ..., T-1}`` is the paper's step ``t + 1``.
  * A *model function* is ``model_fn(x_t [B, ...], t [B] int32) -> output [B, ...]``,
    where ``output`` is in the model's parameterization ("eps", "x0" or "v"); the
    samplers convert it with ``predict_x0_eps``. Bind parameters and labels with a
    closure (see :func:`guided_model_fn`).
  * The whole reverse chain is one ``lax.scan``, so the model is traced and compiled
    once however many steps run. Wrap a sampler in ``jax.jit`` to compile the rest too.
  * Per-example randomness: the noise added at timestep ``t`` to example ``i`` comes
    from ``fold_in(keys[i], t)``, so sample ``i`` depends only on ``x_T[i]`` and
    ``keys[i]``, whatever the batch.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from genjax.core import random
from genjax.objectives import diffusion as dm

ModelFn = Callable[[jax.Array, jax.Array], jax.Array]

SPACINGS = ("leading", "trailing", "linspace")
SAMPLERS = ("ddpm", "ddim")


def timesteps(num_train_steps: int, num_sample_steps: int, spacing: str) -> np.ndarray:
  """Sub-sequence of training timesteps for a shorter sampler, in sampling order.

  Follows Lin et al. 2024 ("Common Diffusion Noise Schedules and Sample Steps are
  Flawed", Table 2) and diffusers without ``steps_offset``, with ``T`` =
  ``num_train_steps`` and ``S`` = ``num_sample_steps``:
  "leading" is ``arange(0, S) * (T // S)``; "trailing" is
  ``round(arange(T, 0, -T / S)) - 1`` (starts at the last step ``T - 1``, which
  Lin et al. recommend); "linspace" is ``round(linspace(0, T - 1, S))``.

  Args:
    num_train_steps: ``T``, the steps of the training schedule.
    num_sample_steps: ``S``, with ``1 <= S <= T``.
    spacing: one of ``SPACINGS``.

  Returns:
    int64 NumPy array ``[S]``, strictly decreasing, values in ``[0, T - 1]``.

  Example:
    >>> timesteps(1000, 4, "trailing")
    array([999, 749, 499, 249])
    >>> timesteps(1000, 4, "leading")
    array([750, 500, 250,   0])
  """
  if spacing not in SPACINGS:
    raise ValueError(f"unknown spacing {spacing!r}; allowed: {list(SPACINGS)}")
  t_train, s = int(num_train_steps), int(num_sample_steps)
  if not 1 <= s <= t_train:
    raise ValueError(f"num_sample_steps ({s}) must be between 1 and num_train_steps ({t_train})")
  if spacing == "leading":
    ascending = np.arange(s, dtype=np.int64) * (t_train // s)
  elif spacing == "trailing":
    # arange(T, 0, -T / S) written as T - i T / S, which always has exactly S entries.
    ascending = np.round(t_train - np.arange(s)[::-1] * (t_train / s)).astype(np.int64) - 1
  else:
    ascending = np.round(np.linspace(0, t_train - 1, s)).astype(np.int64)
  return ascending[::-1].copy()


def _check_timesteps(ts: np.ndarray, num_steps: int) -> None:
  if ts.ndim != 1 or ts.size == 0:
    raise ValueError(f"timesteps must be a non-empty 1-D sequence, got shape {ts.shape}")
  if np.any(np.diff(ts) >= 0) or ts.min() < 0 or ts.max() >= num_steps:
    raise ValueError(
      f"timesteps must be strictly decreasing ints in [0, {num_steps - 1}], got {ts.tolist()}"
    )


def _x0_eps(schedule, parameterization, model_fn, x, t, clip_x0):
  """Model predictions of x_0 (optionally clipped to [-1, 1]) and ε."""
  output = model_fn(x, t)
  x0_hat, eps_hat = dm.predict_x0_eps(schedule, parameterization, x, t, output)
  if clip_x0:
    x0_hat = jnp.clip(x0_hat, -1.0, 1.0)
    # ε consistent with the clipped x_0, as diffusers' use_clipped_model_output.
    eps_hat = dm.eps_from_x0(schedule, x, t, x0_hat)
  return x0_hat, eps_hat


def _trajectory_slots(num_steps: int, num_frames: int) -> np.ndarray:
  """Frame index to record after each of ``num_steps`` scan steps, or -1."""
  if not 1 <= num_frames <= num_steps:
    raise ValueError(f"trajectory_steps ({num_frames}) must be between 1 and {num_steps}")
  done = np.round(np.arange(1, num_frames + 1) * num_steps / num_frames).astype(np.int64)
  slots = np.full(num_steps, -1, np.int32)
  slots[done - 1] = np.arange(num_frames)
  return slots


def ddpm_sample(
  model_fn: ModelFn,
  schedule: dm.Schedule,
  x_T: jax.Array,
  keys: jax.Array,
  *,
  parameterization: str = "eps",
  model_variance: str = "beta",
  clip_x0: bool = True,
  return_trajectory: bool = False,
  trajectory_steps: int = 10,
):
  """Ancestral sampling through all T steps (Ho et al. 2020, Algorithm 2).

  Each step draws x_{t-1} ~ N(μ_θ(x_t, t), σ_t² I) with μ_θ the posterior mean at the
  predicted x_0 and σ_t² from ``model_variance``; no noise is added at ``t = 0``.

  Args:
    model_fn: ``(x_t [B, ...], t [B] int32) -> output [B, ...]``.
    schedule: diffusion constants.
    x_T: starting noise ``[B, ...]``, usually standard normal.
    keys: typed per-example keys ``[B]``.
    parameterization: what the model predicts, one of ``PARAMETERIZATIONS``.
    model_variance: σ_t², one of ``MODEL_VARIANCES`` ("beta": β_t, "posterior": β̃_t).
    clip_x0: clip the predicted x_0 to ``[-1, 1]`` before forming the mean.
    return_trajectory: also return intermediate states.
    trajectory_steps: number of recorded states, after evenly spaced numbers of
      steps, the last being x_0.

  Returns:
    x_0 ``[B, ...]``, or ``(x_0, trajectory [trajectory_steps, B, ...])``.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from genjax.objectives.diffusion import linear_betas, make_schedule
    >>> sched = make_schedule(linear_betas(20, 1e-3, 0.3))
    >>> keys = jax.random.split(jax.random.key(0), 2)
    >>> x0, traj = ddpm_sample(lambda x, t: jnp.zeros_like(x), sched, jnp.ones((2, 3)),
    ...                        keys, return_trajectory=True, trajectory_steps=4)
    >>> x0.shape, traj.shape, bool(jnp.all(traj[-1] == x0))
    ((2, 3), (4, 2, 3), True)
  """
  dm.check_choice("parameterization", parameterization, dm.PARAMETERIZATIONS)
  dm.check_choice("model_variance", model_variance, dm.MODEL_VARIANCES)
  num_steps, b = schedule.num_steps, x_T.shape[0]
  ts = np.arange(num_steps - 1, -1, -1, dtype=np.int32)
  slots = _trajectory_slots(num_steps, trajectory_steps) if return_trajectory else None

  def step(carry, inputs):
    x, traj = carry
    t, slot = inputs
    tb = jnp.full((b,), t, jnp.int32)
    x0_hat, _ = _x0_eps(schedule, parameterization, model_fn, x, tb, clip_x0)
    mean, _, log_var = dm.model_mean_variance(schedule, model_variance, x, tb, x0_hat)
    noise = random.normal(random.fold_in(keys, t), x.shape[1:], x.dtype)
    scale = jnp.where(t > 0, jnp.exp(0.5 * log_var), 0.0)
    x = (mean + scale * noise).astype(x_T.dtype)
    if traj is not None:
      # Read-select-write of one frame keeps the update in place.
      i = jnp.maximum(slot, 0)
      frame = jnp.where(slot >= 0, x, traj[i])
      traj = jax.lax.dynamic_update_index_in_dim(traj, frame, i, axis=0)
    return (x, traj), None

  traj = None
  if return_trajectory:
    traj = jnp.zeros((trajectory_steps,) + x_T.shape, x_T.dtype)
  xs = (jnp.asarray(ts), jnp.asarray(slots if slots is not None else np.zeros_like(ts)))
  (x, traj), _ = jax.lax.scan(step, (x_T, traj), xs)
  return (x, traj) if return_trajectory else x


@jax.jit  # one small program instead of many eagerly dispatched ops
def _ddim_coefficients(schedule: dm.Schedule, ts: jax.Array, eta: jax.Array):
  """Per-step √ᾱ_prev, √(1 - ᾱ_prev - σ²) and σ for steps ``ts`` -> next (last -> ᾱ = 1)."""
  prev = ts[1:]
  one = jnp.ones((1,), jnp.float32)
  zero = jnp.zeros((1,), jnp.float32)
  sqrt_ac_prev = jnp.concatenate([schedule.sqrt_alphas_cumprod[prev], one])
  one_minus_prev = jnp.concatenate([schedule.sqrt_one_minus_alphas_cumprod[prev], zero]) ** 2
  one_minus_t = schedule.sqrt_one_minus_alphas_cumprod[ts] ** 2
  # 1 - ᾱ_t / ᾱ_prev from a cumulative sum of log(1 - β): accurate even when the
  # ratio is within float32 rounding of 1 (consecutive early steps).
  log_ac = jnp.cumsum(jnp.log1p(-schedule.betas))
  log_ac_prev = jnp.concatenate([log_ac[prev], zero])
  frac = -jnp.expm1(log_ac[ts] - log_ac_prev) / one_minus_t  # in [0, 1]
  sigma = eta * jnp.sqrt(one_minus_prev * frac)
  direction = jnp.sqrt(one_minus_prev * jnp.maximum(1.0 - jnp.square(eta) * frac, 0.0))
  return sqrt_ac_prev, direction, sigma


def ddim_sample(
  model_fn: ModelFn,
  schedule: dm.Schedule,
  x_T: jax.Array,
  keys: jax.Array,
  *,
  timesteps,
  eta=0.0,
  parameterization: str = "eps",
  clip_x0: bool = True,
  return_trajectory: bool = False,
):
  """DDIM sampling (Song et al. 2021, eq. 12) along a decreasing timestep sequence.

  From each ``t`` to the next entry ``t'`` of ``timesteps`` (the last step goes to
  ᾱ = 1, i.e. returns the predicted x_0)::

    x_t' = √ᾱ_t' x0_hat + √(1 - ᾱ_t' - σ²) eps_hat + σ z,
    σ = η √((1 - ᾱ_t') / (1 - ᾱ_t)) √(1 - ᾱ_t / ᾱ_t').

  η = 0 is deterministic; η = 1 with every step is DDPM with σ² = β̃_t.

  Args:
    model_fn: ``(x_t [B, ...], t [B] int32) -> output [B, ...]``.
    schedule: diffusion constants.
    x_T: starting noise ``[B, ...]``.
    keys: typed per-example keys ``[B]``; unused when η = 0.
    timesteps: strictly decreasing ints in ``[0, T - 1]``, e.g. from
      :func:`timesteps` (static: it sets the number of scan steps).
    eta: η in ``[0, 1]`` (may be traced).
    parameterization: what the model predicts, one of ``PARAMETERIZATIONS``.
    clip_x0: clip x0_hat to ``[-1, 1]`` and recompute eps_hat from the clipped value.
    return_trajectory: also return the state after every step.

  Returns:
    x_0 ``[B, ...]``, or ``(x_0, trajectory [S, B, ...])`` with ``trajectory[-1] = x_0``.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from genjax.objectives.diffusion import linear_betas, make_schedule
    >>> sched = make_schedule(linear_betas(100))
    >>> keys = jax.random.split(jax.random.key(0), 2)
    >>> x0 = ddim_sample(lambda x, t: jnp.zeros_like(x), sched, jnp.ones((2, 3)), keys,
    ...                  timesteps=timesteps(100, 10, "trailing"))
    >>> x0.shape
    (2, 3)
  """
  dm.check_choice("parameterization", parameterization, dm.PARAMETERIZATIONS)
  ts = np.asarray(timesteps, dtype=np.int64)
  _check_timesteps(ts, schedule.num_steps)
  b = x_T.shape[0]
  ts = jnp.asarray(ts, jnp.int32)
  coefs = _ddim_coefficients(schedule, ts, jnp.asarray(eta, jnp.float32))
  # A literal η = 0 needs no noise at all; skipping it saves the random-number work.
  stochastic = not (isinstance(eta, (int, float)) and eta == 0)

  def step(x, inputs):
    t, sqrt_ac_prev, direction, sigma = inputs
    tb = jnp.full((b,), t, jnp.int32)
    x0_hat, eps_hat = _x0_eps(schedule, parameterization, model_fn, x, tb, clip_x0)
    x_next = sqrt_ac_prev * x0_hat + direction * eps_hat
    if stochastic:
      x_next = x_next + sigma * random.normal(random.fold_in(keys, t), x.shape[1:], x.dtype)
    x = x_next.astype(x_T.dtype)
    return x, x if return_trajectory else None

  x, traj = jax.lax.scan(step, x_T, (ts,) + coefs)
  return (x, traj) if return_trajectory else x


def guided_model_fn(model_fn_with_labels, labels: jax.Array, null_label, scale) -> ModelFn:
  """Classifier-free guidance (Ho & Salimans 2022) as a plain model function.

  ``out = uncond + scale * (cond - uncond)``, computed as
  ``scale * cond + (1 - scale) * uncond`` so that scale 1 is exactly the
  conditional model and scale 0 exactly the unconditional one. The paper's
  guidance strength w is ``scale - 1``. Conditional and unconditional outputs
  come from one call on a concatenated batch of 2B.

  Args:
    model_fn_with_labels: ``(x [N, ...], t [N], labels [N]) -> output [N, ...]``.
    labels: class labels ``[B]``.
    null_label: the label meaning "unconditional" (as used by ``drop_labels``).
    scale: guidance scale (may be traced).

  Returns:
    ``model_fn(x_t [B, ...], t [B]) -> output [B, ...]``.

  Example:
    >>> import jax.numpy as jnp
    >>> f = lambda x, t, y: x * y[:, None]
    >>> g = guided_model_fn(f, jnp.array([2.0, 3.0]), 0.0, scale=1.5)
    >>> g(jnp.ones((2, 1)), jnp.zeros((2,), jnp.int32))
    Array([[3. ],
           [4.5]], dtype=float32)
  """
  labels = jnp.asarray(labels)

  def model_fn(x: jax.Array, t: jax.Array) -> jax.Array:
    b = x.shape[0]
    both_labels = jnp.concatenate([labels, jnp.full_like(labels, null_label)])
    out = model_fn_with_labels(jnp.concatenate([x, x]), jnp.concatenate([t, t]), both_labels)
    cond, uncond = out[:b], out[b:]
    return scale * cond + (1.0 - scale) * uncond

  return model_fn


def sample(
  sampler: str,
  model_fn: ModelFn,
  schedule: dm.Schedule,
  x_T: jax.Array,
  keys: jax.Array,
  *,
  num_sample_steps: int | None = None,
  spacing: str = "leading",
  **kwargs,
):
  """Runs a sampler by name.

  Args:
    sampler: one of ``SAMPLERS``.
    model_fn: ``(x_t [B, ...], t [B] int32) -> output [B, ...]``.
    schedule: diffusion constants.
    x_T: starting noise ``[B, ...]``.
    keys: typed per-example keys ``[B]``.
    num_sample_steps: DDIM steps (default all ``T``); DDPM always runs all ``T``.
    spacing: DDIM timestep spacing, one of ``SPACINGS`` (ignored when
      ``timesteps`` is passed).
    **kwargs: keyword arguments of :func:`ddpm_sample` / :func:`ddim_sample`.

  Returns:
    What the chosen sampler returns.
  """
  if sampler not in SAMPLERS:
    raise ValueError(f"unknown sampler {sampler!r}; allowed: {list(SAMPLERS)}")
  num_steps = schedule.num_steps
  if sampler == "ddpm":
    if num_sample_steps not in (None, num_steps):
      raise ValueError(
        f"ddpm runs all {num_steps} steps; got num_sample_steps={num_sample_steps} (use ddim)"
      )
    return ddpm_sample(model_fn, schedule, x_T, keys, **kwargs)
  if "timesteps" not in kwargs:
    kwargs["timesteps"] = timesteps(num_steps, num_sample_steps or num_steps, spacing)
  return ddim_sample(model_fn, schedule, x_T, keys, **kwargs)

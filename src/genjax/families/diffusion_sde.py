"""A diffusion model trained on discrete timesteps, sampled and scored in continuous time.

The discrete chain of ``T`` steps is read as the Euler discretization of a VP SDE
(:mod:`genjax.objectives.sde`): ``vp_from_discrete(T, β_start, β_end)`` for the
linear schedule, the continuous cosine ᾱ(t) for the cosine one.

Time mapping: the 0-based step k has taken k + 1 steps of length 1/T, so the VP
marginal at ``t = (k + 1) / T`` is close to the discrete ``q(x_k | x_0)`` (ᾱ within
8·10⁻⁴ at T = 1000 for the linear schedule, the same ᾱ for the cosine one until its
β clip). Close is not enough at small t, where 1 - ᾱ itself is about 10⁻³: feeding
the network ``t T - 1`` would mismatch σ(t) by a few percent there. So the network
sees the fractional step whose noise level is exactly the SDE's: the k with
``log ᾱ_k = log ᾱ(t)``, log ᾱ_k interpolated linearly between integer steps
(≈ ``t T - 1``; the sinusoidal time embedding takes any real number). Integration
runs from t = 1 down to ``t_min = 1/T`` (step 0), so the network is never asked
about noise below the smallest it was trained on; samplers then finish with
Tweedie's E[x_0 | x_{1/T}], the x_0 prediction that DDPM's last step returns.

A network predicting x_0 or v is converted to ε with the SDE's own m(t), σ(t)
(:func:`genjax.objectives.sde.predict_eps`); the conversion is linear in the
output, so classifier-free guidance can mix outputs before it.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from genjax.core import fields, random
from genjax.objectives import sde as sdes
from genjax.objectives import sde_likelihood
from genjax.objectives.reductions import bits_per_dim
from genjax.objectives.sde import SDE, ScoreFn
from genjax.samplers import sde as sde_samplers

# Config names -> genjax.samplers.sde names.
SAMPLERS = {
  "sde": "euler_maruyama",
  "pc": "pc",
  "ode_euler": "ode_euler",
  "ode_heun": "ode_heun",
  "ode_adaptive": "ode_adaptive",
}
# Score evaluations per step of the fixed-step samplers (the corrector takes one step).
EVALS_PER_STEP = {"sde": 1, "pc": 2, "ode_euler": 1, "ode_heun": 2}

F = fields.Field
# What the adaptive solver's tolerances serve.
_ODE_SOLVES = [("diffusion.sampler", ("ode_adaptive",)), ("diffusion.ode_likelihood", (True,))]
# Fields of config.diffusion for these samplers and the likelihood.
FIELDS = {
  "snr": F(
    0.16,
    "pc: the Langevin corrector's signal-to-noise ratio (Song et al. 2021)",
    gt=0,
    only_with=("diffusion.sampler", ("pc",)),
  ),
  # Song et al.'s tolerances, for sampling and likelihood alike (their RK45 uses both).
  "ode_rtol": F(
    1e-5, "ode_adaptive and ode_likelihood: relative tolerance", gt=0, only_with=_ODE_SOLVES
  ),
  "ode_atol": F(
    1e-5, "ode_adaptive and ode_likelihood: absolute tolerance", gt=0, only_with=_ODE_SOLVES
  ),
  "ode_likelihood": F(False, "eval: exact NLL through the probability-flow ODE (eval/ode_*)"),
  "hutchinson_probes": F(
    1,
    "ode_likelihood on images: Rademacher probes of the divergence (points: exact)",
    integer=True,
    ge=1,
    only_with=("diffusion.ode_likelihood", (True,)),
  ),
}


def continuous_sde(schedule: str, num_steps: int, beta_start: float, beta_end: float) -> SDE:
  """The VP SDE whose marginals are the discrete schedule's at ``t = (k + 1) / T``."""
  if schedule == "linear":
    return sdes.vp_from_discrete(num_steps, beta_start, beta_end)
  return sdes.vp(schedule="cosine")


def t_min(num_steps: int) -> float:
  """The end time of sampling and the start of the likelihood integral: step 0."""
  return 1.0 / num_steps


def network_step(sde: SDE, alphas_cumprod, t: jax.Array) -> jax.Array:
  """The fractional 0-based step whose discrete ᾱ is the SDE's ᾱ(t), ``[B]`` float32.

  Args:
    sde: the VP SDE.
    alphas_cumprod: the discrete ᾱ_k, ``[T]`` (decreasing).
    t: times ``[B]``; outside the discrete range the step is clamped to [0, T - 1].
  """
  neg_log = -np.log(np.asarray(alphas_cumprod, np.float64))  # increasing in k
  steps = np.arange(neg_log.shape[0], dtype=np.float32)
  target = -sdes.log_alpha_bar(sde, t)
  return jnp.interp(target, jnp.asarray(neg_log, jnp.float32), jnp.asarray(steps))


def score_fn(sde: SDE, model_fn, parameterization: str, alphas_cumprod) -> ScoreFn:
  """``model_fn(x, step [B] float) -> output`` as a score function of continuous t."""
  return sdes.model_score_fn(
    sde, lambda x, t: model_fn(x, network_step(sde, alphas_cumprod, t)), parameterization
  )


def nfe(sampler: str, steps: int) -> int | None:
  """Score evaluations per sample (None for the adaptive solver, which varies)."""
  if sampler not in EVALS_PER_STEP:
    return None
  return EVALS_PER_STEP[sampler] * steps + 1  # + the final Tweedie denoising


def describe(config) -> str:
  """E.g. "probability-flow ODE, Heun, 50 steps (101 score evaluations), ..."."""
  d = config.diffusion
  sampler, steps, snr = d.sampler, int(d.sample_steps), float(d.snr)
  rtol, atol = float(d.ode_rtol), float(d.ode_atol)
  head = {
    "sde": f"reverse SDE, Euler-Maruyama, {steps} steps",
    "pc": f"predictor-corrector (reverse diffusion + 1 Langevin step, snr {snr:g}), {steps} steps",
    "ode_euler": f"probability-flow ODE, Euler, {steps} steps",
    "ode_heun": f"probability-flow ODE, Heun, {steps} steps",
    "ode_adaptive": f"probability-flow ODE, adaptive Tsit5 (rtol {rtol:g}, atol {atol:g})",
  }[sampler]
  count = nfe(sampler, steps)
  evals = f"{count} score evaluations" if count else "score evaluations vary per sample"
  return f"{head} ({evals}), VP SDE from t = 1 to 1/T, Tweedie denoised"


def generate(
  score: ScoreFn,
  sde: SDE,
  x_T: jax.Array,
  keys: jax.Array,
  config,
  sampler: str,
  steps: int | None = None,
  *,
  trajectory: bool = False,
  trajectory_steps: int = 10,
  return_nfe: bool = False,
):
  """Runs a continuous sampler (a ``SAMPLERS`` key) from ``x_T`` at t = 1 down to 1/T.

  ``steps`` (default ``config.diffusion.sample_steps``) sets the fixed-step grids;
  the rest comes from ``config.diffusion``. Returns ``x``, then the trajectory
  ``[S, B, ...]`` if asked, then NFE ``[B]`` if asked.
  """
  d = config.diffusion
  end = t_min(int(d.num_steps))
  kwargs = dict(t_min=end, denoise=True, return_nfe=return_nfe, return_trajectory=trajectory)
  if sampler == "ode_adaptive":
    kwargs.update(rtol=float(d.ode_rtol), atol=float(d.ode_atol))
    kwargs.update(trajectory_steps=trajectory_steps)
  else:
    kwargs.update(num_steps=int(steps or d.sample_steps))
  if sampler == "pc":
    kwargs.update(snr=float(d.snr), corrector_steps=1)
  return sde_samplers.sample(SAMPLERS[sampler], score, sde, x_T, keys, **kwargs)


def frame_times(config, sampler: str, frames: int, path_length: int) -> np.ndarray:
  """Continuous t of each recorded state a picture shows (``frames`` picked evenly from the path).

  The last state is the sample after Tweedie's denoising step, given as t = 0.
  """
  end = t_min(int(config.diffusion.num_steps))
  if sampler == "ode_adaptive":  # Recorded at evenly spaced times.
    times = np.linspace(1.0, end, path_length + 1)[1:]
  else:  # The state after each of the fixed steps.
    steps = int(config.diffusion.sample_steps)
    times = np.linspace(1.0, end, steps + 1)[1 : path_length + 1]
  times = np.append(times[:-1], 0.0)
  return times[np.linspace(0, path_length - 1, frames).round().astype(int)]


def ode_likelihood(
  score: ScoreFn,
  sde: SDE,
  x: jax.Array,
  keys: jax.Array,
  config,
  *,
  images: bool,
) -> dict[str, jax.Array]:
  """``ode_nll`` (nats), ``ode_bits_per_dim`` and ``ode_nfe`` per example.

  Integrates from t = 1/T with ``config.diffusion``'s tolerances and probes.

  Images (8-bit levels scaled to [-1, 1]) are uniformly dequantized with noise
  from ``keys`` and the NLL is that of the discrete data, ``-log p_x + D log 128``;
  their divergence is Hutchinson's with ``num_probes`` Rademacher probes. Points
  use the exact divergence. Any density of ``x`` gives an upper bound on the
  discrete NLL, so starting at step 0 rather than t → 0 keeps a valid bound, at
  noise levels the network was trained for.
  """
  d = config.diffusion
  dequantize_keys, probe_keys = random.split(keys, 2)
  dims = math.prod(x.shape[1:])
  trace = "hutchinson" if images else "exact"
  if images:
    x = sde_likelihood.dequantize(dequantize_keys, x)
  log_p, count = sde_likelihood.log_likelihood(
    score,
    sde,
    x,
    probe_keys,
    trace=trace,
    num_probes=int(d.hutchinson_probes),
    t_min=t_min(int(d.num_steps)),
    rtol=float(d.ode_rtol),
    atol=float(d.ode_atol),
    return_nfe=True,
  )
  nll = -log_p + (dims * math.log(128.0) if images else 0.0)
  return {
    "ode_nll": nll,
    "ode_bits_per_dim": bits_per_dim(nll, dims),
    "ode_nfe": count.astype(jnp.float32),
  }

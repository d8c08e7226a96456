"""Score SDE on two moons (2-D): continuous-time denoising score matching on the VP SDE.

The ``ddpm_moons`` denoiser and schedule (its continuous limit, Song et al. 2021),
trained on t ~ U(1/T, 1) instead of integer steps; sampled by the probability-flow
ODE with an adaptive solver.

Command:
  python -m genjax.main --config=experiments/configs/sde_vp_moons.py --workdir=runs/sde_vp_moons
"""

from genjax import config as genjax_config


def get_config():
  c = genjax_config.load_sibling(__file__, "ddpm_moons").get_config()
  c.evals = "precision_recall_points,energy_distance_points"
  c.diffusion.update(training_time="continuous", sampler="ode_adaptive")
  c.diffusion.update(ode_rtol=1e-3, ode_atol=1e-3)
  return c

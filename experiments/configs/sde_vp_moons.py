"""Score SDE on two moons (2-D): continuous-time denoising score matching on the VP SDE.

The ``ddpm_moons`` denoiser and schedule (its continuous limit, Song et al. 2021),
trained on t ~ U(1/T, 1) instead of integer steps; sampled by the probability-flow
ODE with an adaptive solver.

Command:
  python -m genjax.main --config=experiments/configs/sde_vp_moons.py --workdir=runs/sde_vp_moons
  python benchmarks/nfe_quality.py --workdir=runs/sde_vp_moons --num_generated=2500

Expected runtime: 16 min of wall time for 10k steps (evaluations included) on 2 CPU
  cores shared with two other jobs; the sampler sweep took 22 min.
Measured (seed 0, EMA denoiser, 2,500 samples against 2,500 test points; floors in
  brackets): PF-ODE adaptive (rtol = atol = 1e-3, 98 NFE per sample on average, 62-152)
  precision / recall 0.951 / 0.982 [0.966 / 0.966], energy distance -0.00006 [-0.00019];
  DDPM-1000 0.957 / 0.984, -0.00034; with rtol = atol = 1e-2 the solver needs 53 NFE
  (38-80) for 0.951 / 0.984, 0.00002. Every sampler: docs/families.md.
"""

from genjax import config as genjax_config


def get_config():
  c = genjax_config.load_sibling(__file__, "ddpm_moons").get_config()
  c.evals = "precision_recall_points,energy_distance_points"
  c.diffusion.update(training_time="continuous", sampler="ode_adaptive")
  c.diffusion.update(ode_rtol=1e-3, ode_atol=1e-3)
  return c

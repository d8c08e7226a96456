"""Score SDE on MNIST: continuous-time denoising score matching on ddpm_mnist's VP SDE.

ddpm_mnist's U-Net, schedule (its continuous limit) and optimizer, trained on
t ~ U(1/T, 1); samples from the probability-flow ODE (adaptive Tsit5); exact
bits/dim through the same ODE with Hutchinson's trace estimator beside the
variational bound.

Command:
  python -m genjax.main --config=experiments/configs/sde_vp_mnist.py --workdir=runs/sde_vp_mnist
  python -m genjax.evaluate --workdir=runs/sde_vp_mnist --num_samples=100 --num_examples=2000 \
    --evals= --set=diffusion.ode_likelihood=True --output=runs/sde_vp_mnist/eval_bpd.json
  python -m genjax.evaluate --workdir=runs/sde_vp_mnist --notest_metrics --num_generated=1000

Expected runtime: as ddpm_mnist, 10,000 steps at about 2.5 steps/s alone on 2 CPU cores
  (about 70 min) plus evaluations.
Measured: not yet measured.
"""

from genjax import config as genjax_config


def get_config():
  c = genjax_config.load_sibling(__file__, "ddpm_mnist").get_config()
  c.diffusion.update(training_time="continuous", sampler="ode_adaptive")
  c.diffusion.update(ode_rtol=1e-3, ode_atol=1e-3)
  return c

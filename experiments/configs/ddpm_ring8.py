"""DDPM on the 8-Gaussian ring (2-D): an MLP denoiser, mode coverage by the PacGAN protocol.

Ho et al.'s linear schedule (T = 1000, β from 1e-4 to 0.02) and L_simple; the
samples are DDPM ancestral samples (all T steps: cheap for an MLP).

Command:
  python -m genjax.main --config=experiments/configs/ddpm_ring8.py --workdir=runs/ddpm_ring8

Expected runtime: 13 min of wall time for 10k steps while two other jobs shared the 2 cores.
Measured (seed 0, EMA denoiser, 2,500 DDPM samples; floor 8/8 and 98.8 %): 8/8 modes,
  75.4 % high quality at 10k steps.

History and variants: docs/results.md#ddpm_ring8.
"""

from genjax import config as genjax_config


def get_config():
  c = genjax_config.defaults()
  c.family = "ddpm"
  c.evals = "mode_coverage"
  c.data.update(name="ring8")
  c.model.update(hidden_sizes=(256, 256, 256))
  # clip_x0=False: points are not confined to [-1, 1].
  c.diffusion.update(sampler="ddpm", clip_x0=False)
  c.optimizer.update(learning_rate=1e-3)
  c.train.update(batch_size=256, num_steps=10_000, ema_decay=0.999)
  c.train.update(log_every=500, eval_every=2_500, checkpoint_every=2_500)
  # Steps per compiled call: the host's per-step work would otherwise slow this small step.
  c.train.steps_per_call = 10
  # sample_examples: the PacGAN protocol's sample count.
  c.eval.update(sample_examples=2500, periodic_sample_examples=2500)
  return c

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
  c.data.name = "ring8"
  c.model.hidden_sizes = (256, 256, 256)
  c.diffusion.sampler = "ddpm"
  c.diffusion.clip_x0 = False  # Points are not confined to [-1, 1].
  c.optimizer.learning_rate = 1e-3
  c.train.batch_size = 256
  c.train.num_steps = 10_000
  c.train.log_every = 500
  c.train.eval_every = 2_500
  c.train.checkpoint_every = 2_500
  c.train.ema_decay = 0.999
  c.evals = "mode_coverage"
  c.eval.sample_examples = 2500  # the PacGAN protocol's sample count
  c.eval.periodic_sample_examples = 2500
  return c

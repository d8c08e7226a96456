"""GAN on the 5×5 grid of Gaussians (2-D), the VEEGAN / PacGAN benchmark.

Command:
  python -m genjax.main --config=experiments/configs/gan_grid25.py --workdir=runs/gan_grid25

Expected runtime: about 2 min for 30k steps on 2 CPU cores (about 300 steps/s
  alone; measured 113 s while a second job shared the cores).
Measured (seed 0, EMA generator, 2,500 samples; the floor, real test points,
  captures 25 with 98.8 % high quality): hinge 25/25 modes, 95.4 % high
  quality.

History and variants: docs/results.md#gan_grid25.
"""

from genjax import config as genjax_config


def get_config():
  c = genjax_config.load_sibling(__file__, "gan_ring8").get_config()
  c.data.update(name="grid25")
  c.gan.update(loss="hinge")
  c.train.update(num_steps=30_000, eval_every=5_000, checkpoint_every=5_000)
  return c

"""GAN on the 5×5 grid of Gaussians (2-D), the VEEGAN / PacGAN benchmark.

Published (2,500 samples, high quality within 3σ): GAN 3.3 modes (VEEGAN
paper), VEEGAN 24.6 modes / 40 % high quality, PacGAN4 24.8 / 93.6 %.

Command:
  python -m genjax.main --config=experiments/configs/gan_grid25.py --workdir=runs/gan_grid25
"""

from genjax import config as genjax_config


def get_config():
  c = genjax_config.load_sibling(__file__, "gan_ring8").get_config()
  c.data.name = "grid25"
  return c

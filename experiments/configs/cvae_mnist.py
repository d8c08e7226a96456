"""Conditional VAE on MNIST (Sohn et al. 2015): the digit label feeds encoder and decoder.

``images/samples_by_class.png`` has one row per digit.

Command:
  python -m genjax.main --config=experiments/configs/cvae_mnist.py --workdir=runs/cvae_mnist

Expected runtime: TBD.
Measured: TBD.
"""

from genjax import config as genjax_config


def get_config():
  c = genjax_config.load_sibling(__file__, "vae_mnist").get_config()
  c.family = "cvae"
  c.model.latent_dim = 16
  c.train.num_steps = 20_000
  c.train.eval_every = 10_000
  return c

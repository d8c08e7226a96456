"""IWAE on MNIST (Burda et al. 2016): the importance-weighted bound with k = 5 samples.

Command:
  python -m genjax.main --config=experiments/configs/iwae_mnist.py --workdir=runs/iwae_mnist
  python -m genjax.evaluate --workdir=runs/iwae_mnist --num_samples=5000

Expected runtime: TBD.
Measured: TBD.
"""

from genjax import config as genjax_config


def get_config():
  c = genjax_config.load_sibling(__file__, "vae_mnist").get_config()
  c.family = "iwae"
  c.objective.num_samples = 5
  c.train.num_steps = 10_000
  c.train.eval_every = 5_000
  return c

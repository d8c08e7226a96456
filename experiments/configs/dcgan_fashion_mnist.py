"""DCGAN on Fashion-MNIST: the ``dcgan_mnist`` recipe on clothing images.

Command:
  python -m genjax.main --config=experiments/configs/dcgan_fashion_mnist.py --workdir=runs/dcgan_fashion_mnist
"""

from genjax import config as genjax_config


def get_config():
  c = genjax_config.load_sibling(__file__, "dcgan_mnist").get_config()
  c.data.name = "fashion_mnist"
  c.train.num_steps = 5000
  return c

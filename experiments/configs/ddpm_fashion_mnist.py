"""DDPM on Fashion-MNIST: the ``ddpm_mnist`` recipe on clothing images.

Command:
  python -m genjax.main --config=experiments/configs/ddpm_fashion_mnist.py --workdir=runs/ddpm_fashion_mnist
"""

from genjax import config as genjax_config


def get_config():
  c = genjax_config.load_sibling(__file__, "ddpm_mnist").get_config()
  c.data.update(name="fashion_mnist")
  return c

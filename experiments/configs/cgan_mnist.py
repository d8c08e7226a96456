"""Class-conditional DCGAN on MNIST (Mirza & Osindero 2014; projection D, Miyato & Koyama 2018).

The label enters G as a learned embedding concatenated to z and D through a
projection head. ``images/samples_by_class.png`` has one row per digit with
the same noise down each column; ``eval/label_accuracy`` is the share of
samples the MNIST classifier reads as the digit asked for.

Command:
  python -m genjax.main --config=experiments/configs/cgan_mnist.py --workdir=runs/cgan_mnist
"""

from genjax import config as genjax_config


def get_config():
  c = genjax_config.load_sibling(__file__, "dcgan_mnist").get_config()
  c.family = "cgan"
  c.gan.conditioning = "projection"
  c.evals += ",label_accuracy"
  return c

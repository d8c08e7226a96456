"""VQ-VAE on Fashion-MNIST: the ``vqvae_mnist`` recipe on clothing images.

Command:
  python -m genjax.main --config=experiments/configs/vqvae_fashion_mnist.py \
    --workdir=runs/vqvae_fashion_mnist
  python -m genjax.evaluate --workdir=runs/vqvae_fashion_mnist
"""

from genjax import config as genjax_config


def get_config():
  c = genjax_config.load_sibling(__file__, "vqvae_mnist").get_config()
  c.data.update(name="fashion_mnist")
  return c

"""Denoising autoencoder on MNIST: salt-and-pepper noise on 30 % of pixels (Vincent et al. 2008).

The loss reconstructs the clean image from the corrupted one; evaluation
reports the denoising error (``eval/recon``) and the error on clean inputs
(``eval/recon_clean_input``).

Command:
  python -m genjax.main --config=experiments/configs/dae_mnist.py --workdir=runs/dae_mnist

Expected runtime: 3.1 min for 10k steps on 2 CPU cores (shared with another run).
Measured: test (all 10k) denoising eval/recon = 79.07 nats BCE per image,
  eval/recon_clean_input = 69.25, eval/mse = 0.00847, after 10k steps.
"""

from genjax import config as genjax_config


def get_config():
  c = genjax_config.load_sibling(__file__, "ae_mnist").get_config()
  c.family = "dae"
  c.objective.update(corruption="salt_pepper", corruption_level=0.3)
  return c

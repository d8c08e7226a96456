"""Convolutional VAE on Fashion-MNIST (sub-pixel upsampling decoder).

Same data and likelihood as ``vae_fashion_mnist``; the encoder is two stride-2
convolutions and the decoder upsamples with conv + depth-to-space instead of
transposed convolutions (whose weight gradient is pathologically slow on
XLA-CPU).

Command:
  python -m genjax.main --config=experiments/configs/vae_conv_fashion_mnist.py --workdir=runs/vae_conv_fashion_mnist

Expected runtime: 11.5 min for 6k steps (6.4 epochs) on 2 CPU cores shared
  with a second job; about 19 steps/s alone (``make bench``).
Measured: test (all 10k, k=100) NLL 1857.1 nats = 3.417 bits/dim, ELBO
  -1882.5, KL 54.0 after 6k steps.
Sample metrics (10k samples; floors as vae_fashion_mnist): fid_lenet 98.13,
  kid_lenet 17.6, precision 0.446, recall 0.407, classifier score 3.53.

History and variants: docs/results.md#vae_conv_fashion_mnist.
"""

from genjax import config as genjax_config


def get_config():
  c = genjax_config.load_sibling(__file__, "vae_fashion_mnist").get_config()
  c.model.update(architecture="conv", conv_channels=(16, 32), hidden_sizes=(256,))
  c.train.update(batch_size=64, num_steps=6_000, eval_every=3_000)
  return c

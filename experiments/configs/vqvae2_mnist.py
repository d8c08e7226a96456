"""VQ-VAE-2 on MNIST (Razavi et al. 2019): a 7x7 bottom and a 4x4 top code map, 512-entry EMA codebooks.

Bottom encoder: two stride-2 4x4 convolutions (28 -> 7) and residual blocks; top encoder: one
stride-2 convolution (7 -> 4); the top codes, decoded back to 7x7, join the bottom features
before the bottom quantizer; the decoder reads both quantized maps. Bottom 7x7 / top 4x4 keeps
the priors' sampling short on CPU (65 positions per sample). The second stage,
``vqvae2_prior_mnist``, fits the two priors.

Command:
  python -m genjax.main --config=experiments/configs/vqvae2_mnist.py --workdir=runs/vqvae2_mnist
  python -m genjax.evaluate --workdir=runs/vqvae2_mnist

Expected runtime: about 1.4 steps/s at batch 128 measured over a 60-step run (loss 0.080 at
  step 20, 0.038 at step 60; 438 of 512 bottom and 339 of 512 top codes in use) on 2 CPU
  cores shared with a second training run: about 35-55 min for 3000 steps.
Measured: not yet measured.
"""

from genjax import config as genjax_config


def get_config():
  c = genjax_config.defaults()
  c.family = "vqvae2"
  c.data.update(name="mnist", preprocess="scale_01")
  c.vq.update(num_embeddings=512, embedding_dim=64, beta=0.25, recon_loss="l2")
  c.vq.update(ema=True, decay=0.99, restart_threshold=1.0)
  c.vq.update(channels=(32, 64), num_res_blocks=2, res_channels=32)
  c.vq2.update(top_num_embeddings=512)
  c.optimizer.update(learning_rate=3e-4)
  c.train.update(batch_size=128, num_steps=3_000)
  c.train.update(log_every=250, eval_every=1_000, checkpoint_every=1_000)
  c.eval.update(num_images=64)
  return c

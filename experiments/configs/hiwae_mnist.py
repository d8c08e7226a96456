"""Two-layer ladder VAE trained on the IWAE bound (k = 5) over the joint of both layers.

The network of hvae_mnist (latents 64 + 32, top-down inference); the bound
needs no KL warm-up, so none is set. Burda et al. (2016)'s own 2-layer IWAE:
the bottom-up overrides in hvae_mnist's docstring.

Command:
  python -m genjax.main --config=experiments/configs/hiwae_mnist.py --workdir=runs/hiwae_mnist
  python -m genjax.evaluate --workdir=runs/hiwae_mnist --num_samples=5000

Expected runtime: 55.5 min of wall time for 120k steps (256 epochs) on 2 CPU cores,
  the evaluation at 60k included (about 41 steps/s alone).
Measured (seed 0, EMA parameters): first 1000 test images, k = 100: NLL 86.27 nats,
  ELBO -92.07, KL 21.52 (kl_1 19.59, kl_2 1.93); active units 15/64 (z_1) and 1/32
  (z_2): as in hvae_mnist, the top layer collapses. Samples (1000; floors in
  brackets): fid_lenet 37.71 [8.15], precision / recall 0.782 / 0.850 [0.884 / 0.906].
"""

from genjax import config as genjax_config


def get_config():
  c = genjax_config.load_sibling(__file__, "hvae_mnist").get_config()
  c.family = "hiwae"
  c.objective.update(num_samples=5, kl_warmup_steps=0)
  c.train.update(num_steps=120_000, eval_every=60_000)
  return c

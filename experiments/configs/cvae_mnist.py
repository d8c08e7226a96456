"""Conditional VAE on MNIST (Sohn et al. 2015): the digit label feeds encoder and decoder.

``images/samples_by_class.png`` has one row per digit.

Command:
  python -m genjax.main --config=experiments/configs/cvae_mnist.py --workdir=runs/cvae_mnist

Expected runtime: 6.1 min for 20k steps on 2 CPU cores (shared with another run).
Measured: test (all 10k, k=1000) conditional NLL -log p(x|y) = 85.48 nats,
  eval/elbo = -89.28, eval/kl = 20.63, after 20k steps (43 epochs).
Sample metrics (10k samples, label i mod 10; floors in brackets):
  label_accuracy 0.919 [0.993], fid_lenet 39.32 [1.07], kid_lenet 38.5 [0.10],
  precision 0.802 [0.865], recall 0.675 [0.892], classifier score 8.70 [9.74].
"""

from genjax import config as genjax_config


def get_config():
  c = genjax_config.load_sibling(__file__, "vae_mnist").get_config()
  c.family = "cvae"
  c.evals += ",label_accuracy"
  c.model.update(latent_dim=16)
  c.train.update(num_steps=20_000, eval_every=10_000)
  return c

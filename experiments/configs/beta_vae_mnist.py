"""β-VAE on MNIST (Higgins et al. 2017): β = 4 with a 10-d latent and KL warm-up.

Command:
  python -m genjax.main --config=experiments/configs/beta_vae_mnist.py --workdir=runs/beta_vae_mnist

Expected runtime: 5.9 min for 20k steps on 2 CPU cores (shared with another run).
Measured: test (all 10k, k=1000) eval/elbo = -107.83, eval/kl = 10.31,
  eval/recon = 97.52, eval/nll = 96.96 nats after 20k steps (43 epochs).
Sample metrics (10k samples; floors as vae_mnist): fid_lenet 117.7 [1.07],
  precision 0.850, recall 0.318 [0.892].

History and variants: docs/results.md#beta_vae_mnist.
"""

from genjax import config as genjax_config


def get_config():
  c = genjax_config.load_sibling(__file__, "vae_mnist").get_config()
  c.model.update(latent_dim=10)
  c.objective.update(beta=4.0, kl_warmup_steps=2_000)
  c.train.update(num_steps=20_000, eval_every=10_000)
  return c

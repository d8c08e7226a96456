"""IWAE on MNIST (Burda et al. 2016): the importance-weighted bound with k = 5 samples.

Command:
  python -m genjax.main --config=experiments/configs/iwae_mnist.py --workdir=runs/iwae_mnist
  python -m genjax.evaluate --workdir=runs/iwae_mnist --num_samples=5000

Expected runtime: 7.7 min for 10k steps on 2 CPU cores (32 steps/s while sharing
  the CPU with another run; about 39 steps/s alone per ``make bench``: each step
  decodes k = 5 samples per image).
Measured: test (all 10k, k=1000) NLL 89.43 nats, ELBO -96.61, KL 23.05 after
  10k steps (21 epochs).
Sample metrics (10k samples; floors as vae_mnist): fid_lenet 99.07 [1.07],
  kid_lenet 77.9, precision 0.708, recall 0.711, classifier score 6.51.

History and variants: docs/results.md#iwae_mnist.
"""

from genjax import config as genjax_config


def get_config():
  c = genjax_config.load_sibling(__file__, "vae_mnist").get_config()
  c.family = "iwae"
  c.objective.update(num_samples=5)
  c.train.update(num_steps=10_000, eval_every=5_000)
  return c

"""IWAE on MNIST (Burda et al. 2016): the importance-weighted bound with k = 5 samples.

Command:
  python -m genjax.main --config=experiments/configs/iwae_mnist.py --workdir=runs/iwae_mnist
  python -m genjax.evaluate --workdir=runs/iwae_mnist --num_samples=5000

Expected runtime: vae_mnist's schedule (90k steps, 192 epochs, as Burda et al. compare
  the bounds at equal epochs): about 39 min at 39 steps/s alone on 2 CPU cores
  (``make bench``; each step decodes k = 5 samples per image), plus the k=5000
  evaluation (about 24 min on one core).
Measured: not yet at this schedule. With 10k steps (1/9 of vae_mnist's epochs): test
  (all 10k, k=1000) NLL 89.43 nats, ELBO -96.61, KL 23.05; sample metrics (10k samples)
  fid_lenet 99.07 [1.07], precision 0.708, recall 0.711.

History and variants: docs/results.md#iwae_mnist.
"""

from genjax import config as genjax_config


def get_config():
  c = genjax_config.load_sibling(__file__, "vae_mnist").get_config()
  c.family = "iwae"
  c.objective.update(num_samples=5)
  return c

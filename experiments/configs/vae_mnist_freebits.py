"""Free bits on the flat VAE: vae_mnist's network with a floor of 0.25 nats per latent unit.

A 20k-step comparison, with and without free bits (Kingma et al. 2016): each latent
dimension's batch-mean KL below the floor is not penalised.

Command:
  python -m genjax.main --config=experiments/configs/vae_mnist_freebits.py \
    --workdir=runs/vae_mnist_freebits
  python -m genjax.main --config=experiments/configs/vae_mnist_freebits.py \
    --config.objective.free_bits=0.0 --workdir=runs/vae_mnist_nofreebits

Expected runtime: not yet measured.
Measured: not yet measured.
"""

from genjax import config as genjax_config


def get_config():
  c = genjax_config.load_sibling(__file__, "vae_mnist").get_config()
  c.evals = ""
  c.objective.update(free_bits=0.25)
  c.train.update(num_steps=20_000, eval_every=0, checkpoint_every=5_000)
  return c

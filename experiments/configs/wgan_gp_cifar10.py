"""WGAN-GP on CIFAR-10 (Gulrajani et al. 2017): critic with LayerNorm, 5 critic steps.

For users who can download CIFAR-10 (tfds prepares it on first use); tested
here only with ``tfds.testing.mock_data``. Settings follow the paper: Adam
(1e-4, β1 = 0, β2 = 0.9), λ = 10, 5 critic updates per generator update, no
BatchNorm in the critic (the penalty needs per-example gradients).

Command:
  python -m genjax.main --config=experiments/configs/wgan_gp_cifar10.py --workdir=runs/wgan_gp_cifar10
"""

from genjax import config as genjax_config


def get_config():
  c = genjax_config.defaults()
  c.family = "gan"
  c.evals = "fid_lenet,kid_lenet,precision_recall_lenet"
  c.data.update(name="cifar10", preprocess="scale_pm1")
  c.model.update(architecture="dcgan", latent_dim=128)
  c.gan.update(loss="wgan", gp_weight=10.0, d_steps=5, d_norm="layer", base_channels=64)
  c.gan.update(g_learning_rate=1e-4, d_learning_rate=1e-4)
  c.optimizer.update(b1=0.0, b2=0.9)
  c.train.update(batch_size=64, num_steps=100_000, ema_decay=0.999)
  c.train.update(log_every=500, eval_every=10_000, checkpoint_every=5_000)
  return c

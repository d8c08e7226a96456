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
  c.data.name = "cifar10"
  c.data.preprocess = "scale_pm1"
  c.model.architecture = "dcgan"
  c.model.latent_dim = 128
  c.gan.loss = "wgan"
  c.gan.gp_weight = 10.0
  c.gan.d_steps = 5
  c.gan.d_norm = "layer"
  c.gan.base_channels = 64
  c.gan.g_learning_rate = 1e-4
  c.gan.d_learning_rate = 1e-4
  c.optimizer.b1 = 0.0
  c.optimizer.b2 = 0.9
  c.train.batch_size = 64
  c.train.num_steps = 100_000
  c.train.log_every = 500
  c.train.eval_every = 10_000
  c.train.checkpoint_every = 5_000
  c.train.ema_decay = 0.999
  c.evals = "fid_lenet,kid_lenet,precision_recall_lenet"
  return c

"""DDPM on CIFAR-10: the configuration of Ho et al. (2020), for GPU/TPU users.

The paper's 35.7M-parameter U-Net and training recipe (800k steps of batch 128); random
horizontal flips are not applied. CIFAR-10 must be downloadable (or prepared in the tfds data
dir); the test suite runs this config on tfds mock data.

Command:
  python -m genjax.main --config=experiments/configs/ddpm_cifar10.py --workdir=runs/ddpm_cifar10

History and variants: docs/results.md#ddpm_cifar10.
"""

from genjax import config as genjax_config


def get_config():
  c = genjax_config.defaults()
  c.family = "ddpm"
  c.data.name = "cifar10"
  c.data.preprocess = "scale_pm1"
  c.unet.channels = 128
  c.unet.channel_mults = (1, 2, 2, 2)
  c.unet.num_res_blocks = 2
  c.unet.attention_resolutions = (16,)
  c.unet.num_groups = 32
  c.unet.dropout = 0.1
  c.unet.conditioning = "add"
  c.diffusion.sampler = "ddim"
  c.diffusion.sample_steps = 100
  c.optimizer.learning_rate = 2e-4
  c.optimizer.warmup_steps = 5000
  c.optimizer.grad_clip_norm = 1.0
  c.train.batch_size = 128
  c.train.num_steps = 800_000
  c.train.log_every = 1000
  c.train.eval_every = 50_000
  c.train.checkpoint_every = 10_000
  c.train.ema_decay = 0.9999
  c.eval.periodic_nll_samples = 20
  c.eval.nll_samples = 1000
  # Paper-comparable FID needs the Inception weights: --config.evals=fid_inception
  # (see genjax.evaluation.inception for the file and how to convert it).
  c.evals = "fid_lenet,kid_lenet,precision_recall_lenet"
  return c

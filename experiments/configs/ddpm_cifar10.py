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
  # Paper-comparable FID needs the Inception weights: --config.evals=fid_inception
  # (see genjax.evaluation.inception for the file and how to convert it).
  c.evals = "fid_lenet,kid_lenet,precision_recall_lenet"
  c.data.update(name="cifar10", preprocess="scale_pm1")
  c.unet.update(channels=128, channel_mults=(1, 2, 2, 2), num_res_blocks=2)
  c.unet.update(attention_resolutions=(16,), num_groups=32, dropout=0.1, conditioning="add")
  c.diffusion.update(sampler="ddim", sample_steps=100)
  c.optimizer.update(learning_rate=2e-4, warmup_steps=5000, grad_clip_norm=1.0)
  c.train.update(batch_size=128, num_steps=800_000, ema_decay=0.9999)
  c.train.update(log_every=1000, eval_every=50_000, checkpoint_every=10_000)
  c.eval.update(periodic_nll_samples=20, nll_samples=1000)
  return c

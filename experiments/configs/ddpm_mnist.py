"""DDPM on MNIST (Ho et al. 2020) with a small U-Net; DDIM sampling (Song et al. 2021).

Linear schedule (T = 1000, β from 1e-4 to 0.02), ε-prediction with L_simple, σ_t² = β_t.
Evaluation and pictures use DDIM with 50 trailing-spaced steps (η = 0); ``eval/bits_per_dim``
is the full variational bound on the test split.

Command:
  python -m genjax.main --config=experiments/configs/ddpm_mnist.py --workdir=runs/ddpm_mnist
  python -m genjax.evaluate --workdir=runs/ddpm_mnist --notest_metrics
  python -m genjax.evaluate --workdir=runs/ddpm_mnist --notest_metrics \
    --set=diffusion.sampler=ddpm --num_generated=1000 --output=runs/ddpm_mnist/eval_ddpm.json
  python -m genjax.evaluate --workdir=runs/ddpm_mnist --num_samples=100 \
    --num_examples=2000 --evals= --output=runs/ddpm_mnist/eval_bpd.json

Expected runtime: 10,000 steps of batch 64 at 2.4-2.6 steps/s alone on 2 CPU cores: about
  70 min plus evaluations.
Measured (seed 0, 300k parameters, dropout 0; 1000 samples, floor 8.15): at 10k steps DDIM-50
  fid_lenet 26.3, precision / recall 0.675 / 0.891; DDPM-1000 (sigma^2 = beta) fid_lenet 16.1,
  0.741 / 0.924. Test bits/dim 2.07 on the first 2000 test images.

History and variants: docs/results.md#ddpm_mnist.
"""

from genjax import config as genjax_config


def get_config():
  c = genjax_config.defaults()
  c.family = "ddpm"
  c.evals = "fid_lenet,kid_lenet,precision_recall_lenet,classifier_score_lenet"
  c.data.update(name="mnist", preprocess="scale_pm1")
  # Sized for a CPU (about 0.3M parameters); --config.unet.channels=64
  # --config.unet.num_res_blocks=2 --config.unet.num_groups=16 on an accelerator.
  c.unet.update(channels=16, channel_mults=(1, 2, 2), num_res_blocks=1)
  c.unet.update(attention_resolutions=(7,), num_groups=4)
  # Ho et al. use 0.1 against overfitting a 35.7M-parameter net; this 0.3M one
  # does not overfit in 10k steps and fits faster without (see above).
  c.unet.dropout = 0.0
  c.optimizer.update(learning_rate=5e-4, warmup_steps=500, grad_clip_norm=1.0)
  c.train.update(batch_size=64, num_steps=10_000, ema_decay=0.999)
  c.train.update(log_every=250, eval_every=2_500, checkpoint_every=1_000)
  c.eval.update(batch_size=512, periodic_examples=512, num_images=16)
  c.eval.update(periodic_nll_samples=20, nll_samples=1000)
  return c

"""Variational diffusion model on MNIST (Kingma et al. 2021) with ddpm_mnist's small U-Net.

Learned noise schedule γ(t) (monotone network, endpoints initialised at -13.3 and 5.0,
shape trained to minimise the loss variance), continuous-time ELBO with low-discrepancy
times, Fourier features 2^6 and 2^7 of the input. The loss and ``eval/bits_per_dim``
are the ELBO of the 8-bit data in bits/dim, the same quantity as ddpm_mnist's
variational bound. Samples: ancestral, 1000 steps on the learned γ.

Command:
  python -m genjax.main --config=experiments/configs/vdm_mnist.py --workdir=runs/vdm_mnist
  python -m genjax.evaluate --workdir=runs/vdm_mnist --num_samples=100 \
    --num_examples=2000 --evals= --output=runs/vdm_mnist/eval_bpd.json
  python -m genjax.evaluate --workdir=runs/vdm_mnist --notest_metrics \
    --num_generated=1000 --output=runs/vdm_mnist/eval_samples.json

Expected runtime: 6,000 steps of batch 64 at about 2.1-2.2 steps/s alone on 2 CPU cores
  (a step costs 1.15x a ddpm_mnist step: 1.08 vs 1.24 steps/s measured interleaved on a
  loaded machine; ddpm_mnist runs 2.4-2.6 alone): about 46-48 min of training, within a
  55-min budget, plus the final evaluation.
Measured: not yet measured.
"""

from genjax import config as genjax_config


def get_config():
  c = genjax_config.defaults()
  c.family = "vdm"
  c.evals = "fid_lenet,kid_lenet,precision_recall_lenet,classifier_score_lenet"
  c.data.update(name="mnist", preprocess="scale_pm1")
  # ddpm_mnist's U-Net (about 0.3M parameters), so the two bounds compare like for like.
  c.unet.update(channels=16, channel_mults=(1, 2, 2), num_res_blocks=1)
  c.unet.update(attention_resolutions=(7,), num_groups=4, dropout=0.0)
  c.vdm.update(schedule="learned", gamma_min=-13.3, gamma_max=5.0, fourier_exponents=(6, 7))
  c.vdm.sample_steps = 1000
  c.optimizer.update(learning_rate=1e-3, warmup_steps=200, grad_clip_norm=1.0)
  c.train.update(batch_size=64, num_steps=6_000, ema_decay=0.999)
  # One evaluation at the end: 1000-step ancestral sampling is the costly part.
  c.train.update(log_every=250, eval_every=6_000, checkpoint_every=1_000)
  c.eval.update(batch_size=512, periodic_examples=512, num_images=16)
  c.eval.update(periodic_nll_samples=20, nll_samples=100)
  return c

"""VAE on dynamically binarized MNIST (Kingma & Welling 2014; Burda et al. 2016 protocol).

Command:
  python -m genjax.main --config=experiments/configs/vae_mnist.py --workdir=runs/vae_mnist
  python -m genjax.evaluate --workdir=runs/vae_mnist --num_samples=5000

Expected runtime: 19.5 min for 90k steps (192 epochs) on 2 CPU cores, about
  100 steps/s of the full loop (``make bench``); the k=5000 evaluation of the
  whole test set took 24 min on one core.
Measured (seed 0): test NLL 86.04 nats (importance-sampled, k = 5000, all 10k
  test images, EMA parameters), ELBO -90.40, KL 24.97.
Sample metrics (``genjax.evaluate --notest_metrics``, 10k samples vs the
  10k test images, 15 s with the feature net cached; floors in brackets):
  fid_lenet 54.69 [1.07], kid_lenet 46.8 [0.10], precision 0.714 [0.865],
  recall 0.796 [0.892], classifier score 7.36 [9.74].

History and variants: docs/results.md#vae_mnist.
"""

from genjax import config as genjax_config


def get_config():
  c = genjax_config.defaults()
  c.family = "vae"
  c.evals = "fid_lenet,kid_lenet,precision_recall_lenet,classifier_score_lenet"
  c.data.update(name="mnist", preprocess="binarize_dynamic")
  c.model.update(architecture="mlp", hidden_sizes=(512, 512), latent_dim=32, likelihood="bernoulli")
  c.optimizer.update(learning_rate=1e-3, schedule="cosine", end_lr_factor=0.05)
  c.train.update(batch_size=128, num_steps=90_000, ema_decay=0.999)
  c.train.update(log_every=500, eval_every=20_000, checkpoint_every=5_000)
  # Steps per compiled call: the host's per-step work would otherwise slow this small step.
  c.train.steps_per_call = 10
  return c

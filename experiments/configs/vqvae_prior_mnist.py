"""Second stage of VQ-VAE: a gated PixelCNN prior over the 7x7 code maps of ``vqvae_mnist``.

``config.prior.vqvae_workdir`` points at the first stage's run directory, whose latest checkpoint
is loaded and frozen; samples are code maps drawn from the prior and decoded by the frozen
decoder. ``--set=prior.sample_from=uniform`` evaluates a uniform prior over codes instead.

Command:
  python -m genjax.main --config=experiments/configs/vqvae_mnist.py --workdir=runs/vqvae_mnist
  python -m genjax.main --config=experiments/configs/vqvae_prior_mnist.py \
    --config.prior.vqvae_workdir=runs/vqvae_mnist --workdir=runs/vqvae_prior_mnist
  python -m genjax.evaluate --workdir=runs/vqvae_prior_mnist
  python -m genjax.evaluate --workdir=runs/vqvae_prior_mnist --notest_metrics \
    --set=prior.sample_from=uniform --output=runs/vqvae_prior_mnist/eval_uniform.json

Expected runtime: 22 min of wall time for 2250 steps on 2 CPU cores shared with a second
  training run (the measured prior stopped with SIGTERM at step 2250).
Measured (seed 0, first stage: vqvae_mnist after 3000 steps; 10k samples against the 10k
  test images, floors in brackets): learned prior fid_lenet 52.8 [1.07], kid_lenet 42.3
  [0.10], precision / recall 0.633 / 0.792 [0.865 / 0.892]; uniform prior over codes, same
  decoder: fid_lenet 568.6, kid_lenet 244.5, precision / recall 0.894 / 0.0004. Test NLL of
  the code maps 107.8 nats (3.18 bits per code; a uniform prior has 9).

History and variants: docs/results.md#vqvae_prior_mnist.
"""

from genjax import config as genjax_config


def get_config():
  c = genjax_config.defaults()
  c.family = "vqvae_prior"
  c.evals = "fid_lenet,kid_lenet,precision_recall_lenet"
  # preprocess as in the first stage.
  c.data.update(name="mnist", preprocess="scale_01")
  c.prior.update(vqvae_workdir="runs/vqvae_mnist")
  c.pixelcnn.update(num_layers=8, features=64, kernel_size=3)
  c.optimizer.update(learning_rate=1e-3, grad_clip_norm=1.0)
  c.train.update(batch_size=128, num_steps=3_000)
  c.train.update(log_every=250, eval_every=1_000, checkpoint_every=1_000)
  c.eval.update(num_images=16)
  return c

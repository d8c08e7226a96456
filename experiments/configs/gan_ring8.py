"""GAN on the 8-Gaussian ring (2-D): mode coverage by the PacGAN protocol.

Any loss by ``--config.gan.loss=minimax|non_saturating|lsgan|hinge|wgan``
(WGAN-GP: ``--config.gan.loss=wgan --config.gan.gp_weight=10
--config.gan.d_steps=5``). ``images/discriminator.png`` shows the samples over
the discriminator's logit surface; ``images/history/`` keeps it over training.

Command:
  python -m genjax.main --config=experiments/configs/gan_ring8.py --workdir=runs/gan_ring8

Expected runtime: about 1 min for 10k steps on 2 CPU cores (183 steps/s of
  the full loop while a second job shared the cores).
Measured (seed 0, EMA generator, 2,500 samples; floor 8/8 and 98.8 %):
  non-saturating 8/8 modes, 95.7 % high quality.

History and variants: docs/results.md#gan_ring8.
"""

from genjax import config as genjax_config


def get_config():
  c = genjax_config.defaults()
  c.family = "gan"
  c.evals = "mode_coverage"
  c.data.update(name="ring8")
  c.model.update(architecture="mlp", hidden_sizes=(128, 128, 128), latent_dim=2)
  c.gan.update(loss="non_saturating", g_learning_rate=1e-3, d_learning_rate=1e-3)
  c.optimizer.update(b1=0.5)
  c.train.update(batch_size=256, num_steps=10_000, ema_decay=0.999)
  c.train.update(log_every=500, eval_every=2_500, checkpoint_every=2_500)
  # Steps per compiled call: the host's per-step work would otherwise slow this small step.
  c.train.steps_per_call = 10
  # sample_examples: the PacGAN protocol's sample count.
  c.eval.update(sample_examples=2500, periodic_sample_examples=2500)
  return c

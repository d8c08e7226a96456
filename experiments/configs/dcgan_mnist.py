"""DCGAN on MNIST (Radford et al. 2016), images in [-1, 1].

Strided convolutions in D, BatchNorm in both players (statistics synchronized
across devices), ReLU + tanh in G, LeakyReLU(0.2) in D, Adam(2e-4, β1 = 0.5),
non-saturating loss; G upsamples by sub-pixel convolution instead of
transposed convolution (see ``genjax.models.gan``). ``images/samples.png``
uses fixed noise; ``images/history/`` keeps it over training.

Command:
  python -m genjax.main --config=experiments/configs/dcgan_mnist.py --workdir=runs/dcgan_mnist
  python -m genjax.evaluate --workdir=runs/dcgan_mnist

Expected runtime: 30,000 steps; ``make bench`` times the loop at about 11
  steps/s alone on 2 CPU cores (about 45 min plus evaluations). The run below
  predates the faster convolution gradient (``genjax.models.layers.Conv``) and
  took about 95 min.
Measured (seed 0, EMA generator, 10k samples vs the 10k test images, floors in
  brackets): at 30k steps fid_lenet 7.21 [1.07], kid_lenet 2.59 [0.10],
  precision 0.629 [0.865], recall 0.869 [0.892], classifier score 8.25
  [9.74]; at 15k steps 13.7, at 5k 38.2. During training (1000 samples, floor
  8.30): fid_lenet 147, 43.1, 27.2, 20.3, 16.6, 14.3 and 13.1 at steps 2k, 5k,
  10k, 15k, 20k, 25k and 30k, still falling. (Floors 1.07 / 8.30 come from a
  feature net trained on another machine; the shipped one gives 1.12 / 8.15.)

  Wider nets learn more per step but not per CPU minute:
  ``--config.gan.base_channels=32`` (1.16M parameters, about 4.9 steps/s) gives
  fid_lenet 13.3 at 10k and 7.15 [1.12] at 20k steps (precision / recall
  0.637 / 0.863, 68 min), the 30k-step number above. At 5k steps (1000
  samples, floor 8.15) it had 28.0 against 42.5 for the default, and
  ``--config.gan.loss=hinge`` 42.0, ``--config.gan.d_norm=layer
  --config.gan.r1_weight=1`` 51.4, and the SNGAN recipe
  ``--config.gan.d_norm=spectral --config.gan.loss=hinge`` 44.3. Decaying
  both learning rates linearly to 0 over 10k steps
  (``--config.optimizer.schedule=linear --config.train.num_steps=10000``)
  ends at 39.4, against 27.2 at 10k steps with the constant rate (earlier
  feature net). Unconditional samples lag in precision; the
  class-conditional ``cgan_mnist`` (same networks) reaches 2.52 [1.12] in 10k
  steps, and ``infogan_mnist`` (the same networks, still without labels, plus
  a 10-way InfoGAN code: ``--config.gan.code_classes=10``) closes most of the
  gap: see its docstring.
"""

from genjax import config as genjax_config


def get_config():
  c = genjax_config.defaults()
  c.family = "gan"
  c.data.name = "mnist"
  c.data.preprocess = "scale_pm1"
  c.model.architecture = "dcgan"
  c.model.latent_dim = 100
  c.gan.loss = "non_saturating"
  c.gan.base_channels = 16
  c.gan.g_learning_rate = 2e-4
  c.gan.d_learning_rate = 2e-4
  c.optimizer.b1 = 0.5
  c.optimizer.weight_decay = 0.0
  c.train.batch_size = 64
  c.train.num_steps = 30_000
  c.train.log_every = 250
  c.train.eval_every = 5000
  c.train.checkpoint_every = 1000
  c.train.ema_decay = 0.999
  c.eval.batch_size = 512
  c.evals = "fid_lenet,kid_lenet,precision_recall_lenet,classifier_score_lenet"
  return c

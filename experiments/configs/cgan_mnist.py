"""Class-conditional DCGAN on MNIST (Mirza & Osindero 2014; projection D, Miyato & Koyama 2018).

``dcgan_mnist``'s networks with the digit label in place of its InfoGAN code: the label enters
G as a learned embedding concatenated to z and D through a projection head.

Command:
  python -m genjax.main --config=experiments/configs/cgan_mnist.py --workdir=runs/cgan_mnist
  python -m genjax.evaluate --workdir=runs/cgan_mnist --notest_metrics

Expected runtime: 10,000 steps at about 6.1 steps/s on one CPU core (28.7 min
  pinned to one core while another run used the other).
Measured (seed 0, EMA generator, 10k samples vs the 10k test images, floors in
  brackets): label_accuracy 0.992 [0.993], fid_lenet 2.52 [1.12] (2.3x the
  floor), kid_lenet 0.24 [0.13], precision 0.809 [0.867], recall 0.779
  [0.884], classifier score 9.80 [9.74].

History and variants: docs/results.md#cgan_mnist.
"""

from genjax import config as genjax_config


def get_config():
  c = genjax_config.load_sibling(__file__, "dcgan_mnist").get_config()
  c.family = "cgan"
  # code_classes=0: the labels take the InfoGAN code's place.
  c.gan.update(code_classes=0, conditioning="projection")
  c.evals += ",label_accuracy"
  c.train.update(num_steps=10_000, eval_every=2500)
  return c

"""DCGAN on Fashion-MNIST: the ``dcgan_mnist`` recipe on clothing images, without the code.

The plain DCGAN (``gan.code_classes=0``), as measured below;
``--config.gan.code_classes=10`` adds ``dcgan_mnist``'s InfoGAN code.

Command:
  python -m genjax.main --config=experiments/configs/dcgan_fashion_mnist.py --workdir=runs/dcgan_fashion_mnist
  python -m genjax.evaluate --workdir=runs/dcgan_fashion_mnist

Expected runtime: 5000 steps in 15 min 45 s alone on 2 CPU cores.
Measured (seed 0, EMA generator, 10k samples vs the 10k test images, floors in
  brackets; the Fashion-MNIST LeNet reads 91.2 % of test images right):
  fid_lenet 20.6 [0.18], kid_lenet 3.10 [-0.01], precision 0.603 [0.881],
  recall 0.606 [0.872], classifier score 5.33 [7.88].

History and variants: docs/results.md#dcgan_fashion_mnist.
"""

from genjax import config as genjax_config


def get_config():
  c = genjax_config.load_sibling(__file__, "dcgan_mnist").get_config()
  c.data.update(name="fashion_mnist")
  c.gan.update(code_classes=0)
  c.train.update(num_steps=5000)
  return c

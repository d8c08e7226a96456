"""Class-conditional gated PixelCNN on binarized MNIST: ``pixelcnn_mnist`` plus the label.

The label enters every gated layer as a learned bias of both stacks.
``images/samples_by_class.png`` has one row per digit; ``eval/label_accuracy``
is the share of samples the MNIST classifier reads as the digit asked for.

Command:
  python -m genjax.main --config=experiments/configs/pixelcnn_cond_mnist.py \
    --workdir=runs/pixelcnn_cond_mnist
  python -m genjax.evaluate --workdir=runs/pixelcnn_cond_mnist
  python -m genjax.evaluate --workdir=runs/pixelcnn_cond_mnist --notest_metrics \
    --evals=label_accuracy,fid_lenet --num_generated=1000
"""

from genjax import config as genjax_config


def get_config():
  c = genjax_config.load_sibling(__file__, "pixelcnn_mnist").get_config()
  c.model.update(conditional=True)
  c.eval.num_images = 20  # Two samples per digit in the pictures.
  return c

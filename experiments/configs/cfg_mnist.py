"""Class-conditional DDPM on MNIST with classifier-free guidance (Ho & Salimans 2022).

The ``ddpm_mnist`` U-Net with a class embedding added to the time embedding;
during training each label is replaced by the null label with probability 0.1,
so one network learns p(x|y) and p(x). Sampling mixes the two predictions:
ε = ε(x, ∅) + s·(ε(x, y) − ε(x, ∅)), with s = ``config.diffusion.guidance_scale``
(s = 1 is the plain conditional model; the paper's w is s − 1).
``images/guidance.png`` has one row per scale in ``config.diffusion.guidance_scales``
and one column per digit; ``eval/label_accuracy`` is the share of guided samples
the MNIST classifier reads as the digit asked for. Other scales:
``python -m genjax.evaluate --workdir=runs/cfg_mnist --notest_metrics
--set=diffusion.guidance_scale=3.0 --output=runs/cfg_mnist/eval_s3.json``.

Command:
  python -m genjax.main --config=experiments/configs/cfg_mnist.py --workdir=runs/cfg_mnist

Measured (seed 0, 10,000 steps of batch 64 at about 2.1 steps/s alone on 2
  CPU cores; 125 min of wall time in two sittings, evaluations and other jobs
  included), 1000 guided DDIM-50 samples per scale (floors: label accuracy 0.993 on real
  test digits, ``fid_lenet`` 8.30, precision / recall 0.891 / 0.913):

    scale s              0      1      2      3
    label accuracy     0.091  0.927  0.998  1.000
    fid_lenet          57.8   12.9   20.7   42.2
    precision          0.621  0.804  0.893  0.909
    recall             0.883  0.880  0.680  0.528

  s = 0 (the unconditional model) is at chance, as it should be. Guidance
  trades diversity for fidelity: accuracy and precision rise with s while
  recall falls, so ``fid_lenet`` is best at s = 1. The config's s = 2 gives
  0.979, 0.998 and 0.998 label accuracy at 5k, 7.5k and 10k steps.
"""

from genjax import config as genjax_config


def get_config():
  c = genjax_config.load_sibling(__file__, "ddpm_mnist").get_config()
  c.model.conditional = True
  c.unet.dropout = 0.1  # the run measured above (ddpm_mnist now trains without)
  c.diffusion.p_uncond = 0.1
  c.diffusion.guidance_scale = 2.0
  c.evals += ",label_accuracy"
  return c

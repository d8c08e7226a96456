"""Pure sampling loops for generative models, one module per model kind.

``autoregressive``: raster-order ancestral sampling (PixelCNN).
``diffusion``: DDPM, DDIM and classifier-free guidance.
``sde``: continuous-time diffusion: reverse SDE, predictor–corrector, probability flow.
"""

from genjax.samplers import autoregressive, diffusion, sde

__all__ = ["autoregressive", "diffusion", "sde"]

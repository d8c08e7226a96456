"""Pure sampling loops for generative models, one module per model kind.

``autoregressive``: raster-order ancestral sampling (PixelCNN).
``diffusion``: DDPM, DDIM and classifier-free guidance.
"""

from genjax.samplers import autoregressive, diffusion

__all__ = ["autoregressive", "diffusion"]

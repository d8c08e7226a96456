"""Model families, registered by name in :data:`FAMILIES`."""

# Importing a family module registers it: ae, dae, vae, cvae, iwae; gan, cgan; ddpm;
# vdm; vqvae; pixelcnn, vqvae_prior.
from genjax.families import autoencoders, autoregressive, diffusion, gan, vdm, vqvae  # noqa: F401
from genjax.families.base import FAMILIES, PRESETS, DataInfo, Family, register

__all__ = ["FAMILIES", "PRESETS", "DataInfo", "Family", "register"]

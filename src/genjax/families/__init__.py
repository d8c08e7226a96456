"""Model families, registered by name in :data:`FAMILIES`."""

# Importing a family module registers it: ae, dae, vae, cvae, iwae; gan, cgan; ddpm;
# vdm; vqvae; pixelcnn, vqvae_prior; vqvae2, vqvae2_prior; hvae, hiwae.
from genjax.families import (  # noqa: F401
  autoencoders,
  autoregressive,
  diffusion,
  gan,
  hierarchical,
  vdm,
  vqvae,
  vqvae2,
  vqvae2_prior,
)
from genjax.families.base import FAMILIES, PRESETS, DataInfo, Family, register

__all__ = ["FAMILIES", "PRESETS", "DataInfo", "Family", "register"]

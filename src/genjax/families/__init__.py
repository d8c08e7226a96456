"""Model families, registered by name in :data:`FAMILIES`."""

from genjax.families import autoencoders, gan  # noqa: F401  (register ae, dae, vae, cvae, iwae; gan, cgan)
from genjax.families.base import FAMILIES, DataInfo, Family, register

__all__ = ["FAMILIES", "DataInfo", "Family", "register"]

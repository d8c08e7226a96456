"""Model families, registered by name in :data:`FAMILIES`."""

from genjax.families import autoencoders  # noqa: F401  (registers ae, dae, vae, cvae, iwae)
from genjax.families.base import FAMILIES, DataInfo, Family, register

__all__ = ["FAMILIES", "DataInfo", "Family", "register"]

"""Model families, registered by name in :data:`FAMILIES`."""

from genjax.families.base import FAMILIES, DataInfo, Family, register
from genjax.families import autoencoders  # noqa: F401  (registers ae, dae, vae, cvae, iwae)

__all__ = ["FAMILIES", "DataInfo", "Family", "register"]

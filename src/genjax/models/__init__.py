"""Flax (linen) encoders, decoders and autoencoders."""

from genjax.models.autoencoder import ARCHITECTURES, Autoencoder, build_autoencoder
from genjax.models.conv import ConvDecoder, ConvEncoder, check_divisible
from genjax.models.hierarchical import HierarchicalVAE
from genjax.models.layers import (
  ACTIVATIONS,
  SubPixelUpsample,
  depth_to_space,
  get_activation,
  one_hot_channels,
  one_hot_concat,
)
from genjax.models.mlp import GaussianHeads, MLPDecoder, MLPEncoder

__all__ = [
  "ACTIVATIONS",
  "ARCHITECTURES",
  "Autoencoder",
  "ConvDecoder",
  "ConvEncoder",
  "GaussianHeads",
  "HierarchicalVAE",
  "MLPDecoder",
  "MLPEncoder",
  "SubPixelUpsample",
  "build_autoencoder",
  "check_divisible",
  "depth_to_space",
  "get_activation",
  "one_hot_channels",
  "one_hot_concat",
]

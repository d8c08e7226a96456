"""genjax: functional JAX/Flax training of deep generative models."""

__version__ = "0.1.0"

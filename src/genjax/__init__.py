"""genjax: functional JAX/Flax training of deep generative models.

``genjax.load(path)`` gives a trained model (a run directory or an exported
bundle) to sample, encode and score; see :mod:`genjax.run.trained`.
"""

__version__ = "0.1.0"


def load(path, step=None):
  """The trained model in run directory or bundle ``path``: see :func:`genjax.run.trained.load`."""
  from genjax.run import trained  # Deferred: ``import genjax`` stays light.

  return trained.load(path, step)

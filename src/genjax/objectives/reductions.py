"""Per-example reductions and units shared by every objective."""

import math

import jax
import jax.numpy as jnp


def sum_per_example(a: jax.Array, like: jax.Array | None = None) -> jax.Array:
  """Sums all non-batch axes -> ``[B]``, after broadcasting ``a`` to ``like.shape`` if given."""
  if like is not None:
    a = jnp.broadcast_to(a, jnp.broadcast_shapes(a.shape, like.shape))
  return a.reshape(a.shape[0], -1).sum(axis=-1)


def mean_per_example(a: jax.Array) -> jax.Array:
  """Averages all non-batch axes -> ``[B]``."""
  return a.reshape(a.shape[0], -1).mean(axis=-1)


def bits_per_dim(nll_nats: jax.Array, num_dims: int) -> jax.Array:
  """Converts an NLL in nats per example to bits per dimension.

  Args:
    nll_nats: NLL per example, shape ``[B]``.
    num_dims: number of modelled dimensions per example (e.g. ``H * W * C``).

  Returns:
    ``nll_nats / (num_dims * ln 2)``, shape ``[B]``.

  Example:
    >>> import math, jax.numpy as jnp
    >>> bits_per_dim(jnp.array([784 * math.log(2.0)]), 784)
    Array([1.], dtype=float32)
  """
  return nll_nats / (num_dims * math.log(2.0))

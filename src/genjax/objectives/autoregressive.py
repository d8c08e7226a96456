"""Likelihoods of autoregressive models (PixelCNN priors and image models).

All terms are per example, shape ``[B]``, in nats and summed over all non-batch
axes; :func:`bits_per_dim` converts them for reporting.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from genjax.objectives.reductions import bits_per_dim, sum_per_example  # noqa: F401


def categorical_nll(logits: jax.Array, targets: jax.Array) -> jax.Array:
  """Negative log-likelihood of integer targets under per-position categoricals.

  Args:
    logits: unnormalised log-probabilities, shape ``[B, ..., V]``.
    targets: integer classes in ``[0, V)``, shape ``[B, ...]``.

  Returns:
    NLL in nats per example, shape ``[B]``.

  Example:
    >>> import jax.numpy as jnp
    >>> categorical_nll(jnp.zeros((1, 3, 4)), jnp.array([[0, 1, 3]]))  # 3 * log 4
    Array([4.158883], dtype=float32)
  """
  if logits.shape[:-1] != targets.shape:
    raise ValueError(
      f"logits {logits.shape} must be targets.shape + (V,), targets are {targets.shape}"
    )
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  picked = jnp.take_along_axis(log_probs, targets[..., None].astype(jnp.int32), axis=-1)
  return -sum_per_example(picked[..., 0], targets)


def bernoulli_nll(logits: jax.Array, targets: jax.Array) -> jax.Array:
  """Negative log-likelihood of binary targets under independent Bernoullis.

  Uses ``softplus(logits) - targets * logits``, finite for large ``|logits|``.

  Args:
    logits: shape ``[B, ...]``.
    targets: values in ``{0, 1}``, same shape.

  Returns:
    NLL in nats per example, shape ``[B]``.
  """
  targets = targets.astype(logits.dtype)
  return sum_per_example(jax.nn.softplus(logits) - targets * logits, logits)

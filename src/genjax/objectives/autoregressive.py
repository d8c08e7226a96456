"""Likelihoods of autoregressive models (PixelCNN priors and image models).

All terms are per example, shape ``[B]``, in nats and summed over all non-batch
axes; :func:`bits_per_dim` converts them for reporting.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from genjax.objectives.vae import sum_per_example


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

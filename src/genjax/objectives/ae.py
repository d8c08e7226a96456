"""Autoencoder reconstruction losses and denoising-autoencoder corruptions.

All losses are per example, shape ``[B]``; corruptions draw per-example noise
from typed keys of shape ``[B]`` so they do not depend on batch splitting.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from genjax.core import random
from genjax.objectives.reductions import sum_per_example
from genjax.objectives.vae import bernoulli_log_likelihood

RECONSTRUCTION_KINDS = ("l2", "bce")


def reconstruction_error(x: jax.Array, x_hat_or_logits: jax.Array, kind: str) -> jax.Array:
  """Per-example reconstruction error.

  Args:
    x: targets, shape ``[B, ...]`` (in ``[0, 1]`` for ``"bce"``).
    x_hat_or_logits: reconstruction (``"l2"``) or logits (``"bce"``), same shape.
    kind: ``"l2"`` (sum of squared errors) or ``"bce"`` (binary cross-entropy
      from logits, ``-bernoulli_log_likelihood``).

  Returns:
    Error per example, shape ``[B]``, summed over all non-batch axes.
  """
  if kind == "l2":
    return sum_per_example(jnp.square(x - x_hat_or_logits), x)
  if kind == "bce":
    return -bernoulli_log_likelihood(x, x_hat_or_logits)
  raise ValueError(f"unknown reconstruction kind {kind!r}; allowed: {list(RECONSTRUCTION_KINDS)}")


def corrupt_none(keys: jax.Array, x: jax.Array, level) -> jax.Array:
  """Identity corruption (plain autoencoder)."""
  del keys, level
  return x


def corrupt_gaussian(keys: jax.Array, x: jax.Array, level) -> jax.Array:
  """Adds N(0, level^2) noise to every pixel, without clipping.

  Args:
    keys: typed per-example keys, shape ``[B]``.
    x: clean data, shape ``[B, ...]``.
    level: noise standard deviation.

  Returns:
    Corrupted data with the shape of ``x``.
  """
  return x + level * random.normal(keys, x.shape[1:], dtype=x.dtype)


def corrupt_mask(keys: jax.Array, x: jax.Array, level) -> jax.Array:
  """Zeroes every pixel independently with probability ``level``.

  Args:
    keys: typed per-example keys, shape ``[B]``.
    x: clean data, shape ``[B, ...]``.
    level: drop probability in ``[0, 1]``.

  Returns:
    Corrupted data with the shape of ``x``.
  """
  drop = random.uniform(keys, x.shape[1:]) < level
  return jnp.where(drop, jnp.zeros_like(x), x)


def corrupt_salt_pepper(keys: jax.Array, x: jax.Array, level) -> jax.Array:
  """Sets every pixel with probability ``level`` to 0 or 1 (half each).

  Args:
    keys: typed per-example keys, shape ``[B]``.
    x: clean data in ``[0, 1]``, shape ``[B, ...]``.
    level: corruption probability in ``[0, 1]``.

  Returns:
    Corrupted data with the shape of ``x``.
  """
  hit_keys, value_keys = random.split(keys, 2)
  hit = random.uniform(hit_keys, x.shape[1:]) < level
  salt = random.uniform(value_keys, x.shape[1:]) < 0.5
  return jnp.where(hit, salt.astype(x.dtype), x)


CORRUPTIONS: dict[str, Callable[[jax.Array, jax.Array, float], jax.Array]] = {
  "none": corrupt_none,
  "gaussian": corrupt_gaussian,
  "mask": corrupt_mask,
  "salt_pepper": corrupt_salt_pepper,
}


def corrupt(name: str, keys: jax.Array, x: jax.Array, level) -> jax.Array:
  """Applies the named corruption from ``CORRUPTIONS``.

  Args:
    name: one of ``"none"``, ``"gaussian"``, ``"mask"``, ``"salt_pepper"``.
    keys: typed per-example keys, shape ``[B]``.
    x: clean data, shape ``[B, ...]``.
    level: corruption strength (std for gaussian, probability otherwise).

  Returns:
    Corrupted data with the shape of ``x``.
  """
  if name not in CORRUPTIONS:
    raise ValueError(f"unknown corruption {name!r}; allowed: {sorted(CORRUPTIONS)}")
  return CORRUPTIONS[name](keys, x, level)

"""Per-example randomness helpers.

Every stochastic objective in genjax takes a typed key array ``keys`` of shape
``[B]`` (one key per example, made with :func:`jax.random.key`) rather than a
single key. Noise for example ``i`` is drawn from ``keys[i]`` alone, so results
do not change when a batch is split across devices or processed in chunks.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def check_keys(keys: jax.Array) -> None:
  """Refuses anything but a typed per-example key array of shape [B]."""
  # Legacy uint32 keys of shape [B, 2] would silently vmap to the wrong batch size.
  if not jax.dtypes.issubdtype(keys.dtype, jax.dtypes.prng_key):
    raise TypeError(
      "expected a typed PRNG key array (made with jax.random.key), got dtype "
      f"{keys.dtype}; wrap legacy keys with jax.random.wrap_key_data"
    )
  if keys.ndim != 1:
    raise ValueError(f"expected per-example keys of shape [B], got shape {keys.shape}")


def normal(keys: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
  """Standard normal noise, one independent draw per example.

  Args:
    keys: typed key array, shape ``[B]``.
    shape: per-example shape.
    dtype: float dtype of the result.

  Returns:
    Array of shape ``[B, *shape]``; row ``i`` depends only on ``keys[i]``.
  """
  check_keys(keys)
  draw = functools.partial(jax.random.normal, shape=tuple(shape), dtype=dtype)
  return jax.vmap(draw)(keys)


def uniform(
  keys: jax.Array,
  shape: tuple[int, ...],
  minval: float = 0.0,
  maxval: float = 1.0,
  dtype=jnp.float32,
) -> jax.Array:
  """Uniform noise on ``[minval, maxval)``, one independent draw per example.

  Args:
    keys: typed key array, shape ``[B]``.
    shape: per-example shape.
    minval: lower bound (inclusive).
    maxval: upper bound (exclusive).
    dtype: float dtype of the result.

  Returns:
    Array of shape ``[B, *shape]``; row ``i`` depends only on ``keys[i]``.
  """
  check_keys(keys)
  draw = functools.partial(
    jax.random.uniform, shape=tuple(shape), dtype=dtype, minval=minval, maxval=maxval
  )
  return jax.vmap(draw)(keys)


def bernoulli(keys: jax.Array, p: jax.Array) -> jax.Array:
  """Bernoulli draws with per-example probabilities.

  Args:
    keys: typed key array, shape ``[B]``.
    p: success probabilities, shape ``[B, ...]``.

  Returns:
    Boolean array with the shape of ``p``; row ``i`` depends only on ``keys[i]``.
  """
  check_keys(keys)
  return jax.vmap(jax.random.bernoulli)(keys, p)


def randint(keys: jax.Array, maxval: int) -> jax.Array:
  """Uniform integers in ``{0, ..., maxval - 1}``, one independent draw per example.

  Args:
    keys: typed key array, shape ``[B]``.
    maxval: number of values (exclusive upper bound), ``>= 1``.

  Returns:
    int32 array of shape ``[B]``; entry ``i`` depends only on ``keys[i]``.
  """
  check_keys(keys)
  draw = functools.partial(jax.random.randint, shape=(), minval=0, maxval=int(maxval))
  return jax.vmap(draw)(keys).astype(jnp.int32)


def split(keys: jax.Array, num: int = 2) -> jax.Array:
  """Splits every example's key into ``num`` new keys.

  Args:
    keys: typed key array, shape ``[B]``.
    num: number of keys per example.

  Returns:
    Typed key array of shape ``[num, B]``, so ``split(keys, 2)[0]`` is again a
    per-example ``[B]`` key array.
  """
  check_keys(keys)
  return jax.vmap(functools.partial(jax.random.split, num=num), out_axes=1)(keys)


def fold_in(keys: jax.Array, data) -> jax.Array:
  """Folds the same integer into every example's key.

  Args:
    keys: typed key array, shape ``[B]``.
    data: integer (Python int or scalar int array, may be traced).

  Returns:
    Typed key array of shape ``[B]``.
  """
  check_keys(keys)
  return jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, data)


def example_keys(key: jax.Array, indices: jax.Array) -> jax.Array:
  """Derives per-example keys from one key and global example indices.

  Using the global index (not the position in the batch) makes an example's
  noise independent of batching and sharding.

  Args:
    key: a single typed key, shape ``[]``.
    indices: integer array of global example indices, shape ``[B]``.

  Returns:
    Typed key array of shape ``[B]`` with ``out[i] = fold_in(key, indices[i])``.
  """
  if not jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) or key.ndim != 0:
    raise TypeError(f"expected a single typed PRNG key, got {key.dtype}{key.shape}")
  indices = jnp.asarray(indices)
  return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, indices)


# Independent key streams of a run, derived from its seed. BATCH_STREAM is for
# randomness shared by a whole global batch (a family folds in the step), such as
# the common offset of stratified per-example times.
TRAIN_STREAM, EVAL_STREAM, INIT_STREAM, PICTURE_STREAM, SAMPLE_STREAM, BATCH_STREAM = range(6)


def stream_key(seed: int, stream: int) -> jax.Array:
  """The base key of one random stream of a run."""
  return jax.random.fold_in(jax.random.key(seed), stream)

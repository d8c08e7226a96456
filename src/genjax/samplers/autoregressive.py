"""Raster-order ancestral sampling from autoregressive models such as PixelCNN."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from jax import lax

from genjax.core import random

LogitsFn = Callable[[jax.Array, "jax.Array | None"], jax.Array]


def sample(
  logits_fn: LogitsFn,
  shape: tuple[int, int],
  keys: jax.Array,
  *,
  labels: jax.Array | None = None,
  init: jax.Array | None = None,
  start=0,
  temperature: float = 1.0,
  context_rows: int | None = None,
) -> jax.Array:
  """Samples ``[B, H, W]`` grids one position at a time in raster order.

  Runs one ``lax.fori_loop`` over positions ``start .. H*W - 1``; each step
  re-runs the full network on the current grid and draws the value at the next
  position from ``softmax(logits / temperature)``. Position ``p`` of example
  ``i`` uses the key ``fold_in(keys[i], p)``, so example ``i`` depends only on
  ``keys[i]`` (and its own label / initial grid), not on the batch it is in.

  Args:
    logits_fn: ``(x [B, H, W] int32, labels [B] or None) -> logits [B, H, W, V]``,
      causal in raster order (e.g. a bound ``GatedPixelCNN.apply``); must be pure.
    shape: grid shape ``(H, W)``.
    keys: typed per-example keys, shape ``[B]``.
    labels: integer labels ``[B]`` passed to ``logits_fn`` (``None`` if unconditional).
    init: initial grid ``[B, H, W]`` (zeros if ``None``); raster positions
      ``< start`` are kept, e.g. the visible top half for completions.
    start: first raster position to sample (``row * W + col``); int, may be traced.
    temperature: softmax temperature (``> 0``); 1 samples the model distribution.
    context_rows: if the logits of row ``r`` depend only on rows ``r - context_rows .. r``
      (a PixelCNN's receptive field, e.g. :meth:`GatedPixelCNN.context_rows`),
      each step runs the network on those ``context_rows + 1`` rows only, not on
      the whole grid: the same samples, ``H / (context_rows + 1)`` times less work.

  Returns:
    int32 samples ``[B, H, W]``.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> def logits_fn(x, labels):  # every position is 1 with probability ~1
    ...   return jnp.broadcast_to(jnp.array([-30.0, 30.0]), x.shape + (2,))
    >>> keys = jax.random.split(jax.random.key(0), 2)
    >>> sample(logits_fn, (2, 2), keys, init=jnp.zeros((2, 2, 2), jnp.int32), start=1)
    Array([[[0, 1],
            [1, 1]],
    <BLANKLINE>
           [[0, 1],
            [1, 1]]], dtype=int32)
  """
  height, width = shape
  num_positions = height * width
  batch = keys.shape[0]
  if init is None:
    init = jnp.zeros((batch, height, width), jnp.int32)
  if init.shape != (batch, height, width):
    raise ValueError(f"init must have shape {(batch, height, width)}, got {init.shape}")
  if isinstance(start, int) and not 0 <= start <= num_positions:
    raise ValueError(f"start must be in [0, {num_positions}], got {start}")
  if isinstance(temperature, (int, float)) and temperature <= 0:
    raise ValueError(f"temperature must be > 0, got {temperature}")

  if context_rows is not None and context_rows < 0:
    raise ValueError(f"context_rows must be >= 0, got {context_rows}")
  rows = height if context_rows is None else min(height, context_rows + 1)

  def body(position, x):
    row, col = position // width, position % width
    # The `rows` rows ending at `row` (or the first `rows` rows near the top).
    top = jnp.clip(row - (rows - 1), 0, height - rows)
    logits = logits_fn(lax.dynamic_slice_in_dim(x, top, rows, axis=1), labels)
    if logits.shape[:3] != (batch, rows, width):
      raise ValueError(f"logits_fn must return [B, H, W, V], got {logits.shape}")
    step_logits = logits[:, row - top, col, :] / temperature
    step_keys = random.fold_in(keys, position)
    values = jax.vmap(jax.random.categorical)(step_keys, step_logits)
    return x.at[:, row, col].set(values.astype(jnp.int32))

  return lax.fori_loop(start, num_positions, body, init.astype(jnp.int32))

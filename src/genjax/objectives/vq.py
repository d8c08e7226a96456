"""Vector quantization for VQ-VAEs (van den Oord et al. 2017; Razavi et al. 2019).

Pure functions, no Flax:
  * :func:`quantize` maps encoder outputs to their nearest codebook entries and
    :func:`straight_through` copies decoder gradients back to the encoder.
  * :func:`vq_losses` gives the codebook and commitment terms of the VQ-VAE loss.
  * :func:`ema_update` (or :func:`ema_statistics` + :func:`ema_apply`) is the
    exponential-moving-average codebook update used instead of the codebook loss.
  * :func:`restart_dead_codes` re-initialises unused entries from encoder outputs.
  * :func:`codebook_usage` and :func:`perplexity` measure how many codes are used.

Losses are per example, shape ``[B]``; reductions over the batch are left to the caller.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from genjax.objectives.reductions import mean_per_example

# ---------------------------------------------------------------------------
# Quantization and losses.
# ---------------------------------------------------------------------------


def quantize(z_e: jax.Array, codebook: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Maps every vector to its nearest codebook entry (squared Euclidean distance).

  Distances are computed as ``|z|^2 - 2 z.e + |e|^2``, which needs one matmul
  instead of materialising ``[..., K, D]`` differences; rounding can make them
  slightly negative. Ties go to the lowest index.

  Args:
    z_e: encoder outputs, shape ``[..., D]``.
    codebook: codebook, shape ``[K, D]``.

  Returns:
    ``(z_q, indices, distances)``: the nearest entries ``[..., D]`` (differentiable
    in ``codebook``, not in ``z_e``), their indices ``[...]`` int32, and the
    squared distances to all entries ``[..., K]``.

  Example:
    >>> import jax.numpy as jnp
    >>> codebook = jnp.array([[0.0, 0.0], [1.0, 1.0]])
    >>> z_q, idx, _ = quantize(jnp.array([[0.9, 0.8], [0.1, -0.2]]), codebook)
    >>> idx
    Array([1, 0], dtype=int32)
    >>> z_q
    Array([[1., 1.],
           [0., 0.]], dtype=float32)
  """
  if z_e.shape[-1] != codebook.shape[-1]:
    raise ValueError(f"z_e has {z_e.shape[-1]} features but the codebook has {codebook.shape[-1]}")
  # HIGHEST precision: on accelerators the default float32 matmul may round
  # inputs to bf16/tf32, which can change which code is nearest.
  cross = jnp.einsum("...d,kd->...k", z_e, codebook, precision=lax.Precision.HIGHEST)
  distances = (
    jnp.sum(jnp.square(z_e), axis=-1, keepdims=True)
    - 2.0 * cross
    + jnp.sum(jnp.square(codebook), axis=-1)
  )
  indices = jnp.argmin(distances, axis=-1).astype(jnp.int32)
  z_q = jnp.take(codebook, indices, axis=0)
  return z_q, indices, distances


def straight_through(z_e: jax.Array, z_q: jax.Array) -> jax.Array:
  """Straight-through estimator: the value of ``z_q`` with the gradient of ``z_e``.

  Returns ``z_e + stop_gradient(z_q - z_e)``, so the decoder sees the quantized
  vectors while the encoder receives the decoder's gradient unchanged (an identity
  Jacobian); no gradient reaches the codebook through this path.

  Args:
    z_e: encoder outputs, shape ``[..., D]``.
    z_q: quantized vectors, same shape.

  Returns:
    Array with the value of ``z_q`` and shape ``[..., D]``.
  """
  return z_e + lax.stop_gradient(z_q - z_e)


def vq_losses(z_e: jax.Array, z_q: jax.Array, beta: float = 0.25) -> tuple[jax.Array, jax.Array]:
  """Codebook and commitment losses of the VQ-VAE, per example.

  * codebook loss ``||sg[z_e] - z_q||^2``: moves the codebook towards the encoder
    outputs; the stop-gradient on ``z_e`` keeps it from pulling the encoder.
  * commitment loss ``beta * ||z_e - sg[z_q]||^2``: keeps the encoder close to
    its chosen codes; the stop-gradient on ``z_q`` keeps it from moving the codebook.

  Both are means over the non-batch elements (as in Sonnet's ``VectorQuantizer``),
  so their scale does not depend on the latent size. With the EMA codebook only
  the commitment loss is used.

  Args:
    z_e: encoder outputs, shape ``[B, ..., D]``.
    z_q: quantized vectors (from :func:`quantize`, not straight-through), same shape.
    beta: commitment weight.

  Returns:
    ``(codebook_loss, commitment_loss)``, each of shape ``[B]``.

  Example:
    >>> import jax.numpy as jnp
    >>> cb, cm = vq_losses(jnp.ones((1, 2, 2)), jnp.zeros((1, 2, 2)), beta=0.5)
    >>> cb, cm
    (Array([1.], dtype=float32), Array([0.5], dtype=float32))
  """
  codebook_loss = mean_per_example(jnp.square(lax.stop_gradient(z_e) - z_q))
  commitment_loss = beta * mean_per_example(jnp.square(z_e - lax.stop_gradient(z_q)))
  return codebook_loss, commitment_loss


# ---------------------------------------------------------------------------
# Exponential-moving-average codebook.
# ---------------------------------------------------------------------------


class EMAState(NamedTuple):
  """Moving averages behind an EMA codebook.

  Attributes:
    cluster_size: EMA of how many vectors were assigned to each code, shape ``[K]``.
    embed_sum: EMA of the sum of the vectors assigned to each code, shape ``[K, D]``.
  """

  cluster_size: jax.Array
  embed_sum: jax.Array


def ema_init(codebook: jax.Array) -> EMAState:
  """Initial EMA state for ``codebook`` ``[K, D]``.

  Sonnet 2 and Haiku start both averages at zero and zero-debias them, so after
  the first step every code that received no vectors is zero. Here the state
  starts, without debiasing, as if each code had been assigned exactly one
  vector, itself: ``cluster_size = 1`` and ``embed_sum = codebook``. Then
  ``embed_sum / cluster_size`` equals the initial codebook, and codes that are
  not chosen move away from it only gradually.

  Args:
    codebook: initial codebook, shape ``[K, D]``.

  Returns:
    ``EMAState`` with ``cluster_size`` ``[K]`` and ``embed_sum`` ``[K, D]``.
  """
  return EMAState(
    cluster_size=jnp.ones(codebook.shape[:1], codebook.dtype),
    embed_sum=jnp.asarray(codebook),
  )


def ema_statistics(
  z_e_flat: jax.Array, indices: jax.Array, num_embeddings: int
) -> tuple[jax.Array, jax.Array]:
  """Per-code assignment counts and sums of the assigned vectors for one batch.

  Under data parallelism, ``lax.psum`` both results over the device axis before
  :func:`ema_apply` so that every replica applies the same update.

  Args:
    z_e_flat: encoder outputs, shape ``[N, D]``.
    indices: their code indices, shape ``[N]``.
    num_embeddings: codebook size ``K``.

  Returns:
    ``(counts, sums)`` of shapes ``[K]`` and ``[K, D]`` (dtype of ``z_e_flat``).
  """
  indices = indices.reshape(-1)
  counts = jax.ops.segment_sum(
    jnp.ones(indices.shape, z_e_flat.dtype), indices, num_segments=num_embeddings
  )
  sums = jax.ops.segment_sum(z_e_flat, indices, num_segments=num_embeddings)
  return counts, sums


def ema_apply(
  state: EMAState,
  counts: jax.Array,
  sums: jax.Array,
  decay: float = 0.99,
  epsilon: float = 1e-5,
) -> tuple[EMAState, jax.Array]:
  """One EMA step from (already all-reduced) statistics, as in Sonnet's ``VectorQuantizerEMA``.

  ``cluster_size <- decay * cluster_size + (1 - decay) * counts`` and likewise for
  ``embed_sum``; then, with ``n = sum(cluster_size)``, the Laplace-smoothed sizes
  ``(cluster_size + epsilon) / (n + K * epsilon) * n`` divide ``embed_sum`` to give
  the codebook. The smoothing keeps codes with zero size finite; the stored
  ``cluster_size`` stays unsmoothed.

  Args:
    state: current ``EMAState``.
    counts: assignment counts, shape ``[K]``.
    sums: sums of assigned vectors, shape ``[K, D]``.
    decay: EMA decay.
    epsilon: Laplace smoothing constant.

  Returns:
    ``(new_state, new_codebook)`` with ``new_codebook`` of shape ``[K, D]``.
  """
  cluster_size = decay * state.cluster_size + (1.0 - decay) * counts
  embed_sum = decay * state.embed_sum + (1.0 - decay) * sums
  n = jnp.sum(cluster_size)
  num_embeddings = cluster_size.shape[0]
  smoothed = (cluster_size + epsilon) / (n + num_embeddings * epsilon) * n
  codebook = embed_sum / smoothed[:, None]
  return EMAState(cluster_size, embed_sum), codebook


def ema_update(
  state: EMAState,
  z_e_flat: jax.Array,
  indices: jax.Array,
  decay: float = 0.99,
  epsilon: float = 1e-5,
  axis_name: str | None = None,
) -> tuple[EMAState, jax.Array]:
  """EMA codebook update from one batch: :func:`ema_statistics` then :func:`ema_apply`.

  Args:
    state: current ``EMAState``.
    z_e_flat: encoder outputs, shape ``[N, D]`` (gradients are stopped).
    indices: their code indices, shape ``[N]``.
    decay: EMA decay.
    epsilon: Laplace smoothing constant.
    axis_name: if given, counts and sums are ``lax.psum``-ed over this mapped axis
      (inside ``shard_map``/``pmap``), so all replicas compute the same codebook.

  Returns:
    ``(new_state, new_codebook)``.

  Example:
    >>> import jax.numpy as jnp
    >>> state = ema_init(jnp.zeros((2, 1)))
    >>> state, codebook = ema_update(state, jnp.array([[1.0], [3.0]]), jnp.array([1, 1]),
    ...                              decay=0.5, epsilon=0.0)
    >>> state.cluster_size, codebook
    (Array([0.5, 1.5], dtype=float32), Array([[0.       ],
           [1.3333334]], dtype=float32))
  """
  z_e_flat = lax.stop_gradient(z_e_flat)
  counts, sums = ema_statistics(z_e_flat, indices, state.cluster_size.shape[0])
  if axis_name is not None:
    counts, sums = lax.psum((counts, sums), axis_name)
  return ema_apply(state, counts, sums, decay, epsilon)


# ---------------------------------------------------------------------------
# Dead codes and usage statistics.
# ---------------------------------------------------------------------------


def restart_dead_codes(
  codebook: jax.Array,
  usage: jax.Array,
  candidates: jax.Array,
  key: jax.Array,
  threshold,
) -> tuple[jax.Array, jax.Array]:
  """Replaces rarely used codes with randomly chosen encoder outputs.

  Shapes are fixed (every code draws a candidate; only dead codes take it), so
  this is jit-able. Under data parallelism pass the same ``key`` and the same
  (e.g. all-gathered) ``candidates`` on every replica so codebooks stay equal.

  Args:
    codebook: shape ``[K, D]``.
    usage: per-code usage, e.g. the EMA ``cluster_size``, shape ``[K]``.
    candidates: encoder outputs to draw from, shape ``[N, D]``; drawn without
      replacement when ``N >= K``.
    key: a single typed PRNG key.
    threshold: codes with ``usage < threshold`` are restarted.

  Returns:
    ``(new_codebook, num_restarted)`` with ``num_restarted`` an int32 scalar.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> codebook, n = restart_dead_codes(jnp.zeros((2, 1)), jnp.array([5.0, 0.0]),
    ...                                  jnp.array([[7.0]]), jax.random.key(0), 1.0)
    >>> codebook, n
    (Array([[0.],
           [7.]], dtype=float32), Array(1, dtype=int32))
  """
  num_embeddings = codebook.shape[0]
  num_candidates = candidates.shape[0]
  # Distinct candidates whenever there are enough of them; shapes stay static.
  rows = jax.random.choice(
    key, num_candidates, shape=(num_embeddings,), replace=num_candidates < num_embeddings
  )
  dead = usage < threshold
  new = jnp.where(dead[:, None], candidates[rows].astype(codebook.dtype), codebook)
  return new, jnp.sum(dead, dtype=jnp.int32)


def ema_restart_dead_codes(
  state: EMAState,
  codebook: jax.Array,
  candidates: jax.Array,
  key: jax.Array,
  threshold,
) -> tuple[EMAState, jax.Array, jax.Array]:
  """:func:`restart_dead_codes` for an EMA codebook, using ``cluster_size`` as usage.

  The moving averages of restarted codes are reset as in :func:`ema_init`
  (``cluster_size = 1``, ``embed_sum = new code``); otherwise the next
  :func:`ema_apply` would restore the old entry.

  Args:
    state: current ``EMAState``.
    codebook: current codebook ``[K, D]``.
    candidates: encoder outputs ``[N, D]``.
    key: a single typed PRNG key.
    threshold: codes with ``cluster_size < threshold`` are restarted.

  Returns:
    ``(new_state, new_codebook, num_restarted)``.
  """
  new, num_restarted = restart_dead_codes(codebook, state.cluster_size, candidates, key, threshold)
  dead = state.cluster_size < threshold
  cluster_size = jnp.where(dead, jnp.ones_like(state.cluster_size), state.cluster_size)
  embed_sum = jnp.where(dead[:, None], new, state.embed_sum)
  return EMAState(cluster_size, embed_sum), new, num_restarted


def codebook_usage(indices: jax.Array, num_embeddings: int) -> jax.Array:
  """How often each code occurs in ``indices`` (any shape).

  Args:
    indices: code indices, any shape.
    num_embeddings: codebook size ``K``.

  Returns:
    int32 counts of shape ``[K]``.
  """
  return jnp.bincount(indices.reshape(-1), length=num_embeddings).astype(jnp.int32)


def perplexity(counts: jax.Array) -> jax.Array:
  """``exp`` of the entropy of the code distribution ``counts / sum(counts)``.

  Equals ``K`` when all ``K`` codes are used equally and 1 when one code is used.

  Args:
    counts: non-negative usage counts, shape ``[K]`` (int or float).

  Returns:
    float32 scalar.

  Example:
    >>> import jax.numpy as jnp
    >>> perplexity(jnp.array([3, 3, 3, 3]))
    Array(4., dtype=float32)
  """
  counts = jnp.asarray(counts, jnp.float32)
  p = counts / jnp.maximum(jnp.sum(counts), 1e-12)
  # xlogy gives 0 * log 0 = 0 for unused codes.
  return jnp.exp(-jnp.sum(jax.scipy.special.xlogy(p, p)))

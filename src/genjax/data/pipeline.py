"""Deterministic, resumable, process-sharded batching of in-memory arrays.

Training batches come from grain's random-access ``MapDataset`` whose element
``k`` is the global batch of step ``k``: the order is a pure function of the seed, so the iterator position (``get_state()``) is all
a checkpoint needs to resume the exact same stream. Every process builds the
same global batch of indices and gathers only its own contiguous slice.
"""

from __future__ import annotations

from collections.abc import Iterator

import grain
import numpy as np
from absl import flags


def _num_examples(arrays: dict[str, np.ndarray]) -> int:
  if not arrays:
    raise ValueError("arrays is empty; expected e.g. {'image': ..., 'label': ...}.")
  sizes = {k: len(v) for k, v in arrays.items()}
  if len(set(sizes.values())) != 1:
    raise ValueError(f"All arrays must have the same length, got {sizes}.")
  return next(iter(sizes.values()))


def _per_process(global_batch_size: int, process_count: int, process_index: int) -> int:
  if global_batch_size % process_count:
    raise ValueError(
      f"Global batch size {global_batch_size} is not divisible by the "
      f"process count {process_count}."
    )
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index {process_index} not in [0, {process_count}).")
  return global_batch_size // process_count


def _take(arrays, idx: np.ndarray) -> dict[str, np.ndarray]:
  """The examples at ``idx`` of every field: one read of each record from a table on disk
  (``take``), one fancy-index per array in memory (per-record Python would dominate)."""
  if hasattr(arrays, "take"):
    return dict(arrays.take(idx))
  return {k: v[idx] for k, v in arrays.items()}


def steps_per_epoch(n: int, global_batch_size: int) -> int:
  """Number of whole global batches in one pass over ``n`` examples.

  Batches are formed from an endless stream of per-epoch shuffles, so no
  example is dropped; a batch may straddle two epochs.
  """
  return max(1, n // global_batch_size)


def make_train_iterator(
  arrays: dict[str, np.ndarray],
  *,
  global_batch_size: int,
  seed: int,
  process_index: int = 0,
  process_count: int = 1,
  prefetch: int = 2,
  minibatches: int = 1,
  num_workers: int = 0,
) -> grain.DatasetIterator:
  """Endless shuffled batches for this process; checkpointable position.

  Args:
      arrays: Equal-length arrays keyed by name, e.g. ``{"image": uint8
          [N, H, W, C], "label": int32 [N]}``.
      global_batch_size: Examples per step summed over all processes.
      seed: Shuffle seed; each epoch is reshuffled as a function of it.
      process_index: This process's index.
      process_count: Number of processes sharing each global batch.
      prefetch: Batches prepared ahead in a background thread.
      minibatches: Global batches per step (e.g. one per discriminator update
          of a GAN). With ``k > 1`` arrays come as ``[b, k, ...]``: example-major,
          so sharding the leading axis over devices gives every device its slice
          of each of the ``k`` minibatches.
      num_workers: Worker processes that read and decode batches, for arrays
          that are a table on disk (``take``); 0, and in-memory arrays, read in
          a background thread. Batches do not depend on it.

  Returns:
      A grain ``DatasetIterator`` yielding dicts with each key of ``arrays``
      sliced to ``[b, ...]`` (``b = global_batch_size // process_count``) and
      ``"index"`` int32 [b], the examples' positions ``p*b + arange(b)`` in the
      global batch (``[b, k]`` with ``index[:, j] = position + j * global_batch_size``
      when ``minibatches = k > 1``). Resume with ``get_state()`` / ``set_state(state)``.

  Raises:
      ValueError: ``global_batch_size`` exceeds N or is not divisible by
          ``process_count``.
  """
  n = _num_examples(arrays)
  if global_batch_size * minibatches > n:
    raise ValueError(
      f"Global batch size {global_batch_size} x {minibatches} minibatches exceeds the "
      f"dataset size {n}."
    )
  b = _per_process(global_batch_size, process_count, process_index)
  lo = process_index * b
  position = np.arange(lo, lo + b, dtype=np.int32)
  batch_indices = _EpochShuffle(n, global_batch_size, seed)

  def gather(step: int) -> dict[str, np.ndarray]:
    if minibatches == 1:
      idx, index = batch_indices(step)[lo : lo + b], position.copy()
    else:  # Minibatch j of step s is global batch s * k + j of the stream.
      steps = step * minibatches + np.arange(minibatches)
      idx = np.stack([batch_indices(int(s))[lo : lo + b] for s in steps], axis=1)
      index = position[:, None] + global_batch_size * np.arange(minibatches, dtype=np.int32)
    out = _take(arrays, idx)
    out["index"] = index
    return out

  # Element k of the dataset is the batch of step k; grain supplies the
  # prefetching and the checkpointable position.
  ds = grain.MapDataset.range(_ENDLESS).map(gather)
  if num_workers and hasattr(arrays, "take"):
    return _WorkerBatches(ds, num_workers, prefetch)
  options = grain.ReadOptions(num_threads=1, prefetch_buffer_size=prefetch)
  return iter(ds.to_iter_dataset(options))


_ENDLESS = 2**62


class _WorkerBatches:
  """The batches of ``ds`` from ``num_workers`` processes, each making every W-th.

  Its state is the next step, ``{"next_index": k}`` as without workers, rather
  than grain's per-worker states: a checkpoint then resumes under any worker
  count. Workers start at the first batch, from the step set last.
  """

  def __init__(self, ds: grain.MapDataset, num_workers: int, prefetch: int):
    self._ds, self._workers, self._prefetch = ds, num_workers, prefetch
    self._step, self._it = 0, None

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    if self._it is None:
      # grain's workers read absl flags, unparsed when genjax runs as a library.
      if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
      options = grain.MultiprocessingOptions(
        num_workers=self._workers, per_worker_buffer_size=self._prefetch
      )
      self._it = iter(self._ds[self._step :].to_iter_dataset().mp_prefetch(options))
    batch = next(self._it)
    self._step += 1
    return batch

  def get_state(self) -> dict[str, int]:
    return {"next_index": self._step}

  def set_state(self, state: dict[str, int]) -> None:
    self.close()
    self._step = int(state["next_index"])

  def close(self) -> None:
    if self._it is not None:
      self._it.close()
      self._it = None


class _EpochShuffle:
  """Global batch ``step`` of an endless stream of per-epoch permutations.

  Equivalent to grain's ``range(n).shuffle().repeat().batch(B)`` (a batch may
  straddle two epochs), but vectorized: grain batches element by element in
  Python, which measured 3.5 ms per 128-example batch against 0.03 ms here.
  """

  def __init__(self, n: int, global_batch_size: int, seed: int):
    self.n, self.batch, self.seed = n, global_batch_size, seed
    self._cache: dict[int, np.ndarray] = {}

  def permutation(self, epoch: int) -> np.ndarray:
    if epoch not in self._cache:
      if len(self._cache) >= 2:  # Consecutive steps touch at most two epochs.
        self._cache.pop(min(self._cache))
      self._cache[epoch] = np.random.default_rng((self.seed, epoch)).permutation(self.n)
    return self._cache[epoch]

  def __call__(self, step: int) -> np.ndarray:
    positions = step * self.batch + np.arange(self.batch, dtype=np.int64)
    epochs, offsets = np.divmod(positions, self.n)
    out = np.empty(self.batch, dtype=np.int64)
    for epoch in np.unique(epochs):
      sel = epochs == epoch
      out[sel] = self.permutation(int(epoch))[offsets[sel]]
    return out


def eval_batches(
  arrays: dict[str, np.ndarray],
  *,
  batch_size: int,
  num_examples: int | None = None,
  process_index: int = 0,
  process_count: int = 1,
) -> Iterator[dict[str, np.ndarray]]:
  """In-order, padded evaluation batches over the first ``num_examples``.

  The last global batch is padded to ``batch_size`` by repeating the final
  example, so every step has the same shape (one compilation). Each
  process gets its contiguous slice of every global batch.

  Args:
      arrays: Equal-length arrays keyed by name.
      batch_size: Global batch size (summed over processes).
      num_examples: How many leading examples to use; all if None.
      process_index: This process's index.
      process_count: Number of processes.

  Yields:
      Dicts with each key of ``arrays`` as ``[b, ...]`` (``b = batch_size //
      process_count``), ``"mask"`` float32 [b] (1 real, 0 padding) and
      ``"index"`` int32 [b] (position in the eval set; padding repeats the
      final example's index).
  """
  n = _num_examples(arrays)
  n = n if num_examples is None else min(num_examples, n)
  if n <= 0:
    return
  b = _per_process(batch_size, process_count, process_index)
  for start in range(0, n, batch_size):
    lo = start + process_index * b
    positions = np.arange(lo, lo + b)
    idx = np.minimum(positions, n - 1).astype(np.int32)
    batch = _take(arrays, idx)
    batch["mask"] = (positions < n).astype(np.float32)
    batch["index"] = idx
    yield batch

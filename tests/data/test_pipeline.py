"""Tests for genjax.data.pipeline."""

import numpy as np
import pytest

from genjax.data.pipeline import eval_batches, make_train_iterator, steps_per_epoch


def _arrays(n, seed=0):
  rng = np.random.default_rng(seed)
  return {
    "image": rng.integers(0, 256, (n, 4, 4, 1), dtype=np.uint8),
    "label": np.arange(n, dtype=np.int32),  # Doubles as the example id.
  }


def _take(it, k):
  return [next(it) for _ in range(k)]


def _ids(batches):
  return np.concatenate([b["label"] for b in batches])


def test_batch_structure_and_gather_consistency():
  arrays = _arrays(50)
  it = make_train_iterator(arrays, global_batch_size=10, seed=0)
  batch = next(it)
  assert set(batch) == {"image", "label", "index"}
  assert batch["image"].shape == (10, 4, 4, 1) and batch["image"].dtype == np.uint8
  np.testing.assert_array_equal(batch["index"], np.arange(10))
  assert batch["index"].dtype == np.int32
  # Images travel with their labels.
  np.testing.assert_array_equal(batch["image"], arrays["image"][batch["label"]])


def test_each_example_once_per_epoch_and_epochs_differ():
  n, bs = 60, 12
  it = make_train_iterator(_arrays(n), global_batch_size=bs, seed=3)
  epochs = _ids(_take(it, 3 * steps_per_epoch(n, bs))).reshape(3, n)
  for ids in epochs:
    np.testing.assert_array_equal(np.sort(ids), np.arange(n))
  assert not np.array_equal(epochs[0], epochs[1])
  assert not np.array_equal(epochs[1], epochs[2])
  assert not np.array_equal(epochs[0], np.arange(n))


def test_uneven_dataset_streams_whole_epochs():
  # 7 does not divide 50: batches straddle epochs but no example is lost.
  n, bs = 50, 7
  it = make_train_iterator(_arrays(n), global_batch_size=bs, seed=1)
  stream = _ids(_take(it, 2 * n // bs + 1))[: 2 * n].reshape(2, n)
  for ids in stream:
    np.testing.assert_array_equal(np.sort(ids), np.arange(n))


def test_seed_determines_order():
  arrays = _arrays(40)
  run = lambda seed: _ids(_take(make_train_iterator(arrays, global_batch_size=8, seed=seed), 5))
  np.testing.assert_array_equal(run(5), run(5))
  assert not np.array_equal(run(5), run(6))


def test_resume_from_state_matches_uninterrupted():
  arrays = _arrays(30)
  make = lambda: make_train_iterator(arrays, global_batch_size=8, seed=11)
  original = make()
  _take(original, 5)  # Crosses an epoch boundary (30 / 8 < 5).
  state = original.get_state()
  expected = _take(original, 6)
  resumed = make()
  resumed.set_state(state)
  for want, got in zip(expected, _take(resumed, 6)):
    for key in want:
      np.testing.assert_array_equal(want[key], got[key])


def test_process_slices_union_is_global_batch():
  arrays = _arrays(64)
  single = _take(make_train_iterator(arrays, global_batch_size=16, seed=2), 4)
  parts = [
    _take(
      make_train_iterator(arrays, global_batch_size=16, seed=2, process_index=p, process_count=2), 4
    )
    for p in range(2)
  ]
  for step, whole in enumerate(single):
    for key in whole:
      joined = np.concatenate([parts[0][step][key], parts[1][step][key]])
      np.testing.assert_array_equal(joined, whole[key])
  np.testing.assert_array_equal(parts[1][0]["index"], np.arange(8, 16))


def test_invalid_batch_sizes():
  with pytest.raises(ValueError, match="12.*10|10.*12"):
    make_train_iterator(_arrays(10), global_batch_size=12, seed=0)
  with pytest.raises(ValueError, match="9.*2"):
    make_train_iterator(_arrays(10), global_batch_size=9, seed=0, process_count=2)
  with pytest.raises(ValueError, match="same length"):
    make_train_iterator({"a": np.zeros(3), "b": np.zeros(4)}, global_batch_size=2, seed=0)


def test_steps_per_epoch():
  assert steps_per_epoch(60_000, 128) == 468
  assert steps_per_epoch(100, 10) == 10


@pytest.mark.parametrize("n, bs, limit", [(23, 8, None), (24, 8, None), (50, 8, 17)])
def test_eval_batches_cover_each_example_once(n, bs, limit):
  arrays = _arrays(n)
  used = n if limit is None else limit
  batches = list(eval_batches(arrays, batch_size=bs, num_examples=limit))
  assert len(batches) == -(-used // bs)
  for b in batches:
    assert b["image"].shape[0] == bs and b["mask"].dtype == np.float32
    np.testing.assert_array_equal(b["label"], b["index"])
  mask = np.concatenate([b["mask"] for b in batches]).astype(bool)
  ids = _ids(batches)
  np.testing.assert_array_equal(ids[mask], np.arange(used))
  # Padding repeats the final real example.
  assert (ids[~mask] == used - 1).all()
  assert mask.sum() == used


def test_eval_batches_process_slices():
  arrays = _arrays(21)
  whole = list(eval_batches(arrays, batch_size=8))
  parts = [
    list(eval_batches(arrays, batch_size=8, process_index=p, process_count=2)) for p in range(2)
  ]
  for step, batch in enumerate(whole):
    for key in batch:
      joined = np.concatenate([parts[0][step][key], parts[1][step][key]])
      np.testing.assert_array_equal(joined, batch[key])

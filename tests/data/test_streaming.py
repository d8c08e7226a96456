"""tfds datasets streamed from their ArrayRecord files match the same data decoded into memory."""

import jax
import numpy as np
import pytest

import genjax
from genjax import config as config_lib
from genjax.data import pipeline, sources
from genjax.run import loop


@pytest.fixture(name="mnist", scope="module")
def _mnist():
  """``(streamed, in memory)``: the reference is the decoded ``.npz`` path."""
  streamed = sources.load_dataset("mnist", streaming=True)
  assert isinstance(streamed.train, sources.TfdsTable)
  return streamed, sources.load_dataset("mnist")


def _iterator(arrays, num_workers=0, process_index=0, process_count=1):
  return pipeline.make_train_iterator(
    arrays,
    global_batch_size=16,
    seed=7,
    process_index=process_index,
    process_count=process_count,
    num_workers=num_workers,
  )


def _assert_same(a, b):
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])


@pytest.mark.parametrize("num_workers", [0, 2])
def test_streamed_batches_equal_in_memory_batches(mnist, num_workers):
  streamed, in_memory = mnist
  # Each iterator with workers starts processes (seconds): process_count=1 with
  # workers is the resume test's.
  slices = ((0, 2), (1, 2)) if num_workers else ((0, 1), (0, 2), (1, 2))
  for process_index, process_count in slices:
    got = _iterator(streamed.train, num_workers, process_index, process_count)
    want = _iterator(in_memory.train, 0, process_index, process_count)
    for _ in range(5):
      _assert_same(next(got), next(want))
    got.close()


def test_a_streamed_iterator_resumes_with_workers(mnist):
  streamed, in_memory = mnist
  first, want = _iterator(streamed.train, 2), _iterator(in_memory.train)
  for _ in range(3):
    _assert_same(next(first), next(want))
  state = first.get_state()
  first.close()
  # The state is the step alone, as in memory: it resumes under any worker count.
  assert state == {"next_index": 3}
  resumed = _iterator(streamed.train, 2)
  resumed.set_state(state)
  for _ in range(3):
    _assert_same(next(resumed), next(want))
  resumed.close()


def test_streamed_test_split_and_resizing_equal_in_memory(mnist):
  streamed, in_memory = mnist
  assert streamed.shape == in_memory.shape and streamed.num_classes == in_memory.num_classes
  assert len(streamed.test["label"]) == len(in_memory.test["label"])
  batches = pipeline.eval_batches(streamed.test, batch_size=64, num_examples=200)
  images = np.concatenate([b["image"] for b in batches])[:200]
  np.testing.assert_array_equal(images, in_memory.test["image"][:200])
  np.testing.assert_array_equal(streamed.test["label"][:200], in_memory.test["label"][:200])
  small = sources.load_dataset("mnist", streaming=True, image_size=12)
  assert small.shape == (12, 12, 1)
  resized = sources.load_dataset("mnist", image_size=12)
  np.testing.assert_array_equal(small.train["image"][:40], resized.train["image"][:40])


def test_training_on_streamed_data_equals_training_in_memory(tmp_path, shrink):
  params = {}
  for streaming in (False, True):
    c = shrink(config_lib.defaults(), num_steps=3)
    c.family = "vae"
    c.data.update(name="mnist", streaming=streaming, num_workers=int(streaming))
    c.model.update(hidden_sizes=(16,), latent_dim=2)
    workdir = tmp_path / f"streaming={streaming}"
    loop.train_and_evaluate(c, workdir)
    params[streaming] = jax.device_get(genjax.load(workdir).params)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), params[False], params[True]
  )

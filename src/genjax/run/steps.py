"""The compiled per-device train and eval steps that wrap a family.

RNG rule: randomness is a pure function of ``(seed, step, global example
position)``. Each example's key is ``fold_in(fold_in(train_key, step), index)``
where ``index`` is the example's position in the global batch, so a global
batch gets the same noise on 1 device, 8 devices, or 8 hosts, and a resumed
run replays exactly the noise of an uninterrupted one.
"""

from typing import Callable

import jax
import jax.numpy as jnp
from jax import lax

from genjax.core import random as genjax_random
from genjax.core.parallel import AXIS
from genjax.core.random import EVAL_STREAM, TRAIN_STREAM, stream_key
from genjax.data.preprocessing import prepare_batch


def make_train_step(family, *, seed: int, preprocess: str) -> Callable:
  """Returns ``train_step(state, batch) -> (state, metrics)`` for one device.

  Args:
    family: a :class:`genjax.families.base.Family`.
    seed: run seed.
    preprocess: preprocessing op applied on device.
  """
  train_key = stream_key(seed, TRAIN_STREAM)

  def train_step(state, batch):
    # Minibatched layouts ([b, k, ...], see pipeline.make_train_iterator) are
    # prepared flat, then handed to the family in their original layout.
    lead = batch["index"].shape
    flat = jax.tree.map(lambda v: v.reshape((-1,) + v.shape[len(lead) :]), batch)
    keys = genjax_random.example_keys(jax.random.fold_in(train_key, state.step), flat["index"])
    data_keys, model_keys = genjax_random.split(keys, 2)
    # The global positions travel with the examples: a family may spread a quantity
    # evenly over the global batch (stratified diffusion times) on any layout.
    inputs = dict(prepare_batch(flat, data_keys, preprocess), index=flat["index"])
    unflat = lambda v: v.reshape(lead + v.shape[1:])  # noqa: E731
    return family.train_step(state, jax.tree.map(unflat, inputs), unflat(model_keys))

  return train_step


def scan_steps(train_step: Callable) -> Callable:
  """``steps(state, batches) -> (state, metrics)``: ``train_step`` over k stacked batches.

  ``batches`` holds the k batches along axis 1 (``[b, k, ...]``: example-major,
  so sharding the leading axis over devices gives each device its slice of
  every batch, as the pipeline's minibatches do); ``metrics`` come back with a
  leading axis of k. One dispatch then runs k steps: the host's per-step work
  (launch, transfer, Python) is paid once per k steps, which is what a small
  model's step time is made of.
  """

  def steps(state, batches):
    return lax.scan(train_step, state, jax.tree.map(lambda v: jnp.moveaxis(v, 1, 0), batches))

  return steps


def make_eval_step(family, *, seed: int, preprocess: str, num_samples: int) -> Callable:
  """Returns ``eval_step(params, batch) -> (sums, count)`` for one device.

  The eval keys do not depend on the training step, so the same test examples
  get the same binarization and noise at every evaluation.
  """
  eval_key = stream_key(seed, EVAL_STREAM)

  def eval_step(params, batch):
    keys = genjax_random.example_keys(eval_key, batch["index"])
    data_keys, model_keys = genjax_random.split(keys, 2)
    inputs = prepare_batch(batch, data_keys, preprocess)
    per_example = family.eval_fn(params, inputs, model_keys, num_samples)
    mask = batch["mask"].astype(jnp.float32)

    def masked_sum(v):  # [B] or [B, K] (vector metrics, e.g. code histograms).
      return lax.psum(jnp.sum(v * mask.reshape(mask.shape + (1,) * (v.ndim - 1)), axis=0), AXIS)

    sums = {k: masked_sum(v) for k, v in per_example.items()}
    return sums, lax.psum(jnp.sum(mask), AXIS)

  return eval_step

"""Shared checks for family tests."""

import jax
import numpy as np

from genjax.run import checkpoint as checkpoint_lib
from genjax.run import experiment, loop


def perturbed(params, scale=0.05):
  """Random weights everywhere: zero-initialised output layers would hide bugs."""
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(7), len(leaves))
  return treedef.unflatten(
    [p + scale * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)]
  )


def restore_run(workdir):
  """``(experiment on one device, train state)`` of a run's latest checkpoint."""
  ckpt = checkpoint_lib.Checkpointer(workdir / "checkpoints")
  exp = experiment.build(ckpt.restore_config(), jax.devices()[:1])
  state = ckpt.restore(exp.abstract_state())[0]
  ckpt.close()
  return exp, state


def assert_resume_is_bit_identical(config, workdir):
  """Trains 4 steps straight and 2 + 2 with a restart; the step-4 states must be equal.

  Args:
    config: ``config(num_steps)`` returns the run's config (checkpointing every 2 steps).
    workdir: a fresh directory.

  Returns:
    The restored step-4 state of the uninterrupted run.
  """
  loop.train_and_evaluate(config(4), workdir / "straight")
  loop.train_and_evaluate(config(2), workdir / "resumed")
  loop.train_and_evaluate(config(4), workdir / "resumed")
  states = []
  for name in ("straight", "resumed"):
    ckpt = checkpoint_lib.Checkpointer(workdir / name / "checkpoints")
    exp = experiment.build(ckpt.restore_config(4), jax.devices()[:1])
    states.append(ckpt.restore(exp.abstract_state(), 4)[0])
    ckpt.close()
  jax.tree.map(np.testing.assert_array_equal, states[0], states[1])
  return states[0]

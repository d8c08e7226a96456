"""A run killed at any point and resumed ends bit-identical to an uninterrupted run."""

import json
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from genjax.run import checkpoint as checkpoint_lib
from genjax.run import experiment

REPO = pathlib.Path(__file__).resolve().parents[2]
NUM_STEPS = 600
OVERRIDES = [
  f"--config.train.num_steps={NUM_STEPS}",
  "--config.train.checkpoint_every=50",
  "--config.train.log_every=25",
  "--config.train.eval_every=200",
  "--config.train.ema_decay=0.99",
  "--config.optimizer.schedule=cosine",
  "--config.eval.periodic_examples=64",
  "--config.eval.periodic_nll_samples=4",
  "--config.eval.batch_size=64",
  "--config.eval.num_images=16",
  "--config.model.hidden_sizes=(256,256)",
  "--config.train.num_devices=2",  # Data-parallel; 8 device threads on 2 cores only add time.
]


def _command(workdir, steps_per_call=1):
  return [
    sys.executable,
    "-m",
    "genjax.main",
    f"--config={REPO / 'experiments/configs/vae_digits.py'}",
    f"--workdir={workdir}",
    *OVERRIDES,
    f"--config.train.steps_per_call={steps_per_call}",
  ]


def _final_state(workdir, num_steps=NUM_STEPS):
  ckpt = checkpoint_lib.Checkpointer(workdir / "checkpoints")
  assert ckpt.latest_step() == num_steps
  exp = experiment.build(ckpt.restore_config())
  state, data_state, _ = ckpt.restore(exp.abstract_state())
  ckpt.close()
  return jax.device_get(state), data_state


def _assert_identical(a, b):
  leaves_a, tree_a = jax.tree.flatten(a)
  leaves_b, tree_b = jax.tree.flatten(b)
  assert tree_a == tree_b
  for x, y in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _wait_for_checkpoint(workdir, proc, timeout=120.0):
  deadline = time.time() + timeout
  ckpts = workdir / "checkpoints"
  while time.time() < deadline:
    done = [p for p in ckpts.glob("*") if p.name.isdigit()] if ckpts.exists() else []
    if done:
      return
    assert proc.poll() is None, "run ended before its first checkpoint"
    time.sleep(0.05)
  raise TimeoutError("no checkpoint appeared")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  runs = {}

  def run(steps_per_call):
    if steps_per_call not in runs:
      workdir = tmp_path_factory.mktemp(f"uninterrupted_{steps_per_call}")
      subprocess.run(_command(workdir, steps_per_call), check=True, capture_output=True, cwd=REPO)
      runs[steps_per_call] = workdir
    return runs[steps_per_call]

  return run


@pytest.mark.xdist_group("resume")  # One worker runs the shared uninterrupted runs.
@pytest.mark.parametrize(
  "sig,steps_per_call",
  # SIGTERM stops between calls: with 8 steps per call, at the end of one.
  [(signal.SIGKILL, 1), (signal.SIGTERM, 8)],
  ids=["SIGKILL", "SIGTERM-8-steps-per-call"],
)
def test_interrupted_run_resumes_bit_identical(uninterrupted, tmp_path, sig, steps_per_call):
  workdir = tmp_path / "interrupted"
  command = _command(workdir, steps_per_call)
  proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  _wait_for_checkpoint(workdir, proc)
  proc.send_signal(sig)
  _, err = proc.communicate(timeout=120)
  if sig == signal.SIGKILL:
    assert proc.returncode == -signal.SIGKILL
  else:  # SIGTERM: the run saves where it is and exits cleanly.
    assert proc.returncode == 0, err.decode()[-2000:]
  stopped_at = checkpoint_lib.Checkpointer(workdir / "checkpoints").latest_step()
  assert stopped_at is not None and stopped_at < NUM_STEPS, "killed too late to test resume"

  subprocess.run(command, check=True, capture_output=True, cwd=REPO)

  state_a, data_a = _final_state(uninterrupted(steps_per_call))
  state_b, data_b = _final_state(workdir)
  _assert_identical(state_a, state_b)  # params, EMA, optimizer state, step
  assert data_a == data_b  # and the data position
  # metrics.jsonl holds each logged step once, in order, after the replay.
  steps = [
    json.loads(line)["step"]
    for line in (workdir / "metrics.jsonl").read_text().splitlines()
    if "train/loss" in json.loads(line)
  ]
  assert steps == sorted(set(steps)) and steps[-1] == NUM_STEPS

"""A small kill soak: SIGKILLs at seeded random moments, then bit-identical to no kills."""

import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np

from genjax import config as config_lib
from genjax.run import checkpoint as checkpoint_lib
from genjax.run import experiment

REPO = pathlib.Path(__file__).resolve().parents[2]
CONFIG = REPO / "experiments" / "configs" / "vae_digits.py"
OVERRIDES = [
  "train.num_steps=300",
  "train.log_every=10",
  "train.checkpoint_every=25",
  "train.eval_every=150",
  "train.progress_bar=False",
  "eval.periodic_examples=64",
  "eval.periodic_nll_samples=2",
  "eval.num_images=8",
  "evals=",
]


def _command(workdir):
  flags = [f"--config.{o}" for o in OVERRIDES]
  return [sys.executable, "-m", "genjax.main", f"--config={CONFIG}", f"--workdir={workdir}", *flags]


def _state(workdir):
  config = config_lib.load_config(CONFIG)
  config_lib.apply_overrides(config, OVERRIDES)
  ckpt = checkpoint_lib.Checkpointer(workdir / "checkpoints")
  try:
    return jax.device_get(ckpt.restore(experiment.build(config).abstract_state(), 300)[0])
  finally:
    ckpt.close()


def test_three_random_kills_end_bit_identical(tmp_path):
  start = time.monotonic()
  subprocess.run(_command(tmp_path / "reference"), check=True, capture_output=True, timeout=300)
  duration = time.monotonic() - start
  rng = np.random.default_rng(1234)  # Fixed kill times: a failure can be replayed.
  kills = 0
  while True:
    process = subprocess.Popen(
      _command(tmp_path / "killed"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + rng.uniform(0.5, duration / 2)
    while kills < 3 and process.poll() is None and time.monotonic() < deadline:
      time.sleep(0.05)
    if kills < 3 and process.poll() is None:
      os.kill(process.pid, signal.SIGKILL)
      process.wait()
      kills += 1
      continue
    assert process.wait(timeout=300) == 0
    break
  assert kills == 3  # Each kill landed before its run finished.
  jax.tree.map(
    np.testing.assert_array_equal, _state(tmp_path / "killed"), _state(tmp_path / "reference")
  )
  logs = [
    (tmp_path / d / "metrics.jsonl").read_text().splitlines() for d in ("killed", "reference")
  ]
  steps = [[line.split(",")[0] for line in lines] for lines in logs]
  assert steps[0] == steps[1]  # Every record once, in order.

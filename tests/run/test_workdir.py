"""One run per workdir; a workdir that cannot go on says why in one line."""

import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from genjax import config as config_lib
from genjax.run import loop

REPO = pathlib.Path(__file__).resolve().parents[2]
CONFIG = REPO / "experiments" / "configs" / "vae_digits.py"


def _main(workdir, *flags):
  command = [sys.executable, "-m", "genjax.main", f"--config={CONFIG}", f"--workdir={workdir}"]
  return command + ["--config.train.progress_bar=False", "--config.evals=", *flags]


def test_a_second_run_in_a_busy_workdir_is_refused_and_a_dead_holder_is_taken_over(tmp_path):
  workdir = tmp_path / "run"
  first = subprocess.Popen(
    _main(workdir, "--config.train.num_steps=1000000", "--config.train.checkpoint_every=1000000"),
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
  )
  try:
    start = time.monotonic()
    while not (workdir / "metrics.jsonl").exists():
      assert first.poll() is None and time.monotonic() - start < 300, "the first run did not start"
      time.sleep(0.5)
    second = subprocess.run(_main(workdir), capture_output=True, text=True, timeout=300)
    assert second.returncode == 2 and "Traceback" not in second.stderr
    assert f"is in use by pid {first.pid} on host" in second.stderr, second.stderr[-2000:]
  finally:
    os.kill(first.pid, signal.SIGKILL)  # Dies holding the lock.
    first.wait()
  third = subprocess.run(
    _main(workdir, "--config.train.num_steps=4", "--config.train.checkpoint_every=2"),
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert third.returncode == 0, third.stderr[-2000:]
  assert (workdir / "checkpoints" / "4").is_dir()


def test_fewer_steps_than_the_workdir_holds_is_refused(tmp_path, shrink):
  c = shrink(config_lib.load_config(CONFIG), num_steps=4)
  c.evals = ""
  loop.train_and_evaluate(c, tmp_path)
  c.train.num_steps = 2
  with pytest.raises(
    config_lib.ConfigError, match="config.train.num_steps=2: .* already holds step 4"
  ):
    loop.train_and_evaluate(c, tmp_path)


def test_a_diverging_run_reports_in_one_line(tmp_path):
  result = subprocess.run(
    _main(
      tmp_path / "run",
      "--config.optimizer.name=sgd",
      "--config.optimizer.learning_rate=1e30",
      "--config.train.num_steps=20",
      "--config.train.log_every=1",
    ),
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 2 and "Traceback" not in result.stderr
  ours = [line for line in result.stderr.splitlines() if line.startswith("genjax: non-finite")]
  assert len(ours) == 1 and "config.optimizer.learning_rate" in ours[0]

"""Multi-host runs for real: several processes on this machine, joined by jax.distributed.

Each test starts ``python -m genjax.launch`` (2 processes x 4 CPU devices, gloo
collectives) and bounds every wait, so a hang fails the test instead of the suite.
"""

import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from genjax import config as config_lib
from genjax.run import checkpoint as checkpoint_lib
from genjax.run import experiment
from genjax.run.evaluation import evaluate_workdir

REPO = pathlib.Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.xdist_group("multiprocess")  # One job at a time on 2 cores.

TIMEOUT_S = 420
STEPS = 30


def _overrides(name: str, num_steps: int = STEPS, checkpoint_every: int = 10) -> list[str]:
  out = [
    f"train.num_steps={num_steps}",
    "train.log_every=10",
    f"train.checkpoint_every={checkpoint_every}",
    "train.eval_every=0",
    "train.progress_bar=False",
    "eval.num_images=0",
    "eval.periodic_examples=64",
    "eval.periodic_nll_samples=2",
  ]
  if name == "gan_ring8":
    out += ["train.batch_size=64", "eval.periodic_sample_examples=500"]
  else:
    out += ["evals="]
  return out


def _args(name: str, workdir: pathlib.Path, overrides: list[str]) -> list[str]:
  config = REPO / "experiments" / "configs" / f"{name}.py"
  return [f"--config={config}", f"--workdir={workdir}"] + [f"--config.{o}" for o in overrides]


def _launch(name, workdir, overrides, *extra) -> subprocess.Popen:
  """2 processes x 4 devices in the background (output in ``workdir``.log)."""
  log = open(f"{workdir}.log", "w")  # noqa: SIM115 - closed with the process.
  command = [sys.executable, "-m", "genjax.launch", "--num_processes=2", "--devices_per_process=4"]
  return subprocess.Popen(
    command + ["--", *_args(name, workdir, overrides), *extra],
    stdout=log,
    stderr=subprocess.STDOUT,
    cwd=REPO,
  )


def _finish(process: subprocess.Popen, workdir, timeout=TIMEOUT_S) -> int:
  try:
    return process.wait(timeout=timeout)
  except subprocess.TimeoutExpired:
    _kill_tree(process)
    pytest.fail(
      f"timed out after {timeout} s; log: {pathlib.Path(f'{workdir}.log').read_text()[-3000:]}"
    )


def _kill_tree(process: subprocess.Popen) -> None:
  for pid in _children(process.pid):
    os.kill(pid, signal.SIGKILL)
  process.kill()
  process.wait()


def _children(pid: int) -> list[int]:
  found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
  return [int(p) for p in found.split()]


def _process(launcher: subprocess.Popen, index: int) -> int:
  """The pid of the launcher's child with ``--process_id=index``."""
  for pid in _children(launcher.pid):
    if f"--process_id={index}" in pathlib.Path(f"/proc/{pid}/cmdline").read_text().replace(
      "\0", " "
    ):
      return pid
  raise AssertionError(f"no process {index} under launcher {launcher.pid}")


def _wait_for(condition, what: str, timeout=TIMEOUT_S):
  start = time.monotonic()
  while not condition():
    if time.monotonic() - start > timeout:
      pytest.fail(f"timed out waiting for {what}")
    time.sleep(0.5)


def _train_one_process(name, workdir, overrides):
  result = subprocess.run(
    [sys.executable, "-m", "genjax.main", *_args(name, workdir, overrides)],
    capture_output=True,
    text=True,
    cwd=REPO,
    timeout=TIMEOUT_S,
  )
  assert result.returncode == 0, result.stderr[-3000:]


def _state(name, workdir, overrides, step):
  config = config_lib.load_config(REPO / "experiments" / "configs" / f"{name}.py")
  config_lib.apply_overrides(config, overrides)
  exp = experiment.build(config)
  ckpt = checkpoint_lib.Checkpointer(pathlib.Path(workdir) / "checkpoints")
  try:
    state = ckpt.restore(exp.abstract_state(), step, sharding=exp.parallel.replicated)[0]
  finally:
    ckpt.close()
  return jax.device_get(state)


def _steps(workdir) -> list[int]:
  directory = pathlib.Path(workdir) / "checkpoints"
  return (
    sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())
    if directory.is_dir()
    else []
  )


@pytest.fixture(name="two_process_vae", scope="module")
def _two_process_vae(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("mp") / "vae"
  overrides = _overrides("vae_digits")
  assert _finish(_launch("vae_digits", workdir, overrides), workdir) == 0
  return workdir, overrides


@pytest.mark.parametrize("name", ["vae_digits", "gan_ring8"])
def test_two_processes_train_what_one_process_trains(name, two_process_vae, tmp_path):
  overrides = _overrides(name)
  if name == "vae_digits":
    two = two_process_vae[0]
  else:
    two = tmp_path / "two"
    assert _finish(_launch(name, two, overrides), two) == 0
  one = tmp_path / "one"
  _train_one_process(name, one, overrides)  # 1 process x 8 devices, the same global batch.
  a, b = _state(name, two, overrides, STEPS), _state(name, one, overrides, STEPS)
  assert int(a.step) == int(b.step) == STEPS
  jax.tree.map(
    lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6), a.params, b.params
  )


def test_both_processes_killed_then_restarted_resume_bit_identically(two_process_vae, tmp_path):
  reference, overrides = two_process_vae
  workdir = tmp_path / "killed"
  launcher = _launch("vae_digits", workdir, overrides)
  _wait_for(lambda: 10 in _steps(workdir), "the first checkpoint")
  _kill_tree(launcher)  # SIGKILL to both processes (and the launcher) mid-run.
  assert _steps(workdir)[-1] < STEPS
  assert _finish(_launch("vae_digits", workdir, overrides), workdir) == 0
  a, b = (
    _state("vae_digits", workdir, overrides, STEPS),
    _state("vae_digits", reference, overrides, STEPS),
  )
  jax.tree.map(np.testing.assert_array_equal, a, b)


def test_sigterm_to_one_process_saves_one_step_everywhere(tmp_path):
  workdir = tmp_path / "preempted"
  overrides = _overrides("vae_digits", num_steps=100_000, checkpoint_every=100_000)
  # Several steps per call: the processes agree on a call to stop after, not a step.
  overrides.append("train.steps_per_call=4")
  launcher = _launch("vae_digits", workdir, overrides)
  _wait_for(lambda: (workdir / "metrics.jsonl").is_file(), "the first log")
  start = time.monotonic()
  os.kill(_process(launcher, 1), signal.SIGTERM)
  assert _finish(launcher, workdir, timeout=60) == 0  # Both processes exit 0 within 60 s.
  elapsed = time.monotonic() - start
  log = pathlib.Path(f"{workdir}.log").read_text()
  saved = _steps(workdir)
  assert len(saved) == 1 and log.count(f"stop requested: saved step {saved[0]} ") == 2, log[-3000:]
  assert elapsed < 60
  # The 2-process checkpoint resumes in 1 process with 8 devices and is evaluated there.
  resumed = [o for o in overrides if not o.startswith("train.num_steps")]
  _train_one_process("vae_digits", workdir, resumed + [f"train.num_steps={saved[0] + 5}"])
  assert _steps(workdir)[-1] == saved[0] + 5
  scores = evaluate_workdir(workdir, num_samples=4, num_examples=64)
  assert np.isfinite(scores["eval/nll"]) and scores["step"] == saved[0] + 5


def test_a_dead_process_ends_the_job(tmp_path):
  workdir = tmp_path / "dead"
  overrides = _overrides("vae_digits", num_steps=100_000, checkpoint_every=100_000)
  launcher = _launch("vae_digits", workdir, overrides, "--heartbeat_timeout_s=10")
  _wait_for(lambda: (workdir / "metrics.jsonl").is_file(), "the first log")
  os.kill(_process(launcher, 1), signal.SIGKILL)
  start = time.monotonic()
  status = _finish(launcher, workdir, timeout=90)
  assert status == 128 + signal.SIGKILL  # The first failure's status: the killed process.
  assert time.monotonic() - start < 60  # The survivor does not wait forever in a collective.


def test_pmap_across_processes_is_refused_naming_the_field(tmp_path):
  workdir = tmp_path / "pmap"
  launcher = _launch("vae_digits", workdir, _overrides("vae_digits") + ["train.parallel=pmap"])
  assert _finish(launcher, workdir, timeout=120) == 2
  log = pathlib.Path(f"{workdir}.log").read_text()
  assert "config.train.parallel='pmap': pmap averages gradients over one process's devices" in log
  assert "Traceback" not in log
  assert not (workdir / "checkpoints").exists()

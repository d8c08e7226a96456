"""A disk that fills mid-run stops it in one line; once there is space, the rerun resumes.

The disk is a small tmpfs mounted for the test (root only); a file fills it so
that the first checkpoint fits and the second does not.
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest
from test_resume import _assert_identical, _final_state

REPO = pathlib.Path(__file__).resolve().parents[2]
NUM_STEPS = 6
# A seconds-long run with a checkpoint every second step (about 130 kB each).
OVERRIDES = (
  f"train.num_steps={NUM_STEPS} train.checkpoint_every=2 train.log_every=1 train.eval_every=0 "
  "train.num_devices=2 train.progress_bar=False model.hidden_sizes=(16,) eval.num_images=0 "
  "eval.periodic_examples=16 eval.periodic_nll_samples=2 evals="
).split()


def _train(workdir):
  command = [sys.executable, "-m", "genjax.main", "--config=experiments/configs/vae_digits.py"]
  command += [f"--workdir={workdir}", *(f"--config.{o}" for o in OVERRIDES)]
  return subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=180)


@pytest.fixture(name="disk")
def _disk(tmp_path):
  """An empty 16 MiB tmpfs, unmounted afterwards."""
  disk = tmp_path / "disk"
  disk.mkdir()
  try:
    mounted = subprocess.run(
      ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(disk)],
      capture_output=True,
      text=True,
      timeout=30,
    )
  except FileNotFoundError:
    pytest.skip("no mount command to make a small disk")
  if mounted.returncode != 0:
    pytest.skip(f"cannot mount a small tmpfs (needs root or CAP_SYS_ADMIN): {mounted.stderr}")
  try:
    yield disk
  finally:
    subprocess.run(["umount", str(disk)], check=True, timeout=30)


def _bytes_on_tmpfs(paths) -> int:
  """What files take on a tmpfs, which allocates whole pages."""
  page = os.sysconf("SC_PAGE_SIZE")
  return sum(-(-p.stat().st_size // page) * page for p in paths if p.is_file())


def _fill(disk, reference) -> pathlib.Path:
  """Leaves room for a run's logs and one and a half of its checkpoints."""
  checkpoint = _bytes_on_tmpfs((reference / "checkpoints" / "2").rglob("*"))
  logs = _bytes_on_tmpfs(p for p in reference.rglob("*") if "checkpoints" not in p.parts)
  stat = os.statvfs(disk)
  filler = disk / "filler"
  with open(filler, "wb") as f:
    os.posix_fallocate(f.fileno(), 0, stat.f_bavail * stat.f_frsize - logs - checkpoint * 3 // 2)
  return filler


def test_a_full_disk_stops_the_run_in_one_line_and_the_rerun_resumes(disk, tmp_path):
  reference = tmp_path / "uninterrupted"
  assert _train(reference).returncode == 0
  filler = _fill(disk, reference)
  workdir = disk / "run"

  full = _train(workdir)
  assert full.returncode == 2 and "Traceback" not in full.stderr, full.stderr[-3000:]
  ours = [line for line in full.stderr.splitlines() if "full" in line or "No space" in line]
  assert len(ours) == 1, full.stderr[-3000:]
  assert f"genjax: the disk holding {workdir}" in ours[0]
  assert "the previous checkpoint (step 2) is intact" in ours[0]
  assert "free space and rerun the same command" in ours[0]
  assert sorted(p.name for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()) == ["2"]

  filler.unlink()
  rerun = _train(workdir)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert "damaged" not in rerun.stderr  # The torn write was never taken for a checkpoint.
  state_a, data_a = _final_state(reference, NUM_STEPS)
  state_b, data_b = _final_state(workdir, NUM_STEPS)
  _assert_identical(state_a, state_b)
  assert data_a == data_b
  records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in records if "train/loss" in r] == list(range(1, NUM_STEPS + 1))

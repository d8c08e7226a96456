"""The command lines as a newcomer meets them: help, discovery, progress without a terminal."""

import json
import subprocess
import sys

import pytest
from conftest import REPO

CONFIG = f"--config={REPO / 'experiments/configs/vae_digits.py'}"
TINY = [
  "--config.train.num_steps=20",
  "--config.train.log_every=10",
  "--config.train.eval_every=0",
  "--config.train.num_devices=1",
  "--config.evals=",
  "--config.eval.periodic_examples=32",
  "--config.eval.periodic_nll_samples=2",
]


def _run(module, *flags, **kwargs):
  return subprocess.run(
    [sys.executable, "-m", module, *flags], capture_output=True, text=True, timeout=300, **kwargs
  )


def _one_line_error(result, *needles):
  assert result.returncode == 2, result.stderr[-2000:]
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and "Traceback" not in result.stderr, lines
  for needle in needles:
    assert needle in lines[0], lines[0]


@pytest.mark.parametrize(
  "module, flag",
  [
    ("genjax.main", "list_configs"),
    ("genjax.evaluate", "--num_generated"),
    ("genjax.sample", "--guidance_scale"),
    ("genjax.export", "--out"),
    ("genjax.launch", "--num_processes"),
  ],
)
def test_help_lists_the_flags(module, flag):
  result = _run(module, "--help")
  assert result.returncode == 0 and flag in result.stdout, result.stdout[-2000:]


def test_list_and_print_configs():
  listed = _run("genjax.main", "--list_configs", cwd=REPO)
  assert listed.returncode == 0
  line = next(l for l in listed.stdout.splitlines() if "vae_digits.py" in l)  # noqa: E741
  assert "VAE on scikit-learn's 8×8 digits" in line
  assert len(listed.stdout.splitlines()) == len(list((REPO / "experiments/configs").glob("*.py")))
  printed = _run("genjax.main", CONFIG, "--print_config", "--config.seed=3")
  assert printed.returncode == 0 and "\nseed: 3\n" in printed.stdout


def test_missing_and_mistyped_inputs_are_one_line():
  _one_line_error(_run("genjax.main"), "--config is required", "--list_configs")
  _one_line_error(_run("genjax.main", CONFIG), "--workdir is required")
  _one_line_error(_run("genjax.evaluate"), "genjax.evaluate", "--workdir")
  _one_line_error(_run("genjax.sample", "--workdir=x"), "genjax.sample", "--out")
  typo = _run("genjax.main", CONFIG, "--workdir=unused", "--config.family=vea")
  assert typo.returncode == 2 and "did you mean 'vae'?" in typo.stderr


def test_training_without_a_terminal_logs_progress_and_a_rerun_stops_at_once(tmp_path):
  log = tmp_path / "stderr.txt"
  with log.open("w") as f:
    first = subprocess.run(
      [sys.executable, "-m", "genjax.main", CONFIG, f"--workdir={tmp_path / 'run'}", *TINY],
      stdout=subprocess.PIPE,
      stderr=f,
      text=True,
      timeout=300,
    )
  text = log.read_text()
  assert first.returncode == 0, text[-2000:]
  assert (
    "step 10/20 (50%): loss " in text and "step 20/20 (100%)" in text and "steps/s, ETA" in text
  )
  assert "oneDNN" not in text and "libtpu" not in text  # Start-up noise silenced.
  assert first.stdout.startswith("done: nll ")
  records = (tmp_path / "run" / "metrics.jsonl").read_text()
  again = _run("genjax.main", CONFIG, f"--workdir={tmp_path / 'run'}", *TINY)
  assert again.returncode == 0 and "already finished at step 20" in again.stderr
  assert (tmp_path / "run" / "metrics.jsonl").read_text() == records
  assert again.stdout.splitlines()[0] == first.stdout.splitlines()[0]
  # genjax.evaluate takes training's --config.<field>=<value> overrides.
  bad = _run("genjax.evaluate", f"--workdir={tmp_path / 'run'}", "--config.eval.nope=1")
  _one_line_error(bad, "eval.nope")
  out = tmp_path / "override.json"
  scored = _run(
    "genjax.evaluate",
    f"--workdir={tmp_path / 'run'}",
    "--config.eval.batch_size=16",
    "--num_examples=32",
    f"--output={out}",
  )
  assert scored.returncode == 0, scored.stderr[-2000:]
  assert json.loads(out.read_text())["report"]["overrides"] == {"eval.batch_size": 16}

"""TensorFlow is an extra: training, its files and reading prepared data run without it.

Each check runs in a fresh interpreter where ``import tensorflow`` fails, as on an
install without the ``tensorflow`` extra.
"""

import subprocess
import sys

from conftest import NO_TENSORFLOW, REPO
from tensorboard.backend.event_processing import event_accumulator


def run_without_tensorflow(code: str, *args: str) -> subprocess.CompletedProcess:
  return subprocess.run(
    [sys.executable, "-c", NO_TENSORFLOW + code, *args],
    capture_output=True,
    text=True,
    timeout=300,
  )


def main_without_tensorflow(*flags: str) -> subprocess.CompletedProcess:
  code = (
    "import runpy; sys.argv[0] = 'genjax'; runpy.run_module('genjax.main', run_name='__main__')"
  )
  return run_without_tensorflow(code, *flags)


def test_training_writes_its_files_without_tensorflow(tmp_path):
  result = main_without_tensorflow(
    f"--config={REPO / 'experiments/configs/vae_digits.py'}",
    f"--workdir={tmp_path}",
    "--config.train.num_steps=6",
    "--config.train.log_every=3",
    "--config.train.eval_every=0",
    "--config.train.num_devices=1",
    "--config.evals=",
    "--config.eval.periodic_examples=32",
    "--config.eval.periodic_nll_samples=2",
  )
  assert result.returncode == 0, result.stderr[-3000:]
  events = event_accumulator.EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={})
  events.Reload()
  losses = events.Scalars("train/loss")
  assert [e.step for e in losses] == [3, 6]
  logged = [line for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert f'"train/loss": {losses[-1].value!r}'[:22] in logged[1]  # Same value, float32 there.
  assert "eval/nll" in events.Tags()["scalars"]
  picture = events.Images("images/reconstructions")[0]
  assert picture.step == 6 and picture.width > 0 and picture.encoded_image_string[:4] == b"\x89PNG"


def test_preparing_a_tfds_dataset_asks_for_the_extra_in_one_line(tmp_path):
  result = main_without_tensorflow(
    f"--config={REPO / 'experiments/configs/vae_mnist.py'}",
    f"--workdir={tmp_path / 'run'}",
    f"--config.data.data_dir={tmp_path / 'tfds'}",
  )
  assert result.returncode == 2, result.stderr[-3000:]
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and "Traceback" not in result.stderr, lines
  assert "'mnist' is not prepared" in lines[0] and "genjax-gm[tensorflow]" in lines[0]
  assert str(tmp_path / "tfds") in lines[0]

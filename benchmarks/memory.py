"""Peak memory of training on a folder of images does not grow with the number of images.

``python benchmarks/memory.py --sizes=20000,200000`` writes that many random
64x64 RGB PNGs into folders, trains a small conv VAE on each for ``--steps``
steps in a fresh process (``data.name=folder:...``, records streamed from disk),
and reports each process's peak resident memory and the difference, as JSON in
``bench_results/memory.json``. The first run of a size includes preparing the
records; the timing is printed apart.
"""

import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np
from absl import app, flags
from PIL import Image

REPO = pathlib.Path(__file__).resolve().parents[1]
_SIZES = flags.DEFINE_list("sizes", ["20000", "200000"], "Numbers of images.")
_STEPS = flags.DEFINE_integer("steps", 200, "Training steps per run.")
_SIDE = flags.DEFINE_integer("side", 64, "Image side.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Where folders go (default: a temporary dir).")
_OUT = flags.DEFINE_string("out", str(REPO / "bench_results" / "memory.json"), "JSON output.")


def write_folder(folder: pathlib.Path, count: int, side: int) -> None:
  """``count`` random RGB PNGs in 10 class subfolders (written once per folder)."""
  if (folder / ".complete").exists():
    return
  rng = np.random.default_rng(0)
  for i in range(count):
    sub = folder / f"class{i % 10}"
    sub.mkdir(parents=True, exist_ok=True)
    pixels = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(sub / f"{i:07d}.png", compress_level=0)
  (folder / ".complete").touch()


def train(folder: pathlib.Path, workdir: pathlib.Path, steps: int) -> tuple[float, float]:
  """Trains in a child process; returns ``(peak RSS in MB, seconds)``."""
  overrides = {
    "data.name": f"folder:{folder}",
    "data.preprocess": "scale_01",
    "model.architecture": "conv",
    "model.conv_channels": "(16,32)",
    "model.latent_dim": 16,
    "train.batch_size": 64,
    "train.num_steps": steps,
    "train.log_every": steps,
    "train.checkpoint_every": steps,
    "train.eval_every": 0,
    "train.progress_bar": False,
    "evals": "",
    "eval.periodic_examples": 256,
    "eval.periodic_nll_samples": 2,
    "eval.batch_size": 64,
    "eval.num_images": 16,
  }
  command = [
    sys.executable,
    "-m",
    "genjax.main",
    f"--config={REPO / 'experiments/configs/vae_digits.py'}",
    f"--workdir={workdir}",
  ] + [f"--config.{k}={v}" for k, v in overrides.items()]
  start = time.perf_counter()
  process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  _, status, usage = os.wait4(process.pid, 0)
  if status:
    raise RuntimeError(f"training failed: {process.stderr.read().decode()[-2000:]}")
  return usage.ru_maxrss / 1024, time.perf_counter() - start


def main(argv):
  del argv
  root = pathlib.Path(_WORKDIR.value or tempfile.mkdtemp(prefix="genjax_memory_"))
  os.environ.setdefault("GENJAX_CACHE_DIR", str(root / "cache"))
  results = {}
  for text in _SIZES.value:
    count = int(text)
    folder = root / f"images{count}"
    start = time.perf_counter()
    write_folder(folder, count, _SIDE.value)
    written = time.perf_counter() - start
    first_rss, first_s = train(folder, root / f"run{count}_first", _STEPS.value)  # Prepares.
    rss, seconds = train(folder, root / f"run{count}", _STEPS.value)  # Records ready.
    results[count] = {
      "peak_rss_mb": rss,
      "train_s": seconds,
      "first_run_peak_rss_mb": first_rss,
      "first_run_s (prepares the records)": first_s,
      "write_pngs_s": written,
    }
    print(json.dumps({count: results[count]}), flush=True)
  sizes = sorted(results)
  if len(sizes) > 1:
    results["peak_rss_difference_mb"] = (
      results[sizes[-1]]["peak_rss_mb"] - results[sizes[0]]["peak_rss_mb"]
    )
  out = pathlib.Path(_OUT.value)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(results, indent=1) + "\n")
  print(json.dumps(results, indent=1))


if __name__ == "__main__":
  app.run(main)

"""Kill soak: training killed with SIGKILL at random times still ends bit-identical.

``python benchmarks/soak.py --configs=vae_digits,gan_ring8,ddpm_ring8 --kills=5``
trains each config once without interruption, then again in another workdir,
killing the process ``--kills`` times at uniformly random moments (seeded;
within the first half of the uninterrupted run's duration, imports and
compilation included) and restarting it until it finishes. It compares the final parameters, EMA
and optimizer state bit for bit, and checks that ``metrics.jsonl`` holds every
logged step once. The figures go to ``bench_results/soak.json``.
"""

import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np
from absl import app, flags

from genjax import config as config_lib
from genjax.run import checkpoint as checkpoint_lib
from genjax.run import experiment

REPO = pathlib.Path(__file__).resolve().parents[1]
_CONFIGS = flags.DEFINE_list("configs", ["vae_digits", "gan_ring8", "ddpm_ring8"], "Configs.")
_KILLS = flags.DEFINE_integer("kills", 5, "SIGKILLs per config.")
_STEPS = flags.DEFINE_integer("steps", 300, "Training steps.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the kill times.")
_OUT = flags.DEFINE_string("out", str(REPO / "bench_results" / "soak.json"), "JSON output.")


def _overrides(steps: int) -> list[str]:
  return [
    f"train.num_steps={steps}",
    "train.log_every=10",
    "train.checkpoint_every=25",
    f"train.eval_every={steps // 2}",
    "train.progress_bar=False",
    "eval.periodic_examples=128",
    "eval.periodic_sample_examples=2000",
    "eval.periodic_nll_samples=4",
    "eval.num_images=16",
    "evals=",
  ]


def _command(name: str, workdir: pathlib.Path, steps: int) -> list[str]:
  config = REPO / "experiments" / "configs" / f"{name}.py"
  args = [f"--config={config}", f"--workdir={workdir}"]
  return [sys.executable, "-m", "genjax.main", *args, *[f"--config.{o}" for o in _overrides(steps)]]


def _state(name: str, workdir: pathlib.Path, steps: int):
  config = config_lib.load_config(REPO / "experiments" / "configs" / f"{name}.py")
  config_lib.apply_overrides(config, _overrides(steps))
  exp = experiment.build(config)
  ckpt = checkpoint_lib.Checkpointer(workdir / "checkpoints")
  try:
    return jax.device_get(ckpt.restore(exp.abstract_state(), steps)[0])
  finally:
    ckpt.close()


def _logged_steps(workdir: pathlib.Path) -> list[int]:
  lines = (workdir / "metrics.jsonl").read_text().splitlines()
  return [json.loads(line)["step"] for line in lines if '"train/loss"' in line]


def soak(name: str, root: pathlib.Path, rng: np.random.Generator) -> dict:
  steps = _STEPS.value
  reference, killed = root / f"{name}_reference", root / f"{name}_killed"
  start = time.monotonic()
  subprocess.run(_command(name, reference, steps), check=True, capture_output=True)
  duration = time.monotonic() - start
  kills, restarts = 0, 0
  while True:
    process = subprocess.Popen(
      _command(name, killed, steps), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    restarts += 1
    if kills < _KILLS.value:
      deadline = time.monotonic() + rng.uniform(0.5, duration / 2)
      while process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
      if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        kills += 1
        continue
    if process.wait() == 0:
      break
    raise RuntimeError(f"{name}: run exited {process.returncode}")
  a, b = _state(name, reference, steps), _state(name, killed, steps)
  identical = all(jax.tree.leaves(jax.tree.map(np.array_equal, a, b)))
  logged = _logged_steps(killed)
  return {
    "uninterrupted_s": round(duration, 1),
    "kills": kills,
    "starts": restarts,
    "bit_identical": bool(identical),
    "each_logged_step_once": logged == _logged_steps(reference),
  }


def main(argv):
  del argv
  rng = np.random.default_rng(_SEED.value)
  root = pathlib.Path(tempfile.mkdtemp(prefix="genjax_soak_"))
  results = {}
  for name in _CONFIGS.value:
    results[name] = soak(name, root, rng)
    print(json.dumps({name: results[name]}), flush=True)
  out = pathlib.Path(_OUT.value)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
  app.run(main)

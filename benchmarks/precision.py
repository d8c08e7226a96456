"""Compute dtype and rematerialisation: step time and the compiled train step's memory.

``python benchmarks/precision.py [--time_configs=a,b] [--steps=N]`` (run by ``make bench``)
prints two tables and writes ``bench_results/precision.json``:

* ``time``: bare train steps per second of each config with ``model.dtype=float32``
  and ``bfloat16`` on one device, from the same state and batch, the two dtypes
  interleaved in ``--rounds`` rounds of ``--steps`` steps (so load on a shared machine
  hits both alike); ``bf16_over_f32`` is the ratio of their median speeds.
* ``memory``: XLA's ``memory_analysis()`` of the compiled train step (temporaries,
  arguments, outputs) with ``unet.remat`` off and on, for each dtype, and
  ``residual_mb``: what JAX keeps from the loss's forward pass for its backward
  pass (the activations remat drops). Compiled from shapes only, so configs whose
  data is not on this machine (CIFAR-10) compile at their real size. XLA:CPU drops
  the optimisation barriers that keep a recomputation apart and merges it with the
  forward pass again, so on CPU remat leaves the compiled step's memory as it was;
  ``residual_mb`` is what a compiler that keeps them can save.
"""

import json
import pathlib
import platform
import statistics
import time

import jax
import jax.numpy as jnp
from absl import app, flags

from genjax import config as config_lib
from genjax.core import random as genjax_random
from genjax.core.parallel import DataParallel
from genjax.families.base import DataInfo
from genjax.run import experiment, steps

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = REPO / "experiments" / "configs"
_TIME_CONFIGS = flags.DEFINE_list(
  "time_configs", ["vae_mnist", "dcgan_mnist", "ddpm_mnist"], "Configs timed in both dtypes."
)
_MEMORY_CONFIGS = flags.DEFINE_list(
  "memory_configs", ["ddpm_mnist", "ddpm_cifar10"], "U-Net configs compiled for memory."
)
_STEPS = flags.DEFINE_integer("steps", 10, "Timed steps per round.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Interleaved rounds per dtype.")
_OUT = flags.DEFINE_string("out", str(REPO / "bench_results" / "precision.json"), "JSON output.")
# Image facts of the U-Net configs' datasets, so their steps compile without the data.
IMAGES = {
  "mnist": ((28, 28, 1), 10),
  "fashion_mnist": ((28, 28, 1), 10),
  "cifar10": ((32, 32, 3), 10),
}


def _config(name: str, dtype: str, remat: bool = False):
  c = config_lib.load_config(CONFIGS / f"{name}.py")
  c.model.dtype, c.unet.remat, c.train.num_devices = dtype, remat, 1
  return c


def _bare(name: str, dtype: str):
  exp = experiment.build(_config(name, dtype))
  it = exp.train_iterator()
  batch = exp.parallel.put_batch(next(it))
  it.close()
  step = exp.compile_train_step()
  state, _ = step(exp.parallel.put_replicated(exp.init_state()), batch)  # Compiles.
  return step, state, batch


def time_dtypes(name: str, num_steps: int, rounds: int) -> dict:
  """Median steps/s of each dtype, measured in interleaved rounds."""
  runs = {d: _bare(name, d) for d in ("float32", "bfloat16")}
  speeds = {d: [] for d in runs}
  for _ in range(rounds):
    for dtype, (step, state, batch) in runs.items():
      start = time.perf_counter()
      for _ in range(num_steps):
        state, _ = step(state, batch)
      jax.block_until_ready(state)
      speeds[dtype].append(num_steps / (time.perf_counter() - start))
      runs[dtype] = (step, state, batch)
  f32, bf16 = (statistics.median(speeds[d]) for d in ("float32", "bfloat16"))
  return {"f32_steps_per_s": f32, "bf16_steps_per_s": bf16, "bf16_over_f32": bf16 / f32}


def compiled_memory(name: str, dtype: str, remat: bool) -> dict:
  """``memory_analysis()`` of the one-device train step, compiled from shapes alone."""
  c = config_lib.resolve(_config(name, dtype, remat))
  config_lib.validate(c, num_devices=1)
  shape, classes = IMAGES[c.data.name]
  info = DataInfo(c.data.name, "image", shape, classes, c.data.preprocess, None, None)
  family = experiment.build_family(c, info)
  b = c.train.batch_size
  batch = {
    "image": jax.ShapeDtypeStruct((b, *shape), jnp.uint8),
    "label": jax.ShapeDtypeStruct((b,), jnp.int32),
    "index": jax.ShapeDtypeStruct((b,), jnp.int32),
  }
  x = jax.ShapeDtypeStruct((b, *shape), jnp.float32)
  examples = {"x": x, "label": batch["label"], "index": batch["index"]}
  state = jax.eval_shape(family.init_state, jax.random.key(0), examples)
  parallel = DataParallel(c.train.parallel, jax.devices()[:1])
  step = steps.make_train_step(family, seed=c.seed, preprocess=c.data.preprocess)
  start = time.perf_counter()
  analysis = parallel.compile(step, donate_first=True).lower(state, batch).compile()
  analysis = analysis.memory_analysis()
  return {
    "residual_mb": residual_bytes(family, state.params, examples) / 2**20,
    "temp_mb": analysis.temp_size_in_bytes / 2**20,
    "argument_mb": analysis.argument_size_in_bytes / 2**20,
    "output_mb": analysis.output_size_in_bytes / 2**20,
    "compile_s": time.perf_counter() - start,
  }


def residual_bytes(family, params, examples) -> int:
  """Bytes of what ``family.loss_fn``'s backward pass reads from its forward pass."""

  def backward(params, examples):
    keys = genjax_random.example_keys(jax.random.key(0), examples["index"])
    step = jnp.zeros((), jnp.int32)
    return jax.vjp(lambda p: family.loss_fn(p, examples, keys, step)[0], params)[1]

  tree = jax.eval_shape(backward, params, examples)
  return sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(tree))


def main(argv):
  del argv
  results = {"machine": f"{platform.processor() or platform.machine()}, {jax.devices()[0]}"}
  results["time"] = {n: time_dtypes(n, _STEPS.value, _ROUNDS.value) for n in _TIME_CONFIGS.value}
  for name, row in results["time"].items():
    print(
      f"{name:14s} f32 {row['f32_steps_per_s']:7.2f}/s  bf16 {row['bf16_steps_per_s']:7.2f}/s"
      f"  bf16/f32 {row['bf16_over_f32']:.2f}",
      flush=True,
    )
  results["memory"] = {}
  for name in _MEMORY_CONFIGS.value:
    for dtype in ("float32", "bfloat16"):
      for remat in (False, True):
        row = compiled_memory(name, dtype, remat)
        results["memory"][f"{name} {dtype} remat={remat}"] = row
        print(
          f"{name:14s} {dtype:8s} remat={remat!s:5s} temp {row['temp_mb']:8.1f} MB  "
          f"residuals {row['residual_mb']:8.1f} MB  "
          f"args {row['argument_mb']:7.1f} MB  out {row['output_mb']:7.1f} MB",
          flush=True,
        )
  out = pathlib.Path(_OUT.value)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
  app.run(main)

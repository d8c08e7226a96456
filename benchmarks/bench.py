"""Training throughput of the reference configs: full loop vs a bare jitted step.

``make bench`` (or ``python benchmarks/bench.py [--configs=a,b] [--steps=N]``)
prints a table and writes ``bench_results/bench.json``. For each config:

* ``compile_s``: first call of the compiled train step (trace + compile + run).
* ``bare``: the jitted step alone, called on one batch already on device.
* ``loop``: ``train_and_evaluate`` with data pipeline, host→device transfer,
  metric collection and checkpointing, timed over its second logging interval
  (the first includes compilation).
* ``loop_over_bare``: loop throughput / bare throughput (1.0 = no overhead).
"""

import json
import pathlib
import platform
import sys
import tempfile
import time

import jax
from absl import app, flags

from genjax import config as config_lib
from genjax.data import pipeline
from genjax.training import loop, steps, writers

REPO = pathlib.Path(__file__).resolve().parents[1]
_CONFIGS = flags.DEFINE_list(
  "configs",
  ["vae_digits", "vae_mnist", "iwae_mnist", "vae_conv_fashion_mnist", "gan_grid25", "dcgan_mnist"],
  "Experiment configs (names in experiments/configs).",
)
_STEPS = flags.DEFINE_integer("steps", 400, "Timed steps per measurement.")
# Configs whose step takes ~0.1 s or more are timed over fewer steps.
_STEP_DIVISOR = {"dcgan_mnist": 4}
_OUT = flags.DEFINE_string("out", str(REPO / "bench_results" / "bench.json"), "JSON output.")


def bench_bare(config, num_steps):
  exp = loop.build(config)
  cfg = exp.config
  step_fn = exp.parallel.compile(
    steps.make_train_step(exp.family, seed=cfg.seed, preprocess=cfg.data.preprocess),
    donate_first=True,
  )
  it = pipeline.make_train_iterator(
    exp.dataset.train,
    global_batch_size=cfg.train.batch_size,
    seed=cfg.seed,
    minibatches=exp.family.minibatches,
  )
  batch = exp.parallel.put_batch(next(it))
  state = exp.parallel.put_replicated(exp.init_state())
  start = time.perf_counter()
  state, _ = step_fn(state, batch)
  jax.block_until_ready(state)
  compile_s = time.perf_counter() - start
  start = time.perf_counter()
  for _ in range(num_steps):
    state, _ = step_fn(state, batch)
  jax.block_until_ready(state)
  return compile_s, num_steps / (time.perf_counter() - start)


def bench_loop(config, num_steps):
  c = config
  c.train.num_steps = 2 * num_steps
  c.train.log_every = num_steps
  c.train.eval_every = 0
  c.train.checkpoint_every = 2 * num_steps
  c.train.progress_bar = False
  c.eval.periodic_examples = c.eval.batch_size
  c.eval.periodic_nll_samples = 1
  c.evals = ""  # Training throughput only; sample metrics are not part of it.
  with tempfile.TemporaryDirectory() as workdir:
    summary = loop.train_and_evaluate(c, workdir)
  return summary["train/steps_per_sec"]


def main(argv):
  del argv
  writers.configure_logging()
  rows = []
  for name in _CONFIGS.value:
    path = REPO / "experiments" / "configs" / f"{name}.py"
    num_steps = max(_STEPS.value // _STEP_DIVISOR.get(name, 1), 10)
    compile_s, bare = bench_bare(config_lib.load_config(path), num_steps)
    looped = bench_loop(config_lib.load_config(path), num_steps)
    batch = config_lib.load_config(path).train.batch_size
    rows.append(
      dict(
        config=name,
        batch_size=batch,
        steps=num_steps,
        compile_s=round(compile_s, 2),
        bare_steps_per_s=round(bare, 1),
        bare_examples_per_s=round(bare * batch),
        loop_steps_per_s=round(looped, 1),
        loop_examples_per_s=round(looped * batch),
        loop_over_bare=round(looped / bare, 3),
      )
    )
    print(json.dumps(rows[-1]), flush=True)
  result = dict(
    devices=[str(d) for d in jax.devices()],
    jax=jax.__version__,
    python=sys.version.split()[0],
    machine=platform.machine(),
    steps=_STEPS.value,
    results=rows,
  )
  out = pathlib.Path(_OUT.value)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(result, indent=1) + "\n")
  header = f"{'config':<26}{'batch':>6}{'compile s':>10}{'bare st/s':>11}{'loop st/s':>11}{'loop/bare':>10}"
  print(header)
  for r in rows:
    print(
      f"{r['config']:<26}{r['batch_size']:>6}{r['compile_s']:>10}{r['bare_steps_per_s']:>11}"
      f"{r['loop_steps_per_s']:>11}{r['loop_over_bare']:>10}"
    )
  print(f"wrote {out}")


if __name__ == "__main__":
  app.run(main)

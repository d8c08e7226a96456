"""Training throughput of the reference configs: full loop vs a bare jitted step.

``make bench`` (or ``python benchmarks/bench.py [--configs=a,b] [--steps=N]``)
prints a table and writes ``bench_results/bench.json``. For each config:

* ``compile_s``: first call of the compiled train step (trace + compile + run).
* ``bare``: the jitted step alone, called on one batch already on device; the
  mean of a timing before and one after the loop's (``bare_spread``: their
  difference over the mean).
* ``loop``: ``train_and_evaluate`` with data pipeline, host→device transfer,
  metric collection and checkpointing, timed over its second logging interval
  (the first includes compilation).
* ``loop_over_bare``: loop throughput / bare throughput (1.0 = no overhead).
  The loop runs ``config.train.steps_per_call`` steps per compiled call
  (``--steps_per_call`` overrides it); the bare step is always one step.

``--streaming --num_workers=W`` runs both with ``config.data.streaming`` and
``config.data.num_workers=W``: the loop then reads and decodes every batch from
the tfds dataset's ArrayRecord files, in ``W`` worker processes (0: a thread).

Convolution kernel gradients (``--conv_configs``): the bare step with XLA:CPU's
own kernel gradient against :func:`genjax.models.layers.conv_general_dilated`'s
(per-tap matmuls for 1x1 kernels and strided convolutions, XLA's for the rest;
``tap_over_xla``: steps/s ratio, > 1 = genjax's choice is faster). Only
meaningful on the CPU backend.

Start-up (``--startup_configs``): a short run (``--startup_steps``) of
``python -m genjax.main`` in two fresh processes sharing a new, empty
compilation cache (``train.compilation_cache_dir``): ``first_s`` compiles
everything, ``cached_s`` reads it back; wall-clock seconds of each process,
imports, data loading and the final evaluation included.

Diffusion samplers (``--sampler_configs``) are timed on one batch of
``--sampler_batch`` samples: DDIM with ``config.diffusion.sample_steps`` steps and
DDPM with all T, each beside the bare denoiser forward pass on the same batch
(``over_forward``: sampler network evaluations per second / forward passes per
second; 1.0 = the compiled loop adds nothing).
"""

import functools
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
from absl import app, flags

from genjax import config as config_lib
from genjax.models import layers
from genjax.run import experiment, loop, writers
from genjax.samplers import autoregressive as ar_sampler

REPO = pathlib.Path(__file__).resolve().parents[1]
_CONFIGS = flags.DEFINE_list(
  "configs",
  [
    "vae_digits",
    "vae_mnist",
    "iwae_mnist",
    "vae_conv_fashion_mnist",
    "gan_grid25",
    "dcgan_mnist",
    "ddpm_ring8",
    "ddpm_mnist",
    "vqvae_mnist",
    "pixelcnn_mnist",
  ],
  "Experiment configs (names in experiments/configs).",
)
_SAMPLER_CONFIGS = flags.DEFINE_list(
  "sampler_configs", ["ddpm_mnist"], "Diffusion configs whose samplers are timed."
)
_AR_SAMPLER_CONFIGS = flags.DEFINE_list(
  "ar_sampler_configs",
  ["pixelcnn_mnist"],
  "PixelCNN configs whose raster sampler is timed, whole grid vs receptive-field window.",
)
_CONV_CONFIGS = flags.DEFINE_list(
  "conv_configs",
  ["pixelcnn_mnist", "dcgan_mnist"],
  "Configs whose bare step is timed with XLA's and with the per-tap conv kernel gradient.",
)
_STARTUP_CONFIGS = flags.DEFINE_list(
  "startup_configs",
  ["vae_digits", "dcgan_mnist"],
  "Configs whose start-up is timed without and with a persistent compilation cache.",
)
_STARTUP_STEPS = flags.DEFINE_integer("startup_steps", 5, "Training steps of each start-up run.")
_SAMPLER_BATCH = flags.DEFINE_integer("sampler_batch", 64, "Samples per sampler call.")
_STEPS = flags.DEFINE_integer("steps", 400, "Timed steps per measurement.")
# Configs whose step takes ~0.1 s or more are timed over fewer steps.
_STEP_DIVISOR = {"dcgan_mnist": 4, "ddpm_mnist": 4, "vqvae_mnist": 4, "pixelcnn_mnist": 4}
_STREAMING = flags.DEFINE_bool(
  "streaming", False, "Set config.data.streaming: tfds data read from disk batch by batch."
)
_NUM_WORKERS = flags.DEFINE_integer(
  "num_workers", 0, "config.data.num_workers: processes decoding streamed batches."
)
_STEPS_PER_CALL = flags.DEFINE_integer(
  "steps_per_call", 0, "config.train.steps_per_call of the loop (0: the config's own)."
)
_OUT = flags.DEFINE_string("out", str(REPO / "bench_results" / "bench.json"), "JSON output.")


def load_config(path):
  """The config at ``path`` with the data read as ``--streaming`` / ``--num_workers`` ask."""
  config = config_lib.load_config(path)
  config.data.streaming, config.data.num_workers = _STREAMING.value, _NUM_WORKERS.value
  if _STEPS_PER_CALL.value:
    config.train.steps_per_call = _STEPS_PER_CALL.value
  return config


def bare_step(config):
  """``(experiment, compiled train step, fresh state, one device-resident batch)``."""
  exp = experiment.build(config)
  step_fn, it = exp.compile_train_step(), exp.train_iterator()
  batch = exp.parallel.put_batch(next(it))
  it.close()  # Stops its worker processes, if any.
  state = exp.parallel.put_replicated(exp.init_state())
  return exp, step_fn, state, batch


def bench_bare(config, num_steps):
  _, step_fn, state, batch = bare_step(config)
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
  # Validation refuses a warm-up that outlasts the run; it does not change the speed.
  c.optimizer.warmup_steps = min(c.optimizer.warmup_steps, c.train.num_steps - 1)
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


def bench_startup(path, num_steps):
  """``(first, cached)`` wall-clock seconds of a short run, and the cache's file count."""
  seconds = []
  with tempfile.TemporaryDirectory() as tmp:
    cache = pathlib.Path(tmp) / "cache"
    for run in ("first", "cached"):
      command = [
        sys.executable,
        "-m",
        "genjax.main",
        f"--config={path}",
        f"--workdir={tmp}/{run}",
        f"--config.train.num_steps={num_steps}",
        f"--config.train.compilation_cache_dir={cache}",
        "--config.train.progress_bar=False",
        "--config.evals=",  # Feature nets are a cache of their own; compiling is timed here.
      ]
      # Only this command's setting names the cache.
      env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION_CACHE")}
      start = time.perf_counter()
      subprocess.run(command, check=True, capture_output=True, env=env)
      seconds.append(time.perf_counter() - start)
    files = sum(1 for p in cache.rglob("*") if p.is_file())
  return seconds[0], seconds[1], files


def bench_conv_gradient(path, num_steps):
  """Bare steps/s with XLA's conv kernel gradient and with the per-tap one."""
  speeds = {}
  try:
    for tap in (False, True):
      layers.TAP_KERNEL_GRADIENT = tap
      speeds[tap] = bench_bare(config_lib.load_config(path), num_steps)[1]
  finally:
    layers.TAP_KERNEL_GRADIENT = True
  return speeds[False], speeds[True]


def _timed(fn, *args, repeats=1):
  """(first-call seconds, seconds per later call) of a compiled function."""
  start = time.perf_counter()
  jax.block_until_ready(fn(*args))
  first = time.perf_counter() - start
  start = time.perf_counter()
  for _ in range(repeats):
    jax.block_until_ready(fn(*args))
  return first, (time.perf_counter() - start) / repeats


def bench_samplers(config, batch):
  """Sampler throughput on one batch, each beside the bare denoiser forward pass."""
  exp = experiment.build(config)
  family, d = exp.family, config.diffusion
  params = family.eval_params(exp.init_state())
  keys = jax.random.split(jax.random.key(0), batch)
  labels = jnp.arange(batch, dtype=jnp.int32) % max(exp.dataset.num_classes, 1)
  x = jax.random.normal(jax.random.key(1), (batch,) + tuple(exp.dataset.shape))
  t = jnp.full((batch,), family.num_steps // 2, jnp.int32)
  forward = jax.jit(lambda p, x, t: family.denoise(p, x, t, labels))
  _, forward_s = _timed(forward, params, x, t, repeats=20)
  rows = []
  for sampler, num in (("ddim", int(d.sample_steps)), ("ddpm", family.num_steps)):
    fn = jax.jit(functools.partial(family.generate, sampler=sampler, steps=num))
    first, per_call = _timed(fn, params, keys, labels)
    evals = num * (2 if family.conditional and d.guidance_scale not in (0.0, 1.0) else 1)
    rows.append(
      dict(
        sampler=f"{sampler}-{num}",
        batch_size=batch,
        compile_s=round(first - per_call, 2),
        samples_per_s=round(batch / per_call, 1),
        net_evals_per_s=round(evals / per_call, 1),
        forward_per_s=round(1 / forward_s, 1),
        over_forward=round(evals / per_call * forward_s, 3),
      )
    )
  return rows


def bench_ar_samplers(config, batch):
  """Raster sampling of a PixelCNN: the network on the whole grid vs on its context rows."""
  exp = experiment.build(config)
  family = exp.family
  params = family.eval_params(exp.init_state())
  keys = jax.random.split(jax.random.key(0), batch)
  labels = jnp.arange(batch, dtype=jnp.int32) % max(exp.dataset.num_classes, 1)
  labels = labels if family.conditional else None
  logits_fn = lambda grid, y: family.logits(params, grid, y)  # noqa: E731
  rows, whole_s = [], None
  for name, context in (("whole-grid", None), ("window", family.model.context_rows())):
    fn = jax.jit(
      functools.partial(
        ar_sampler.sample, logits_fn, family.grid_shape, labels=labels, context_rows=context
      )
    )
    first, per_call = _timed(fn, keys)
    whole_s = whole_s or per_call
    rows.append(
      dict(
        sampler=f"raster-{name}",
        batch_size=batch,
        compile_s=round(first - per_call, 2),
        samples_per_s=round(batch / per_call, 2),
        over_whole_grid=round(whole_s / per_call, 2),
      )
    )
  return rows


def main(argv):
  del argv
  writers.configure_logging()
  rows = []
  for name in _CONFIGS.value:
    path = REPO / "experiments" / "configs" / f"{name}.py"
    num_steps = max(_STEPS.value // _STEP_DIVISOR.get(name, 1), 10)
    # The bare step before and after the loop, so a drift in the machine's speed
    # shows as their spread instead of as loop overhead.
    config = load_config(path)
    batch = config.train.batch_size
    compile_s, bare_before = bench_bare(config.copy_and_resolve_references(), num_steps)
    looped = bench_loop(config.copy_and_resolve_references(), num_steps)
    bare_after = bench_bare(config.copy_and_resolve_references(), num_steps)[1]
    bare = (bare_before + bare_after) / 2
    rows.append(
      dict(
        config=name,
        batch_size=batch,
        steps_per_call=config.train.steps_per_call,
        steps=num_steps,
        streaming=_STREAMING.value,
        num_workers=_NUM_WORKERS.value,
        compile_s=round(compile_s, 2),
        bare_steps_per_s=round(bare, 1),
        bare_spread=round(abs(bare_before - bare_after) / bare, 3),
        bare_examples_per_s=round(bare * batch),
        loop_steps_per_s=round(looped, 1),
        loop_examples_per_s=round(looped * batch),
        loop_over_bare=round(looped / bare, 3),
      )
    )
    print(json.dumps(rows[-1]), flush=True)
  conv_rows = []
  for name in _CONV_CONFIGS.value if jax.default_backend() == "cpu" else ():
    path = REPO / "experiments" / "configs" / f"{name}.py"
    num_steps = max(_STEPS.value // _STEP_DIVISOR.get(name, 1), 10)
    xla, tap = bench_conv_gradient(path, num_steps)
    conv_rows.append(
      dict(
        config=name,
        steps=num_steps,
        xla_steps_per_s=round(xla, 2),
        tap_steps_per_s=round(tap, 2),
        tap_over_xla=round(tap / xla, 3),
      )
    )
    print(json.dumps(conv_rows[-1]), flush=True)
  startup_rows = []
  for name in _STARTUP_CONFIGS.value:
    path = REPO / "experiments" / "configs" / f"{name}.py"
    first, cached, files = bench_startup(path, _STARTUP_STEPS.value)
    startup_rows.append(
      dict(
        config=name,
        steps=_STARTUP_STEPS.value,
        first_s=round(first, 1),
        cached_s=round(cached, 1),
        first_over_cached=round(first / cached, 2),
        cache_files=files,
      )
    )
    print(json.dumps(startup_rows[-1]), flush=True)
  sampler_rows = []
  for name in _SAMPLER_CONFIGS.value:
    config = config_lib.load_config(REPO / "experiments" / "configs" / f"{name}.py")
    for row in bench_samplers(config, _SAMPLER_BATCH.value):
      sampler_rows.append(dict(config=name, **row))
      print(json.dumps(row), flush=True)
  for name in _AR_SAMPLER_CONFIGS.value:
    config = config_lib.load_config(REPO / "experiments" / "configs" / f"{name}.py")
    for row in bench_ar_samplers(config, 16):
      sampler_rows.append(dict(config=name, **row))
      print(json.dumps(row), flush=True)
  result = dict(
    devices=[str(d) for d in jax.devices()],
    jax=jax.__version__,
    python=sys.version.split()[0],
    machine=platform.machine(),
    steps=_STEPS.value,
    results=rows,
    conv_kernel_gradient=conv_rows,
    startup=startup_rows,
    samplers=sampler_rows,
  )
  out = pathlib.Path(_OUT.value)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(result, indent=1) + "\n")
  header = (
    f"{'config':<26}{'batch':>6}{'per call':>9}{'compile s':>10}{'bare st/s':>11}"
    f"{'loop st/s':>11}{'loop/bare':>10}"
  )
  if rows:
    print(header)
  for r in rows:
    print(
      f"{r['config']:<26}{r['batch_size']:>6}{r['steps_per_call']:>9}{r['compile_s']:>10}"
      f"{r['bare_steps_per_s']:>11}"
      f"{r['loop_steps_per_s']:>11}{r['loop_over_bare']:>10}"
    )
  if conv_rows:
    print(f"{'conv kernel gradient':<26}{'xla st/s':>10}{'tap st/s':>10}{'tap/xla':>9}")
  for r in conv_rows:
    print(
      f"{r['config']:<26}{r['xla_steps_per_s']:>10}{r['tap_steps_per_s']:>10}{r['tap_over_xla']:>9}"
    )
  if startup_rows:
    print(f"{'start-up':<26}{'steps':>6}{'first s':>9}{'cached s':>10}{'ratio':>7}{'files':>7}")
  for r in startup_rows:
    print(
      f"{r['config']:<26}{r['steps']:>6}{r['first_s']:>9}{r['cached_s']:>10}"
      f"{r['first_over_cached']:>7}{r['cache_files']:>7}"
    )
  if sampler_rows:
    print(
      f"{'sampler':<26}{'batch':>6}{'samples/s':>11}{'net evals/s':>13}{'forward/s':>11}{'ratio':>7}"
    )
  for r in sampler_rows:
    if "over_whole_grid" in r:  # Raster sampling: speed-up of the window over the whole grid.
      print(
        f"{r['config'] + ' ' + r['sampler']:<26}{r['batch_size']:>6}{r['samples_per_s']:>11}"
        f"{'':>13}{'':>11}{r['over_whole_grid']:>7}"
      )
      continue
    print(
      f"{r['config'] + ' ' + r['sampler']:<26}{r['batch_size']:>6}{r['samples_per_s']:>11}"
      f"{r['net_evals_per_s']:>13}{r['forward_per_s']:>11}{r['over_forward']:>7}"
    )
  print(f"wrote {out}")


if __name__ == "__main__":
  app.run(main)

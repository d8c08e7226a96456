"""``train_and_evaluate``: the one training loop every family runs through.

Everything impure lives here: devices, files, time. The loop builds the
family from the config, restores the latest checkpoint in ``workdir`` if there
is one (state, EMA, optimizer and data position), and then runs the compiled
data-parallel step, logging, evaluating, drawing and checkpointing on a
schedule. Killing it at any point and starting it again with the same
arguments gives bit-identical parameters to an uninterrupted run.
"""

import dataclasses
import json
import logging
import pathlib
import signal
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from genjax import config as config_lib
from genjax.data import pipeline, sources
from genjax.evaluation import images as image_io
from genjax.evaluation import suite
from genjax.families import FAMILIES, DataInfo, Family
from genjax.training import checkpoint as checkpoint_lib
from genjax.training import steps, writers
from genjax.training.parallel import DataParallel
from genjax.training.train_state import TrainState, num_params

log = logging.getLogger("genjax")


@dataclasses.dataclass
class Experiment:
  """Everything a config builds before training: usable from a notebook.

  Attributes:
    config: the validated config.
    dataset: the in-memory dataset.
    family: the model family.
    parallel: device placement and compilation.
    samples: the sample-quality metrics of ``config.evals`` (falsy when none).
  """

  config: ml_collections.ConfigDict
  dataset: sources.Dataset
  family: Family
  parallel: DataParallel
  samples: suite.SampleEvaluator = None
  _eval_steps: dict = dataclasses.field(default_factory=dict, repr=False)

  def eval_step(self, num_samples: int):
    """The compiled eval step for ``num_samples`` (built once, then cached)."""
    if num_samples not in self._eval_steps:
      cfg = self.config
      self._eval_steps[num_samples] = self.parallel.compile(
        steps.make_eval_step(
          self.family, seed=cfg.seed, preprocess=cfg.data.preprocess, num_samples=num_samples
        )
      )
    return self._eval_steps[num_samples]

  def example_batch(self) -> dict[str, np.ndarray]:
    """A few training examples, in the layout the pipeline yields."""
    n = self.parallel.num_devices
    batch = {k: v[:n] for k, v in self.dataset.train.items()}
    batch["index"] = np.arange(n, dtype=np.int32)
    return batch

  def init_state(self) -> TrainState:
    """Fresh parameters and optimizer state (deterministic from the seed)."""
    batch = self.example_batch()

    # One compiled program: run op by op, each initializer compiles on its own
    # (seconds per conv model on CPU).
    @jax.jit
    def init(batch):
      key = steps.stream_key(self.config.seed, steps.INIT_STREAM)
      keys = jax.random.split(key, len(batch["index"]))
      inputs = steps.prepare_batch(batch, keys, self.config.data.preprocess)
      return self.family.init_state(key, inputs)

    return init(batch)

  def abstract_state(self) -> Any:
    return jax.eval_shape(self.init_state)


def build(config: ml_collections.ConfigDict, devices=None) -> Experiment:
  """Validates ``config`` and builds dataset, family and device placement.

  Args:
    config: experiment config.
    devices: devices to run on (default: ``config.train.num_devices``).

  Raises:
    ConfigError: naming every invalid field, before any data is read.
  """
  config_lib.validate(config, None if devices is None else len(devices))
  if devices is None:
    devices = config_lib.select_devices(config)
  parallel = DataParallel(config.train.parallel, devices)
  data_cfg = config.data
  dataset = sources.load_dataset(
    data_cfg.name, data_dir=data_cfg.data_dir or None, manual_dir=data_cfg.manual_dir or None
  )
  info = DataInfo(
    name=dataset.name,
    kind=dataset.kind,
    shape=tuple(dataset.shape),
    num_classes=dataset.num_classes,
    preprocess=data_cfg.preprocess,
    modes=dataset.modes,
    mode_std=dataset.mode_std,
  )
  try:
    family = FAMILIES[config.family](config, info)
  except ValueError as e:  # Model/data mismatches only visible with the data's shape.
    raise config_lib.ConfigError(f"invalid config for dataset {dataset.name!r}: {e}") from e
  samples = suite.SampleEvaluator(config, dataset, family, parallel)
  errors = suite.compatibility_errors(samples.evals, family, dataset)
  if errors:
    raise config_lib.ConfigError("invalid config:\n  " + "\n  ".join(errors))
  samples.check_files()
  return Experiment(config, dataset, family, parallel, samples)


def eval_params(exp: Experiment, state: TrainState):
  """What the family evaluates and samples with: EMA parameters where they are kept."""
  return exp.family.eval_params(state)


def evaluate(
  exp: Experiment,
  params,
  *,
  num_examples: int,
  num_samples: int,
  batch_size: int | None = None,
  progress: bool = False,
) -> dict[str, float]:
  """Averages the family's per-example metrics over the test split.

  Args:
    exp: the experiment.
    params: parameters to evaluate (unreplicated).
    num_examples: number of test examples (0 = all).
    num_samples: importance samples for likelihood estimates.
    batch_size: global eval batch (default ``config.eval.batch_size``).
    progress: show a progress bar.

  Returns:
    ``{"eval/<name>": mean, ..., "eval/num_examples": n}``.
  """
  cfg = exp.config
  batch_size = batch_size or cfg.eval.batch_size
  eval_step = exp.eval_step(num_samples)
  replicated = exp.parallel.put_replicated(params)
  batches = pipeline.eval_batches(
    exp.dataset.test,
    batch_size=batch_size,
    num_examples=num_examples or None,
    process_index=jax.process_index(),
    process_count=jax.process_count(),
  )
  totals, count = {}, 0.0
  for batch in tqdm.tqdm(batches, desc="eval", disable=not progress, leave=False):
    sums, n = exp.parallel.get_replicated(eval_step(replicated, exp.parallel.put_batch(batch)))
    for k, v in sums.items():
      totals[k] = totals.get(k, 0.0) + np.asarray(v, np.float64)
    count += float(n)
  means = exp.family.summarize_eval({k: v / count for k, v in totals.items()})
  metrics = {f"eval/{k}": v for k, v in means.items()}
  metrics["eval/num_examples"] = count
  return metrics


def evaluate_samples(
  exp: Experiment,
  params,
  *,
  num_generated: int,
  image_dir: pathlib.Path | None = None,
  progress: bool = False,
) -> tuple[dict[str, float], dict]:
  """Runs ``config.evals`` on ``num_generated`` samples (see :mod:`genjax.evaluation.suite`).

  Args:
    exp: the experiment.
    params: parameters to sample with (unreplicated; EMA parameters where kept).
    num_generated: requested sample count (capped by the test split's size).
    image_dir: where pictures of the samples go (2-D mode coverage), or None.
    progress: show a progress bar while a feature net trains.

  Returns:
    ``({"eval/<metric>": value, "eval/<metric>_floor": value, ...}, report)``;
    empty when the config selects no sample metrics.
  """
  if not exp.samples:
    return {}, {}
  exp.samples.load_nets(progress)
  values, report = exp.samples(params, num_generated, image_dir)
  return {f"eval/{k}": v for k, v in values.items()}, report


def save_pictures(
  exp: Experiment, params, workdir: pathlib.Path, step: int, writer=None
) -> list[pathlib.Path]:
  """Draws the family's pictures to ``workdir/images`` and TensorBoard.

  ``images/<name>.png`` is the latest; ``images/history/<name>/<step>.png``
  keeps every evaluation's, to follow training.
  """
  cfg = exp.config
  n = min(cfg.eval.num_images, len(exp.dataset.test["label"]))
  if n == 0 or jax.process_index() != 0:  # One writer on a multi-host run.
    return []
  batch = {k: v[:n] for k, v in exp.dataset.test.items()}
  batch["index"] = np.arange(n, dtype=np.int32)
  key = steps.stream_key(cfg.seed, steps.PICTURE_STREAM)
  keys = jax.random.split(key, n)
  inputs = steps.prepare_batch(batch, keys, cfg.data.preprocess)
  grids = exp.family.pictures(params, inputs, key)
  paths = []
  for name, grid in grids.items():
    path = workdir / "images" / f"{name}.png"
    image_io.save_png(path, grid)
    # The same picture at every evaluation, to watch training (fixed noise).
    image_io.save_png(workdir / "images" / "history" / name / f"{step:08d}.png", grid)
    paths.append(path)
  if writer is not None and grids:
    writer.write_images(step, {f"images/{k}": v[None] for k, v in grids.items()})
  return paths


class _Preemption:
  """Turns SIGTERM into a checkpoint-and-exit at the next step boundary."""

  def __init__(self):
    self.requested = False
    self._previous = None

  def __enter__(self):
    try:
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    except ValueError:  # Not the main thread (e.g. some notebook kernels).
      self._previous = None
    return self

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def _mean_metrics(history: list[dict[str, jax.Array]]) -> dict[str, float]:
  stacked = jax.device_get(history)
  return {f"train/{k}": float(np.mean([h[k] for h in stacked])) for k in stacked[0]}


@jax.jit
def _all_finite(tree) -> jax.Array:
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


class _Run:
  """The impure resources of one training run and what it does at each step."""

  def __init__(self, exp: Experiment, workdir: pathlib.Path):
    self.exp, self.workdir = exp, workdir
    cfg, tc = exp.config, exp.config.train
    self.ckpt = checkpoint_lib.Checkpointer(
      workdir / "checkpoints", keep=tc.keep_checkpoints, async_save=tc.async_checkpoint
    )
    self.data = pipeline.make_train_iterator(
      exp.dataset.train,
      global_batch_size=tc.batch_size,
      seed=cfg.seed,
      process_index=jax.process_index(),
      process_count=jax.process_count(),
      minibatches=exp.family.minibatches,
    )
    self.start = self.ckpt.latest_step() or 0
    if self.start:
      state, data_state, _ = _restore(exp, self.ckpt, self.start)
      self.data.set_state(data_state)
    else:
      state = exp.init_state()
    log.info(
      "%s: %s parameters, %d devices (%s), start at step %d of %d",
      cfg.family,
      f"{num_params(state.params):,}",
      exp.parallel.num_devices,
      tc.parallel,
      self.start,
      tc.num_steps,
    )
    _write_config(workdir, cfg)
    if exp.samples:  # Feature nets and real-data floors up front, not mid-run.
      show = tc.progress_bar and sys.stderr.isatty()
      exp.samples.prepare([cfg.eval.periodic_sample_examples], progress=show)
    self.writer = writers.create_writer(workdir, resume_step=self.start)
    self.state = exp.parallel.put_replicated(state)  # device-resident from here on
    self.last_saved = self.start
    self.history, self.summary = [], {}
    self._last_log = (self.start, time.perf_counter())

  def host_state(self) -> TrainState:
    return self.exp.parallel.get_replicated(self.state)

  def log(self, step: int) -> None:
    """Averages the metrics since the last log (one device sync) and writes them."""
    summary = _mean_metrics(self.exp.parallel.get_replicated(self.history))
    self.history = []
    rate = (step - self._last_log[0]) / (time.perf_counter() - self._last_log[1])
    self._last_log = (step, time.perf_counter())
    summary["train/steps_per_sec"] = rate
    summary["train/examples_per_sec"] = rate * self.exp.config.train.batch_size
    bad = [k for k, v in summary.items() if not np.isfinite(v)]
    if bad:
      raise FloatingPointError(self._nonfinite(step) + f" Non-finite: {', '.join(bad)}.")
    self.writer.write_scalars(step, summary)
    self.summary = summary

  def evaluate(self, step: int, record: bool = True) -> dict[str, float]:
    """Periodic evaluation and pictures with the current (EMA) parameters.

    ``record=False`` (a finished run started again) only returns the metrics,
    so ``metrics.jsonl`` keeps one record per step.
    """
    state = self.host_state()
    metrics = _periodic_eval(self.exp, state, self.workdir / "images")
    writer = self.writer if record else None
    if record:
      self.writer.write_scalars(step, metrics)
    save_pictures(self.exp, eval_params(self.exp, state), self.workdir, step, writer)
    log.info("step %d: %s; pictures in %s", step, _brief(metrics), self.workdir / "images")
    return metrics

  def checkpoint(self, step: int) -> None:
    """Saves asynchronously, refusing to overwrite good state with NaNs."""
    state = self.host_state()
    if not bool(_all_finite(state.params)):
      raise FloatingPointError(self._nonfinite(step))
    self.ckpt.save(step, state, self.data.get_state(), self.exp.config)
    self.last_saved = step

  def _nonfinite(self, step: int) -> str:
    return (
      f"non-finite values at step {step}; the last good checkpoint (step "
      f"{self.last_saved}) in {self.workdir / 'checkpoints'} is kept. Lower "
      "config.optimizer.learning_rate or set config.optimizer.grad_clip_norm."
    )

  def close(self) -> None:
    self.ckpt.wait()  # A failing run still leaves its last checkpoint complete.
    self.ckpt.close()


def _brief(metrics: dict[str, float]) -> str:
  return ", ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items()))


# Steps dispatched ahead of the device. Two keep an accelerator fed while the host
# prepares the next batch; an unbounded queue is worse than useless: with several
# CPU devices (``--xla_force_host_platform_device_count``) XLA's CPU client can
# deadlock a collective when hundreds of steps are queued (every launch thread
# blocks in a rendezvous that a queued launch would complete).
_MAX_STEPS_IN_FLIGHT = 2


def train_and_evaluate(
  config: ml_collections.ConfigDict, workdir: str | pathlib.Path
) -> dict[str, float]:
  """Trains ``config`` in ``workdir``, resuming from its latest checkpoint.

  Args:
    config: experiment config (validated here first).
    workdir: run directory for checkpoints, metrics, TensorBoard and images.

  Returns:
    The last logged train metrics and the final evaluation metrics.
  """
  exp = build(config)
  run = _Run(exp, pathlib.Path(workdir))
  tc = exp.config.train
  train_step = exp.parallel.compile(
    steps.make_train_step(exp.family, seed=exp.config.seed, preprocess=exp.config.data.preprocess),
    donate_first=True,
  )
  show = tc.progress_bar and sys.stderr.isatty()
  bar = tqdm.tqdm(
    total=tc.num_steps,
    initial=run.start,
    desc=exp.config.family,
    unit="step",
    disable=not show,
    dynamic_ncols=True,
  )
  try:
    # Log lines go through tqdm so they do not break the progress bar.
    with _Preemption() as preemption, logging_redirect_tqdm(loggers=[log]):
      for step in range(run.start + 1, tc.num_steps + 1):
        run.state, metrics = train_step(run.state, exp.parallel.put_batch(next(run.data)))
        run.history.append(metrics)  # Emptied (and synced) at every log.
        if len(run.history) > _MAX_STEPS_IN_FLIGHT:
          jax.block_until_ready(run.history[-_MAX_STEPS_IN_FLIGHT - 1])
        bar.update(1)
        last = step == tc.num_steps
        if step % tc.log_every == 0 or last:
          run.log(step)
          bar.set_postfix(loss=f"{run.summary['train/loss']:.4g}")
        if tc.eval_every and step % tc.eval_every == 0 and not last:
          run.evaluate(step)
        if step % tc.checkpoint_every == 0 or last or preemption.requested:
          run.checkpoint(step)
        if preemption.requested:
          log.warning("SIGTERM: saved step %d in %s; rerun to resume", step, workdir)
          break
  finally:
    bar.close()
    run.close()
  summary = dict(run.summary)
  if run.last_saved == tc.num_steps:
    summary.update(run.evaluate(tc.num_steps, record=run.start < tc.num_steps))
  run.writer.flush()
  run.writer.close()
  return summary


def _periodic_eval(exp: Experiment, state: TrainState, image_dir: pathlib.Path) -> dict[str, float]:
  ec = exp.config.eval
  params = eval_params(exp, state)
  metrics = evaluate(
    exp, params, num_examples=ec.periodic_examples, num_samples=ec.periodic_nll_samples
  )
  sample_metrics, _ = evaluate_samples(
    exp, params, num_generated=ec.periodic_sample_examples, image_dir=image_dir
  )
  return metrics | sample_metrics


def _restore(exp: Experiment, ckpt: checkpoint_lib.Checkpointer, step: int):
  try:
    return ckpt.restore(exp.abstract_state(), step)
  except Exception as e:  # Orbax raises several types for a structure mismatch.
    saved = ckpt.restore_config(step)
    changed = _diff(*(json.loads(c.to_json_best_effort()) for c in (saved, exp.config)))
    raise checkpoint_lib.CheckpointMismatchError(
      f"cannot restore checkpoint {step} in {ckpt.directory} with this config; "
      f"fields that differ from the saved config: {changed or 'none'}. "
      "Use a fresh --workdir or the saved config."
    ) from e


def _diff(saved: dict, current: dict, prefix: str = "") -> list[str]:
  out = []
  for k in sorted(set(saved) | set(current)):
    a, b = saved.get(k), current.get(k)
    if isinstance(a, dict) and isinstance(b, dict):
      out += _diff(a, b, f"{prefix}{k}.")
    elif a != b:
      out.append(f"{prefix}{k}: {a!r} -> {b!r}")
  return out


def _write_config(workdir: pathlib.Path, cfg: ml_collections.ConfigDict) -> None:
  if jax.process_index() == 0:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.json").write_text(cfg.to_json_best_effort(indent=2) + "\n")

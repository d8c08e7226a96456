"""Evaluating a run: the test split, sample metrics, pictures, and a saved workdir.

The training loop calls :func:`periodic` and :func:`save_pictures`;
``genjax.evaluate`` calls :func:`evaluate_workdir`. Both go through the same
compiled eval step and the same sample evaluator, so a number logged during
training and one from ``genjax.evaluate`` at the same settings agree.
"""

import logging

import jax
import numpy as np
import tqdm
from etils import epath

from genjax import config as config_lib
from genjax.core import random as genjax_random
from genjax.core.train_state import TrainState
from genjax.data import pipeline
from genjax.data.preprocessing import prepare_batch
from genjax.evaluation import images as image_io
from genjax.run import checkpoint as checkpoint_lib
from genjax.run import writers
from genjax.run.experiment import Experiment, build

log = logging.getLogger("genjax")


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
  image_dir: epath.Path | None = None,
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


def periodic(exp: Experiment, state: TrainState, image_dir: epath.Path) -> dict[str, float]:
  """The evaluation during training: a part of the test split and a few samples."""
  ec = exp.config.eval
  params = eval_params(exp, state)
  metrics = evaluate(
    exp, params, num_examples=ec.periodic_examples, num_samples=ec.periodic_nll_samples
  )
  sample_metrics, _ = evaluate_samples(
    exp, params, num_generated=ec.periodic_sample_examples, image_dir=image_dir
  )
  return metrics | sample_metrics


def save_pictures(
  exp: Experiment, params, workdir: epath.Path, step: int, writer=None
) -> list[epath.Path]:
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
  key = genjax_random.stream_key(cfg.seed, genjax_random.PICTURE_STREAM)
  keys = jax.random.split(key, n)
  inputs = prepare_batch(batch, keys, cfg.data.preprocess)
  grids = exp.family.pictures(params, inputs, key)
  paths = []
  captions = exp.family.captions()
  for name, grid in grids.items():
    lines = [f"{cfg.family} {name}, step {step}"] + ([captions[name]] if name in captions else [])
    picture = image_io.titled(image_io.readable(grid), lines)
    path = workdir / "images" / f"{name}.png"
    image_io.save_png(path, picture)
    # The same picture at every evaluation, to watch training (fixed noise).
    image_io.save_png(workdir / "images" / "history" / name / f"{step:08d}.png", picture)
    paths.append(path)
  if writer is not None and grids:
    writer.write_images(step, {f"images/{k}": v[None] for k, v in grids.items()})
  return paths


def evaluate_workdir(
  workdir,
  *,
  num_samples=None,
  num_examples=None,
  num_generated=None,
  evals=None,
  test_metrics=True,
  batch_size=None,
  step=None,
  overrides=(),
  progress=False,
) -> dict:
  """Evaluates a run directory's checkpoint.

  Args:
    workdir: run directory written by ``train_and_evaluate``.
    num_samples: importance samples (default ``config.eval.nll_samples``).
    num_examples: test examples (default ``config.eval.num_examples``; 0 = all).
    num_generated: samples for the sample metrics (default ``config.eval.sample_examples``).
    evals: sample metrics, comma-separated (default: the saved ``config.evals``).
    test_metrics: compute the family's test-split metrics (else only sample metrics).
    batch_size: global eval batch (default ``config.eval.batch_size``).
    step: checkpoint step (default: latest).
    overrides: ``field=value`` config changes (sampler, guidance, ...); the
      results are then not appended to the run's logs, and the report names them.
    progress: show progress bars.

  Returns:
    ``{"eval/<metric>": value, ..., "step": step, "report": {...}}``.
  """
  directory = checkpoint_lib.as_path(workdir) / "checkpoints"
  if not directory.is_dir():  # Checked first: opening it would create it.
    raise FileNotFoundError(f"no checkpoint in {directory}; is --workdir a training run's?")
  ckpt = checkpoint_lib.Checkpointer(directory)

  def read(step):
    config = ckpt.restore_config(step)
    if evals is not None:
      config.evals = evals
    if batch_size:
      config.eval.batch_size = batch_size
    applied = config_lib.apply_overrides(config, list(overrides))
    exp = build(config)
    state, _, _ = ckpt.restore(exp.abstract_state(), step, sharding=exp.parallel.replicated)
    return config, applied, exp, state

  try:
    step, (config, applied, exp, state), skipped = checkpoint_lib.newest_readable(ckpt, step, read)
  finally:
    ckpt.close()
  ec = config.eval
  params = eval_params(exp, state)
  metrics = {}
  if test_metrics:
    metrics = evaluate(
      exp,
      params,
      num_examples=ec.num_examples if num_examples is None else num_examples,
      num_samples=num_samples or ec.nll_samples,
      progress=progress,
    )
  if "eval/nll" in metrics and exp.family.nll_uses_samples:  # Exact likelihoods use none.
    metrics["eval/num_samples"] = num_samples or ec.nll_samples
  sample_metrics, report = evaluate_samples(
    exp,
    params,
    num_generated=num_generated or ec.sample_examples,
    image_dir=checkpoint_lib.as_path(workdir) / "images",
    progress=progress,
  )
  metrics.update(sample_metrics)
  if skipped:
    report = dict(report, damaged_checkpoints_skipped=skipped)
  if applied:
    report = dict(report, overrides=applied)
  else:
    _record(workdir, step, metrics)
  return dict(metrics, step=step, report=report)


def _record(workdir, step: int, metrics: dict) -> None:
  """Appends the scalars to the run's metrics.jsonl and TensorBoard."""
  writer = writers.create_writer(workdir, resume_step=None)
  writer.write_scalars(step, metrics)
  writer.flush()
  writer.close()

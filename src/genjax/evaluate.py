"""Evaluates the latest checkpoint of a run on the test split.

``python -m genjax.evaluate --workdir=runs/vae_mnist [--num_samples=5000]
[--num_generated=10000] [--evals=fid_lenet,kid_lenet]`` rebuilds the
experiment from the config saved with the checkpoint, restores the state (EMA
parameters where kept), computes the family's test-split metrics and the
sample metrics of ``config.evals`` (each beside its real-vs-real floor), and
prints one JSON object: the ``eval/`` metrics plus ``report``, which states
sample counts, reference split and feature nets. The same object is written to
``workdir/eval.json``; the scalars are also appended to ``metrics.jsonl`` and
TensorBoard at the checkpoint's step.
"""

import json
import pathlib
import sys

from absl import app, flags

_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory with checkpoints.")
_NUM_SAMPLES = flags.DEFINE_integer(
  "num_samples", None, "Importance samples for the NLL (default config.eval.nll_samples)."
)
_NUM_EXAMPLES = flags.DEFINE_integer(
  "num_examples", None, "Test examples (default config.eval.num_examples; 0 = all)."
)
_NUM_GENERATED = flags.DEFINE_integer(
  "num_generated",
  None,
  "Generated samples for the sample metrics (default config.eval.sample_examples).",
)
_EVALS = flags.DEFINE_string(
  "evals", None, "Sample metrics, comma-separated (default: the run's config.evals)."
)
_TEST_METRICS = flags.DEFINE_bool(
  "test_metrics", True, "Compute the family's test-split metrics (ELBO, NLL, ...)."
)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", None, "Global eval batch size.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).")
_SET = flags.DEFINE_multi_string(
  "set",
  [],
  "Config override field=value for this evaluation, e.g. diffusion.sampler=ddpm or "
  "diffusion.guidance_scale=3 (repeatable). Results then go only to --output.",
)
_OUTPUT = flags.DEFINE_string("output", None, "JSON output file (default: workdir/eval.json).")
flags.mark_flag_as_required("workdir")


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
  from genjax import config as config_lib
  from genjax.training import checkpoint as checkpoint_lib
  from genjax.training import loop

  ckpt = checkpoint_lib.Checkpointer(pathlib.Path(workdir) / "checkpoints")
  step = ckpt.latest_step() if step is None else step
  if step is None:
    raise FileNotFoundError(f"no checkpoint in {pathlib.Path(workdir) / 'checkpoints'}")
  config = ckpt.restore_config(step)
  if evals is not None:
    config.evals = evals
  if batch_size:
    config.eval.batch_size = batch_size
  applied = config_lib.apply_overrides(config, list(overrides))
  exp = loop.build(config)
  state, _, _ = ckpt.restore(exp.abstract_state(), step)
  ckpt.close()
  ec = config.eval
  params = loop.eval_params(exp, state)
  metrics = {}
  if test_metrics:
    metrics = loop.evaluate(
      exp,
      params,
      num_examples=ec.num_examples if num_examples is None else num_examples,
      num_samples=num_samples or ec.nll_samples,
      progress=progress,
    )
  if "eval/nll" in metrics and exp.family.nll_uses_samples:  # Exact likelihoods use none.
    metrics["eval/num_samples"] = num_samples or ec.nll_samples
  sample_metrics, report = loop.evaluate_samples(
    exp,
    params,
    num_generated=num_generated or ec.sample_examples,
    image_dir=pathlib.Path(workdir) / "images",
    progress=progress,
  )
  metrics.update(sample_metrics)
  if applied:
    report = dict(report, overrides=applied)
  else:
    _record(workdir, step, metrics)
  return dict(metrics, step=step, report=report)


def _record(workdir, step: int, metrics: dict) -> None:
  """Appends the scalars to the run's metrics.jsonl and TensorBoard."""
  from genjax.training import writers

  writer = writers.create_writer(workdir, resume_step=None)
  writer.write_scalars(step, metrics)
  writer.flush()
  writer.close()


def main(argv):
  del argv
  from genjax.config import ConfigError
  from genjax.training import writers

  writers.configure_logging()
  try:
    metrics = evaluate_workdir(
      _WORKDIR.value,
      num_samples=_NUM_SAMPLES.value,
      num_examples=_NUM_EXAMPLES.value,
      num_generated=_NUM_GENERATED.value,
      evals=_EVALS.value,
      test_metrics=_TEST_METRICS.value,
      batch_size=_BATCH_SIZE.value,
      step=_STEP.value,
      overrides=_SET.value,
      progress=sys.stderr.isatty(),
    )
  except (FileNotFoundError, ConfigError) as e:
    print(f"genjax.evaluate: {e}", file=sys.stderr)
    sys.exit(2)
  text = json.dumps(metrics, indent=1, sort_keys=True)
  output = pathlib.Path(_OUTPUT.value or pathlib.Path(_WORKDIR.value) / "eval.json")
  output.parent.mkdir(parents=True, exist_ok=True)
  output.write_text(text + "\n")
  print(text)


def run():
  """Console entry point ``genjax-evaluate``."""
  app.run(main)


if __name__ == "__main__":
  run()

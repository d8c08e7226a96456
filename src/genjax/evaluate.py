"""Evaluates the latest checkpoint of a run on the test split.

``python -m genjax.evaluate --workdir=runs/vae_mnist [--num_samples=5000]``
rebuilds the experiment from the config saved with the checkpoint, restores
the state (EMA parameters where kept) and prints one JSON object of ``eval/``
metrics, also written to ``workdir/eval.json``.
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
_BATCH_SIZE = flags.DEFINE_integer("batch_size", None, "Global eval batch size.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).")
flags.mark_flag_as_required("workdir")


def evaluate_workdir(
  workdir, *, num_samples=None, num_examples=None, batch_size=None, step=None, progress=False
) -> dict:
  """Evaluates a run directory's checkpoint; returns ``eval/`` metrics.

  Args:
    workdir: run directory written by ``train_and_evaluate``.
    num_samples: importance samples (default ``config.eval.nll_samples``).
    num_examples: test examples (default ``config.eval.num_examples``; 0 = all).
    batch_size: global eval batch (default ``config.eval.batch_size``).
    step: checkpoint step (default: latest).
    progress: show a progress bar.
  """
  from genjax.training import checkpoint as checkpoint_lib
  from genjax.training import loop

  ckpt = checkpoint_lib.Checkpointer(pathlib.Path(workdir) / "checkpoints")
  step = ckpt.latest_step() if step is None else step
  if step is None:
    raise FileNotFoundError(f"no checkpoint in {pathlib.Path(workdir) / 'checkpoints'}")
  config = ckpt.restore_config(step)
  exp = loop.build(config)
  state, _, _ = ckpt.restore(exp.abstract_state(), step)
  ckpt.close()
  ec = config.eval
  metrics = loop.evaluate(
    exp,
    loop.eval_params(state, config),
    num_examples=ec.num_examples if num_examples is None else num_examples,
    num_samples=num_samples or ec.nll_samples,
    batch_size=batch_size,
    progress=progress,
  )
  metrics["step"] = step
  if "eval/nll" in metrics:  # Only likelihood estimates use importance samples.
    metrics["eval/num_samples"] = num_samples or ec.nll_samples
  return metrics


def main(argv):
  del argv
  from genjax.training import writers

  writers.configure_logging()
  try:
    metrics = evaluate_workdir(
      _WORKDIR.value,
      num_samples=_NUM_SAMPLES.value,
      num_examples=_NUM_EXAMPLES.value,
      batch_size=_BATCH_SIZE.value,
      step=_STEP.value,
      progress=sys.stderr.isatty(),
    )
  except FileNotFoundError as e:
    print(f"genjax.evaluate: {e}", file=sys.stderr)
    sys.exit(2)
  text = json.dumps(metrics, indent=1, sort_keys=True)
  (pathlib.Path(_WORKDIR.value) / "eval.json").write_text(text + "\n")
  print(text)


def run():
  """Console entry point ``genjax-evaluate``."""
  app.run(main)


if __name__ == "__main__":
  run()

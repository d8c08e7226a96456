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
import sys

from absl import app, flags
from etils import epath

from genjax.run import cli

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
  "diffusion.guidance_scale=3 (repeatable; --config.diffusion.sampler=ddpm is the same). "
  "Results then go only to --output.",
)
# ``--config.<field>=<value>`` as in training, taken out before absl sees them.
_CONFIG_OVERRIDES: list[str] = []
_OUTPUT = flags.DEFINE_string("output", None, "JSON output file (default: workdir/eval.json).")
flags.mark_flag_as_required("workdir")


def main(argv):
  del argv
  # Imported after flags parse: --help stays fast.
  from genjax.config import ConfigError
  from genjax.run import writers
  from genjax.run.evaluation import evaluate_workdir

  for flag in (_NUM_SAMPLES, _NUM_GENERATED, _BATCH_SIZE):
    if flag.value is not None and flag.value < 1:
      cli.fail(f"genjax.evaluate: --{flag.name}={flag.value}: must be >= 1")
  if _NUM_EXAMPLES.value is not None and _NUM_EXAMPLES.value < 0:
    cli.fail(f"genjax.evaluate: --num_examples={_NUM_EXAMPLES.value}: must be >= 0 (0 = all)")
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
      overrides=_SET.value + _CONFIG_OVERRIDES,
      progress=sys.stderr.isatty(),
    )
  except (FileNotFoundError, ConfigError) as e:
    cli.fail(f"genjax.evaluate: {e}", e)
  text = json.dumps(metrics, indent=1, sort_keys=True)
  output = epath.Path(_OUTPUT.value or epath.Path(_WORKDIR.value) / "eval.json")
  output.parent.mkdir(parents=True, exist_ok=True)
  output.write_text(text + "\n")
  print(text)


def _parse_flags(argv: list[str]) -> list[str]:
  for arg in argv[1:]:
    if arg.startswith("--config."):
      _CONFIG_OVERRIDES.append(arg[len("--config.") :])
  return flags.FLAGS([a for a in argv if not a.startswith("--config.")])


def run():
  """Console entry point ``genjax-evaluate``."""
  app.run(main, flags_parser=cli.help_parser(__name__, _parse_flags))


if __name__ == "__main__":
  run()

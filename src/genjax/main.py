"""Launcher: ``python -m genjax.main --config=experiments/configs/vae_digits.py --workdir=runs/x``.

Overrides go on the command line (``--config.optimizer.learning_rate=3e-4``);
the config is locked, so a misspelt field fails. Everything this file does is
one call to :func:`genjax.run.loop.train_and_evaluate`, which a notebook
can make directly.
"""

import json
import sys

import jax
from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
  "config", None, "Experiment config file (experiments/configs/<name>.py).", lock_config=True
)
_WORKDIR = flags.DEFINE_string(
  "workdir", None, "Run directory; an existing one with checkpoints is resumed."
)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from genjax import config as config_lib  # Import after flags parse (fast --help).

  config = _CONFIG.value
  if config.train.distributed:
    jax.distributed.initialize()
  try:
    # Before the training stack (TensorFlow, through the TensorBoard writer) is
    # imported: a bad field is reported in a second or two.
    config_lib.validate(config)
  except config_lib.ConfigError as e:
    _fail(e)
  from genjax.run import checkpoint, loop, writers

  writers.configure_logging()
  try:
    summary = loop.train_and_evaluate(config, _WORKDIR.value)
  except (config_lib.ConfigError, FileNotFoundError, checkpoint.CheckpointMismatchError) as e:
    _fail(e)
  print(json.dumps(summary, indent=1, sort_keys=True))
  print(f"outputs: {_WORKDIR.value} (metrics.jsonl, tensorboard/, images/, checkpoints/)")


def _fail(error: Exception):
  print(f"genjax: {error}", file=sys.stderr)
  sys.exit(2)


def run():
  """Console entry point ``genjax``."""
  app.run(main)


if __name__ == "__main__":
  run()

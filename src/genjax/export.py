"""Exports a run's parameters: ``python -m genjax.export --workdir=runs/x --out=bundles/x``.

The bundle holds the evaluation parameters (EMA where kept) in Flax's msgpack
format, the config, the data facts, the step's metrics and a model card;
``genjax.load(out)`` samples from it exactly as from the run, with no
optimizer state and no dataset.
"""

from absl import app, flags

from genjax.run import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory.")
_OUT = flags.DEFINE_string("out", None, "Bundle directory to write.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: newest readable).")
flags.mark_flags_as_required(["workdir", "out"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from genjax.run import trained, writers  # After flag parsing: --help stays fast.

  writers.configure_logging()
  try:
    model = trained.load(_WORKDIR.value, _STEP.value)
    out = model.export(_OUT.value)
  except (FileNotFoundError, FileExistsError, ValueError) as e:
    cli.fail(f"genjax.export: {e}", e)
  print(f"exported {model!r} to {out}")


def run():
  """Console entry point ``genjax-export``."""
  app.run(main, flags_parser=cli.help_parser(__name__))


if __name__ == "__main__":
  run()

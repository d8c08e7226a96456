"""Launcher: ``python -m genjax.main --config=experiments/configs/vae_digits.py --workdir=runs/x``.

Overrides go on the command line (``--config.optimizer.learning_rate=3e-4``);
the config is locked, so a misspelt field fails. Everything this file does is
one call to :func:`genjax.run.loop.train_and_evaluate`, which a notebook
can make directly.
"""

import jax
from absl import app, flags
from ml_collections import config_flags

from genjax.run import cli

_CONFIG = config_flags.DEFINE_config_file(
  "config", None, "Experiment config file (experiments/configs/<name>.py).", lock_config=True
)
_WORKDIR = flags.DEFINE_string(
  "workdir", None, "Run directory; an existing one with checkpoints is resumed."
)
_LIST = flags.DEFINE_bool("list_configs", False, "List the shipped experiment configs and exit.")
_PRINT = flags.DEFINE_bool(
  "print_config", False, "Print the config (with its overrides applied) and exit."
)
# Multi-host: given here, or found by JAX's cluster detection (SLURM, Open MPI, Cloud TPU)
# when config.train.distributed is set. genjax.launch sets them for local processes.
_COORDINATOR = flags.DEFINE_string(
  "coordinator_address", None, "host:port of process 0's coordinator (multi-host runs)."
)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in the job.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index in the job.")
_LOCAL_DEVICES = flags.DEFINE_list(
  "local_device_ids", None, "Devices this process uses (default: all it sees)."
)
_HEARTBEAT = flags.DEFINE_integer(
  "heartbeat_timeout_s",
  60,
  "Seconds without a peer's heartbeat before the job fails (a dead process ends the others).",
)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from genjax import config as config_lib  # Import after flags parse (fast --help).
  from genjax.run import writers

  if _LIST.value:
    print(cli.list_configs())
    return
  if _CONFIG.value is None:
    cli.fail(
      "genjax: --config is required, e.g. --config=experiments/configs/vae_digits.py "
      "(--list_configs shows them all)"
    )
  if _PRINT.value:
    print(_CONFIG.value)
    return
  if not _WORKDIR.value:
    cli.fail("genjax: --workdir is required: the run directory (an existing one is resumed)")
  writers.configure_logging()  # Before anything it quiets is loaded.
  config = _CONFIG.value
  _initialize_distributed(config.train.distributed)
  try:
    # Before the training stack (TensorFlow, through the TensorBoard writer) is
    # imported: a bad field is reported in a second or two.
    config_lib.validate(config)
  except config_lib.ConfigError as e:
    _fail(e)
  from genjax.run import checkpoint, loop

  try:
    summary = loop.train_and_evaluate(config, _WORKDIR.value)
  except (
    config_lib.ConfigError,
    FileNotFoundError,
    checkpoint.CheckpointMismatchError,
    checkpoint.DiskFullError,
    FloatingPointError,  # A diverged run: the message names the fields to change.
    NotADirectoryError,
    PermissionError,
    checkpoint.WorkdirInUseError,
  ) as e:
    _fail(e)
  if jax.process_index() == 0:
    evals = {k: v for k, v in summary.items() if k.startswith("eval/")}
    print(f"done: {loop.brief(evals or summary)}")
    print(f"outputs: {_WORKDIR.value} (metrics.jsonl, tensorboard/, images/, checkpoints/)")


def _initialize_distributed(detect: bool) -> None:
  """Joins the job described by the flags, or the one the cluster describes when ``detect``."""
  given = _COORDINATOR.value or _NUM_PROCESSES.value or _PROCESS_ID.value is not None
  if not (given or detect):
    return
  local = [int(d) for d in _LOCAL_DEVICES.value] if _LOCAL_DEVICES.value else None
  jax.distributed.initialize(
    coordinator_address=_COORDINATOR.value,
    num_processes=_NUM_PROCESSES.value,
    process_id=_PROCESS_ID.value,
    local_device_ids=local,
    heartbeat_timeout_seconds=_HEARTBEAT.value,
  )


def _fail(error: Exception):
  cli.fail(f"genjax: {error}", error)


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with a bad config file or override reported in one line (status 2)."""
  try:
    remaining = flags.FLAGS(argv)
    if "--helpfull" not in argv and _CONFIG.value is not None:
      _CONFIG.value.train  # noqa: B018 - the file loads lazily: fail here, not in main.
    return remaining
  except Exception as e:  # noqa: BLE001 - the parser raises many types; the user needs one line.
    cli.fail(f"genjax: {_describe(e, argv)}", e)


def _describe(error: Exception, argv: list[str]) -> str:
  """One line naming the flag or file at fault and what is wrong with it."""
  text = str(error).replace("\\n", "\n").replace("\\'", "'")
  lines = [line.strip() for line in text.splitlines() if line.strip()]
  config = next((a for a in argv if a.startswith("--config=")), "--config")
  if isinstance(error, AttributeError) and lines:  # An override of a field the config lacks?
    field = lines[0].strip("'\"")
    bad = [a for a in argv if a.startswith("--config.") and f".{field}" in a.split("=")[0]]
    if bad:
      hint = lines[-1].strip("'\"") if len(lines) > 1 else ""
      return f"{bad[0]}: no such config field" + (f"; {hint[0].lower()}{hint[1:]}" if hint else "")
    if "get_config" in text:
      return f"{config}: the file defines no get_config()"
  return f"{config}: {lines[-1] if lines else type(error).__name__}"


def run():
  """Console entry point ``genjax``."""
  app.run(main, flags_parser=cli.help_parser(__name__, _parse_flags))


if __name__ == "__main__":
  run()

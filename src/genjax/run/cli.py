"""What the command-line entry points share: a ``--help`` that lists their flags, one-line errors.

Light on purpose (absl flags only): ``genjax.main`` reports a bad flag with it
before anything else is imported.
"""

import os
import pathlib
import sys
import traceback
from typing import Callable, NoReturn

from absl import flags

import genjax

_VERBOSE = flags.DEFINE_bool(
  "verbose",
  False,
  "On an error, print its traceback before the one-line report (or set GENJAX_VERBOSE=1).",
)


def verbose() -> bool:
  # A bad flag is reported before the flags are parsed: argv is all there is then.
  given = _VERBOSE.value if flags.FLAGS.is_parsed() else "--verbose" in sys.argv
  return given or os.environ.get("GENJAX_VERBOSE") == "1"


def fail(message: str, error: BaseException | None = None) -> NoReturn:
  """Prints ``message`` on stderr and exits 2; verbose, the traceback of ``error`` first."""
  if error is not None and verbose():
    traceback.print_exception(error)
  print(message, file=sys.stderr)
  sys.exit(2)


def help_parser(module_name: str, parse: Callable | None = None) -> Callable:
  """absl's flag parser, with ``--help`` showing ``module_name``'s docstring and flags.

  absl lists only the flags of the file that started the program, which for
  a console script (``genjax``, ``genjax-sample``) is the script, not the module.
  """
  module = sys.modules[module_name]
  program = module.__spec__.name if module.__spec__ else module_name  # Not "__main__".

  def parser(argv):
    if any(a in ("--help", "-h", "-?", "--helpshort") for a in argv[1:]):
      doc = (module.__doc__ or "").strip()
      listing = flags.FLAGS.module_help(module_name).replace(f"{module_name}:", f"{program}:", 1)
      print(f"{doc}\n\nflags:\n{listing}")
      sys.exit(0)
    try:
      return (parse or flags.FLAGS)(argv)
    except flags.Error as e:  # A missing or malformed flag: absl's message, on one line.
      fail(f"{program}: {' '.join(str(e).split())}", e)

  return parser


def configs_dir() -> pathlib.Path | None:
  """``experiments/configs`` of the working directory or of the checkout genjax runs from."""
  for root in (pathlib.Path.cwd(), pathlib.Path(genjax.__file__).resolve().parents[2]):
    if (root / "experiments" / "configs").is_dir():
      return root / "experiments" / "configs"
  return None


def list_configs() -> str:
  """One line per shipped experiment config: its path and the first line of its docstring."""
  directory = configs_dir()
  if directory is None:
    return "no experiments/configs here; run from a genjax checkout"
  lines = []
  for path in sorted(directory.glob("*.py")):
    text = path.read_text()
    doc = text.split('"""')[1].strip().splitlines()[0] if text.startswith('"""') else ""
    cwd = pathlib.Path.cwd()
    shown = path.relative_to(cwd) if path.is_relative_to(cwd) else path
    lines.append(f"{str(shown):48s} {doc}")
  return "\n".join(lines)

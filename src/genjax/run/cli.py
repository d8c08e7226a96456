"""The entry points' report of an error the user can fix: one line and status 2.

Light on purpose (absl flags only): ``genjax.main`` reports a bad flag with it
before anything else is imported.
"""

import os
import sys
import traceback
from typing import NoReturn

from absl import flags

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

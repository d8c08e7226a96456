"""XLA's persistent compilation cache for training runs, so a second start skips compiling.

``config.train.compilation_cache_dir`` picks the directory: a path; ``"none"``
(off); or ``""``: the directory JAX was given by its user
(``$JAX_COMPILATION_CACHE_DIR`` or ``jax.config``), else ``jax/`` in genjax's
cache (``$GENJAX_CACHE_DIR``, ``$XDG_CACHE_HOME/genjax`` or ``~/.cache/genjax``).
A cached executable is the one XLA compiled for the same program, so results do
not change. The cache is trusted code: do not share its directory with anyone
who should not run programs as you.
"""

import os

import jax
from jax.experimental.compilation_cache import compilation_cache

from genjax.data import sources

OFF = "none"
# JAX writes only programs that took 1 s to compile; on CPU a step compiles in a
# fraction of that, yet a run compiles dozens of programs (step, evaluation,
# pictures, samplers) that make up most of its start-up. Below 0.1 s are mostly
# single eager operations, not worth a file each (vae_digits: 23 files, not 39).
MIN_COMPILE_SECS = 0.1
_MIN_COMPILE_ENV = "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"

# The directory this module set, and the one JAX had from its user before that.
_ours: str | None = None
_theirs: str | None = None


def enable(setting: str) -> str | None:
  """Points JAX's persistent cache at the directory ``setting`` names (see the module).

  Call before anything of the run compiles. Returns the directory, or None when off.
  """
  global _ours, _theirs
  current = jax.config.jax_compilation_cache_dir
  if current and current != _ours:  # Set by the user, not by an earlier run.
    _theirs = current
  directory = _directory(setting)
  enabled = jax.config.jax_enable_compilation_cache
  if directory != (current if enabled else None):
    jax.config.update("jax_enable_compilation_cache", directory is not None)
    if directory is not None:
      jax.config.update("jax_compilation_cache_dir", directory)
    # JAX opens its cache once per process: another directory needs a fresh start.
    compilation_cache.reset_cache()
  if directory is not None and directory != _theirs:
    _ours = directory
  if directory is not None and _MIN_COMPILE_ENV not in os.environ:
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECS)
  return directory


def _directory(setting: str) -> str | None:
  if setting == OFF:
    return None
  if setting:
    return os.path.expanduser(setting)
  return _theirs or os.fspath(sources.cache_root() / "jax")

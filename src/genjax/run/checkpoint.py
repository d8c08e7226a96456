"""Orbax checkpoints of the train state, the data position and the config."""

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
from typing import Any, Callable

import jax
import ml_collections
import orbax.checkpoint as ocp
from etils import epath
from jax.experimental import multihost_utils

from genjax import config as config_lib

log = logging.getLogger("genjax")

ITEMS = ("state", "data", "config")


def as_path(path: str | os.PathLike) -> epath.Path:
  """A local path (made absolute) or a cloud one (``gs://...``), as one type."""
  text = os.fspath(path)
  return epath.Path(text if "://" in text else os.path.abspath(text))


def describe(error: Exception) -> str:
  """An error's type and first line: why a checkpoint could not be read, in a log line."""
  return f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0][:200]}"


def newest_readable(ckpt: "Checkpointer", step: int | None, read: Callable[[int], Any]):
  """``(step, read(step), skipped)`` for ``step``, or else for the newest checkpoint that reads.

  Damaged checkpoints are skipped with a warning naming each and why
  (``skipped``: ``{step: reason}``); they stay where they are (only training
  sets them aside).

  Raises:
    FileNotFoundError: no checkpoint, or none that reads (each named with its error).
    ConfigError: from ``read``, raised at once: the saved config is at fault, not damage.
  """
  candidates = [step] if step is not None else sorted(ckpt.manager.all_steps(), reverse=True)
  if not candidates:
    raise FileNotFoundError(f"no checkpoint in {ckpt.directory}")
  skipped = {}
  for candidate in candidates:
    try:
      result = read(candidate)
    except config_lib.ConfigError:
      raise
    except Exception as e:  # noqa: BLE001 - Orbax raises many types for a bad checkpoint.
      skipped[candidate] = describe(e)
      continue
    if skipped:
      log.warning("damaged checkpoints skipped: %s; using step %d", skipped, candidate)
    return candidate, result, skipped
  if len(candidates) == 1:
    only = candidates[0]
    raise FileNotFoundError(
      f"checkpoint {only} in {ckpt.directory} cannot be read: {skipped[only]}"
    )
  raise FileNotFoundError(f"no checkpoint in {ckpt.directory} can be read: {skipped}")


class WorkdirInUseError(RuntimeError):
  """Another run holds the workdir."""


class WorkdirLock:
  """An exclusive lock on a local workdir, held while a run trains in it.

  ``<workdir>/.lock`` names the holder (pid and host). The lock is an
  ``flock``: the kernel drops it when its process dies, so a stale lock is
  taken over without a step. Only process 0 of a job takes it; object stores
  (``gs://``) have no such lock and are not locked.
  """

  def __init__(self, workdir: epath.Path):
    self.path = workdir / ".lock"
    self._file = None

  def __enter__(self):
    if jax.process_index() != 0 or "://" in os.fspath(self.path):
      return self
    self.path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(os.fspath(self.path), "a+")  # noqa: SIM115 - held until __exit__.
    try:
      fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      handle.seek(0)
      holder = handle.read().strip() or "another process"
      handle.close()
      raise WorkdirInUseError(
        f"--workdir={self.path.parent} is in use by {holder}; stop that run or use another workdir"
      ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} on host {socket.gethostname()}\n")
    handle.flush()
    self._file = handle
    return self

  def __exit__(self, *exc):
    if self._file is not None:
      fcntl.flock(self._file, fcntl.LOCK_UN)
      self._file.close()
      self._file = None


def check_workdir(workdir: epath.Path) -> None:
  """Refuses a workdir that is a file or cannot be written, before any work."""
  if "://" in os.fspath(workdir):
    return
  if workdir.exists() and not workdir.is_dir():
    raise NotADirectoryError(f"--workdir={workdir} is a file; give a directory")
  try:
    workdir.mkdir(parents=True, exist_ok=True)
    probe = workdir / f".write-test-{os.getpid()}"
    probe.write_text("")
    probe.unlink()
  except OSError as e:
    raise PermissionError(f"--workdir={workdir}: cannot write there ({e.strerror or e})") from e


# How a full disk (or quota) reads in Python's, TensorStore's and TensorFlow's errors. Not
# RESOURCE_EXHAUSTED alone: XLA reports an accelerator out of memory with it too.
_DISK_FULL = (os.strerror(errno.ENOSPC), os.strerror(errno.EDQUOT))


def is_disk_full(error: BaseException | None) -> bool:
  """Whether ``error``, or an error it was raised from or while handling, is a full disk.

  Orbax re-raises TensorStore's failure as ``ValueError("RESOURCE_EXHAUSTED: ...
  No space left on device ...")``, from its background thread at the next save
  or wait; TensorFlow's event writer raises ``ResourceExhaustedError``; a plain
  write ``OSError(ENOSPC)``.
  """
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if getattr(error, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
      return True
    if any(text in str(error) for text in _DISK_FULL):
      return True
    error = error.__cause__ or error.__context__
  return False


class DiskFullError(RuntimeError):
  """A write failed for want of space; the message says what is intact and how to go on."""

  def __init__(self, path, lost: str, kept: int | None):
    then = (
      f"the previous checkpoint (step {kept}) is intact; free space and rerun the same command "
      "to resume from it"
      if kept is not None
      else "no checkpoint was complete before it; free space and rerun the same command"
    )
    super().__init__(f"the disk holding {path} is full: {lost} could not be written; {then}")


def latest_complete_step(directory: epath.Path) -> int | None:
  """The newest checkpoint Orbax finalized in ``directory`` (one whose write failed never is)."""
  if not directory.exists():
    return None
  return max(ocp.path.step.checkpoint_steps(directory), default=None)


class CheckpointMismatchError(RuntimeError):
  """A checkpoint's state does not fit the current config."""


class Checkpointer:
  """Saves and restores ``(state, data iterator state, config)`` together.

  Checkpoints are written asynchronously; Orbax commits each one atomically
  (a temporary directory renamed when complete), so a run killed mid-write
  resumes from the last complete checkpoint.

  Args:
    directory: where checkpoints live (``workdir/checkpoints``).
    keep: number of most recent checkpoints to keep.
    async_save: write in a background thread.
  """

  def __init__(self, directory: str | os.PathLike, keep: int = 3, async_save: bool = True):
    self.directory = as_path(directory)
    options = ocp.CheckpointManagerOptions(
      max_to_keep=keep, create=True, enable_async_checkpointing=async_save
    )
    self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=ITEMS)
    self._pending = None  # The step handed to Orbax whose write is not known to be complete.

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(
    self, step: int, state: Any, data_state: dict, config: ml_collections.ConfigDict
  ) -> None:
    self.wait()  # A failed write of the step before is reported as that step's, not this one's.
    if jax.process_count() == 1:
      # One process holds every replica: hand Orbax host copies. Given replicated
      # device arrays it would slice each into per-replica parts for parallel
      # writers, compiling a slice program per shape (seconds per save).
      state = jax.device_get(state)
    self._pending = step
    with self._reporting_full_disk():
      self.manager.save(
        step,
        args=ocp.args.Composite(
          state=ocp.args.StandardSave(state),
          data=ocp.args.JsonSave(data_state),
          config=ocp.args.JsonSave(json.loads(config.to_json_best_effort())),
        ),
      )

  def restore(self, abstract_state: Any, step: int | None = None, sharding=None):
    """Restores ``(state, data_state, config_dict)`` at ``step`` (default latest).

    Args:
      abstract_state: a pytree with the structure, shapes and dtypes of the
        state (e.g. from ``jax.eval_shape``).
      step: checkpoint step; the latest when None.
      sharding: where every restored array goes (the current mesh's replicated
        sharding). Given, a checkpoint written by any number of processes and
        devices restores on this layout; None restores host arrays.
    """
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")

    def target_of(leaf):
      return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding)

    target = jax.tree.map(target_of, abstract_state)
    restored = self.manager.restore(
      step,
      args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target),
        data=ocp.args.JsonRestore(),
        config=ocp.args.JsonRestore(),
      ),
    )
    check_shapes(target, restored.state, f"checkpoint {step}")
    return restored.state, restored.data, restored.config

  def restore_config(self, step: int | None = None) -> ml_collections.ConfigDict:
    """The config a checkpoint was saved with (fields added since then at their defaults)."""
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    restored = self.manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
    return config_lib.complete(restored.config)

  def set_aside(self, steps) -> None:
    """Renames checkpoints ``steps`` to ``<step>.damaged`` so that training can save those steps again.

    Process 0 renames; every process then waits for it and rereads the directory.
    """
    if jax.process_index() == 0:
      for step in steps:
        source = self.directory / str(step)
        if source.exists():
          target = self.directory / f"{step}.damaged"
          while target.exists():
            target = target.parent / (target.name + "_")
          source.rename(target)
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices("genjax_set_aside_damaged_checkpoints")
    self.manager.reload()

  def wait(self) -> None:
    with self._reporting_full_disk():
      self.manager.wait_until_finished()
    self._pending = None

  @contextlib.contextmanager
  def _reporting_full_disk(self):
    """Turns Orbax's report of a full disk, from any of its threads, into a DiskFullError."""
    try:
      yield
    except Exception as e:
      if not is_disk_full(e):
        raise
      step, self._pending = self._pending, None
      kept = latest_complete_step(self.directory)
      raise DiskFullError(self.directory, f"the checkpoint of step {step}", kept) from e

  def close(self) -> None:
    self.manager.close()


def check_shapes(target: Any, restored: Any, source) -> None:
  """Host-saved arrays restore at their saved shapes: compare with the model's.

  Raises:
    ValueError: naming ``source`` (a step or file) and the first mismatches.
  """
  bad = []

  def check(path, want, got):
    if tuple(want.shape) != tuple(got.shape) or want.dtype != got.dtype:
      bad.append(
        f"{jax.tree_util.keystr(path)}: saved {got.dtype}{list(got.shape)}, "
        f"model {want.dtype}{list(want.shape)}"
      )

  jax.tree_util.tree_map_with_path(check, target, restored)
  if bad:
    raise ValueError(f"{source} does not match the model: " + "; ".join(bad[:5]))

"""Metric writers: TensorBoard, ``metrics.jsonl`` and the console."""

import functools
import importlib.util
import io
import json
import logging
import math
import os
import sys
import time
import types
from typing import Any, Mapping

import jax
import numpy as np
import PIL.Image
import tqdm
from etils import epath

from genjax.run import checkpoint


class JsonlWriter:
  """Appends one JSON object per ``write_scalars`` call to a file.

  Each line is ``{"step": int, "<prefix>/<name>": float, ...}``; non-finite
  values are written as ``null`` so every line is valid JSON.
  """

  def __init__(self, path: str | os.PathLike):
    self.path = epath.Path(path)
    self.path.parent.mkdir(parents=True, exist_ok=True)
    # Object stores (gs://) cannot append: the file is rewritten whole there.
    self._append = "://" not in os.fspath(path)

  def truncate_after(self, step: int) -> None:
    """Drops records after ``step`` (a resumed run replays those steps).

    A line cut short by a kill while it was written is dropped too: its step
    is replayed.
    """
    if not self.path.exists():
      return
    kept = [line for line in self.path.read_text().splitlines() if _step(line, step) <= step]
    self.path.write_text("".join(line + "\n" for line in kept))

  def write_scalars(self, step: int, scalars: Mapping[str, Any]):
    record = {"step": int(step)}
    for name, value in scalars.items():
      value = float(np.asarray(value))
      record[name] = value if math.isfinite(value) else None
    line = json.dumps(record) + "\n"
    if self._append:
      with self.path.open("a") as f:
        f.write(line)
    else:
      self.path.write_text((self.path.read_text() if self.path.exists() else "") + line)

  def write_images(self, step, images):
    pass

  def flush(self):
    pass

  def close(self):
    pass


class TensorBoardWriter:
  """Scalars and images as TensorBoard event files, through TensorBoard's own writer.

  TensorBoard's event writer and protos need no TensorFlow (``tf.summary``, which
  CLU's writer uses, does), so training installs without it.
  """

  def __init__(self, logdir: str | os.PathLike):
    from tensorboard.summary.writer import event_file_writer  # pylint: disable=g-import-not-at-top

    # TensorBoard's file layer is TensorFlow's gfile where TensorFlow is importable
    # (seconds of start-up and log noise for nothing) and its own otherwise (local,
    # S3, and any fsspec protocol such as gs:// with gcsfs). This module, when present,
    # is how TensorBoard is told to use its own.
    sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))
    self._events = event_file_writer.EventFileWriter(os.fspath(logdir))

  def _write(self, step: int, values: list) -> None:
    from tensorboard.compat.proto import event_pb2, summary_pb2  # pylint: disable=g-import-not-at-top

    summary = summary_pb2.Summary(value=values)
    self._events.add_event(event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))

  def write_scalars(self, step: int, scalars: Mapping[str, Any]):
    from tensorboard.compat.proto import summary_pb2  # pylint: disable=g-import-not-at-top

    values = [
      summary_pb2.Summary.Value(tag=name, simple_value=float(np.asarray(value)))
      for name, value in scalars.items()
    ]
    self._write(step, values)

  def write_images(self, step: int, images: Mapping[str, Any]):
    """Writes each ``[H, W, C]`` or ``[1, H, W, C]`` image (floats in [0, 1] or uint8) as a PNG."""
    from tensorboard.compat.proto import summary_pb2  # pylint: disable=g-import-not-at-top

    values = []
    for name, image in images.items():
      pixels = np.asarray(image)
      pixels = pixels[0] if pixels.ndim == 4 else pixels
      if pixels.dtype != np.uint8:
        pixels = np.round(np.clip(pixels, 0.0, 1.0) * 255.0).astype(np.uint8)
      height, width, channels = pixels.shape
      png = io.BytesIO()
      PIL.Image.fromarray(pixels[..., 0] if channels == 1 else pixels).save(png, format="PNG")
      encoded = summary_pb2.Summary.Image(
        height=height, width=width, colorspace=channels, encoded_image_string=png.getvalue()
      )
      values.append(summary_pb2.Summary.Value(tag=name, image=encoded))
    self._write(step, values)

  def flush(self):
    self._events.flush()

  def close(self):
    self._events.close()


class MultiWriter:
  """Every call to each of ``writers``, in order."""

  def __init__(self, writers: list):
    self._writers = writers

  def __getattr__(self, name: str):
    def fan_out(*args, **kwargs):
      for writer in self._writers:
        getattr(writer, name)(*args, **kwargs)

    return fan_out


class NullWriter:
  """The writer of every process but the first: one process writes a run's files."""

  def __getattr__(self, name: str):
    return lambda *args, **kwargs: None


def _step(line: str, default: int) -> int:
  """The step of a record; a partial or empty line counts as after ``default``."""
  try:
    return int(json.loads(line)["step"])
  except (ValueError, KeyError, TypeError):
    return default + 1


def records_at(path: str | os.PathLike, step: int) -> dict[str, Any]:
  """Every value ``path`` (a metrics.jsonl) holds at ``step``, later records winning."""
  path = epath.Path(path)
  out = {}
  if path.exists():
    for line in path.read_text().splitlines():
      if _step(line, step) == step:
        out.update(json.loads(line))
  return out


def has_record(path: str | os.PathLike, step: int, prefix: str) -> bool:
  """Whether ``path`` (a metrics.jsonl) holds a value named ``<prefix>...`` at ``step``."""
  if jax.process_index() != 0:
    return False
  return any(k.startswith(prefix) for k in records_at(path, step))


def create_writer(workdir: str | os.PathLike, resume_step: int | None = 0):
  """TensorBoard events + ``metrics.jsonl`` on process 0 (logging elsewhere).

  Args:
    workdir: run directory; events go to ``workdir/tensorboard``.
    resume_step: records after this step are dropped from ``metrics.jsonl``
      (None keeps every record: appending evaluations to a finished run).
  """
  workdir = epath.Path(workdir)
  if jax.process_index() != 0:
    return NullWriter()
  jsonl = JsonlWriter(workdir / "metrics.jsonl")
  if resume_step is not None:
    jsonl.truncate_after(resume_step)
  return MultiWriter([TensorBoardWriter(workdir / "tensorboard"), jsonl])


def interactive() -> bool:
  """A terminal, or a notebook that draws widgets: where a live progress bar can be drawn.

  A notebook without ipywidgets would get every redraw of a text bar as a new
  line of output; it gets the progress lines instead.
  """
  if sys.stderr.isatty():
    return True
  shell = sys.modules.get("IPython") and sys.modules["IPython"].get_ipython()
  in_kernel = bool(shell) and "IPKernelApp" in shell.config
  return in_kernel and importlib.util.find_spec("ipywidgets") is not None


def progress_bar(iterable=None, **kwargs):
  """tqdm's bar: its notebook widget in a notebook that has ipywidgets, else the text bar."""
  if sys.stderr.isatty() or not interactive():
    return tqdm.tqdm(iterable, **kwargs)
  from tqdm import notebook  # pylint: disable=g-import-not-at-top

  return notebook.tqdm(iterable, **kwargs)


def configure_logging() -> None:
  """genjax's own messages at INFO; library chatter (TensorFlow, Orbax, absl) at WARNING.

  Call it first: it must precede the libraries it quiets, and it touches no
  device, so ``jax.distributed.initialize`` can still follow.
  """
  from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top

  absl_logging.set_verbosity(absl_logging.WARNING)
  logger = logging.getLogger("genjax")
  if not logger.handlers:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("genjax: %(message)s"))
    handler.addFilter(_one_voice)
    logger.addHandler(handler)
    logger.propagate = False
    # A full disk is reported once, by genjax (checkpoint.DiskFullError), not also by
    # every Orbax thread and asyncio future that saw it, each with a traceback.
    for name in ("absl", "asyncio"):
      logging.getLogger(name).addFilter(_not_disk_full)
    logging.getLogger("absl").addFilter(_not_tfds_chatter)
    sys.unraisablehook = functools.partial(_unraisable, sys.unraisablehook)
  logger.setLevel(logging.INFO)


# Warnings tfds gives in normal use: it decodes with PIL where OpenCV is missing, and
# an unprepared dataset has no dataset_info.json yet.
_TFDS_CHATTER = ("OpenCV is not installed", "Variant folder %s has no %s")


def _not_tfds_chatter(record: logging.LogRecord) -> bool:
  return not str(record.msg).startswith(_TFDS_CHATTER)


def _one_voice(record: logging.LogRecord) -> bool:
  """One voice per job: the other processes of a multi-host run report only problems."""
  return record.levelno >= logging.WARNING or jax.process_index() == 0


def _not_disk_full(record: logging.LogRecord) -> bool:
  error = record.exc_info[1] if record.exc_info else None
  return not (checkpoint.is_disk_full(error) or checkpoint.is_disk_full(Exception(record.msg)))


def _unraisable(previous, unraisable) -> None:
  # TensorStore finishing an operation after Orbax closed the event loop of a save or
  # restore that failed: the failure itself is reported (a save) or handled (a restore
  # falls back to the checkpoint before).
  error = unraisable.exc_value
  if not (isinstance(error, RuntimeError) and str(error) == "Event loop is closed"):
    previous(unraisable)

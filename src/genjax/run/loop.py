"""``train_and_evaluate``: the one training loop every family runs through.

Everything impure lives here: devices, files, time. The loop builds the
family from the config, restores the latest checkpoint in ``workdir`` if there
is one (state, EMA, optimizer and data position), and then runs the compiled
data-parallel step, logging, evaluating, drawing and checkpointing on a
schedule. Killing it at any point and starting it again with the same
arguments gives bit-identical parameters to an uninterrupted run.
"""

import functools
import json
import logging
import os
import signal
import time
import warnings

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm
from etils import epath
from jax.experimental import multihost_utils

# tqdm.contrib imports tqdm.auto, which warns in a notebook without ipywidgets;
# genjax's bars come from writers.progress_bar, which picks the kind that draws.
with warnings.catch_warnings():
  warnings.simplefilter("ignore", tqdm.TqdmWarning)
  from tqdm.contrib.logging import logging_redirect_tqdm

from genjax import config as config_lib
from genjax.core.train_state import TrainState, num_params
from genjax.run import checkpoint as checkpoint_lib
from genjax.run import compile_cache, evaluation, trained, writers
from genjax.run.experiment import Experiment, build

log = logging.getLogger("genjax")


class _Preemption:
  """SIGTERM or SIGINT: every process checkpoints the same step, then the run exits.

  One process: the signal sets a flag, read at the next step boundary (a
  second SIGINT interrupts at once). Several processes: JAX's preemption
  service (started by ``jax.distributed.initialize``) hears SIGTERM in any
  process and agrees with the others on the first step they all reach;
  SIGINT is turned into SIGTERM for it. A per-process flag would let one
  process stop while the others wait in the next step's collective.
  """

  def __init__(self):
    self.multihost = jax.process_count() > 1
    self._flag = False
    self._previous = {}

  def __enter__(self):
    handlers = {signal.SIGINT: self._on_sigint}
    if not self.multihost:  # Several processes: SIGTERM stays with JAX's notifier.
      handlers[signal.SIGTERM] = self._on_sigterm
    for signum, handler in handlers.items():
      try:
        self._previous[signum] = signal.signal(signum, handler)
      except ValueError:  # Not the main thread (e.g. some notebook kernels).
        pass
    return self

  def _on_sigterm(self, signum, frame):
    del signum, frame
    self._flag = True

  def _on_sigint(self, signum, frame):
    if self.multihost:
      os.kill(os.getpid(), signal.SIGTERM)
    elif self._flag:
      raise KeyboardInterrupt
    self._on_sigterm(signum, frame)

  def requested(self, call: int) -> bool:
    """Whether the run checkpoints and stops after ``call`` (asked after every call, everywhere).

    ``call`` counts the compiled calls, one by one: JAX's sync point is the
    first id after the largest any process has reached, which a count of steps
    would skip when a call runs several.
    """
    if self.multihost:
      return multihost_utils.reached_preemption_sync_point(call)
    return self._flag

  def __exit__(self, *exc):
    for signum, previous in self._previous.items():
      signal.signal(signum, previous)


def _mean_metrics(history: list[dict[str, jax.Array]]) -> dict[str, float]:
  """Each metric's mean over the steps of ``history`` (scalars, or [k] from a k-step call)."""
  stacked = jax.device_get(history)
  return {
    f"train/{k}": float(np.mean(np.concatenate([np.ravel(h[k]) for h in stacked])))
    for k in stacked[0]
  }


@jax.jit
def _copy(tree):
  return jax.tree.map(jnp.copy, tree)


@functools.partial(jax.jit, static_argnums=2)
def _norms(previous, params, players: tuple) -> dict[str, jax.Array]:
  """Global norms of the parameters and of the last update, per player where there are several.

  Computed beside the step, not in it, so that logging them leaves the step's
  compiled program, and so its rounding, unchanged.
  """
  parts = {p: (previous[p], params[p]) for p in players} or {None: (previous, params)}
  out = {}
  for player, (old, new) in parts.items():
    prefix = f"{player}_" if player else ""
    out[prefix + "param_norm"] = optax.tree.norm(new)
    out[prefix + "update_norm"] = optax.tree.norm(jax.tree.map(jnp.subtract, new, old))
  return out


@jax.jit
def _all_finite(tree) -> jax.Array:
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


class _Run:
  """The impure resources of one training run and what it does at each step."""

  def __init__(self, exp: Experiment, workdir: epath.Path):
    self.exp, self.workdir = exp, workdir
    cfg, tc = exp.config, exp.config.train
    self.ckpt = checkpoint_lib.Checkpointer(
      workdir / "checkpoints", keep=tc.keep_checkpoints, async_save=tc.async_checkpoint
    )
    self.data = exp.train_iterator()
    self.start, state, data_state = _resume(exp, self.ckpt)
    if self.start > tc.num_steps:
      raise config_lib.ConfigError(
        f"config.train.num_steps={tc.num_steps}: {workdir} already holds step {self.start}; "
        "raise num_steps to train on, or use genjax.evaluate to score it"
      )
    if self.start:
      self.data.set_state(data_state)
    else:
      state = exp.init_state()
    log.info(
      "%s: %s parameters, %d devices (%s), start at step %d of %d",
      cfg.family,
      f"{num_params(state.params):,}",
      exp.parallel.num_devices,
      tc.parallel,
      self.start,
      tc.num_steps,
    )
    _write_config(workdir, cfg)
    if jax.process_index() == 0:
      trained.write_data_info(workdir, exp.family.data)
    if exp.samples:  # Feature nets and real-data floors up front, not mid-run.
      show = tc.progress_bar and writers.interactive()
      exp.samples.prepare([cfg.eval.periodic_sample_examples], progress=show)
    self.writer = writers.create_writer(workdir, resume_step=self.start)
    self.state = exp.parallel.put_replicated(state)  # device-resident from here on
    self.last_saved = self.start
    self.history, self.summary = [], {}
    self._last_log = (self.start, time.perf_counter())
    self._norms = None

  def logs_at(self, step: int) -> bool:
    """Whether ``step`` is logged (the rule of the log action)."""
    tc = self.exp.config.train
    return step % tc.log_every == 0 or step == tc.num_steps

  def step(self, step: int, train_step, batch) -> None:
    """Runs the call ending at ``step``; before a logged one, keeps what its update norm needs."""
    logged = self.logs_at(step)
    previous = _copy(self.state.params) if logged else None
    self.state, metrics = train_step(self.state, batch)
    self.history.append(metrics)  # Emptied (and synced) at every log.
    if logged:
      get = self.exp.parallel.get_replicated
      self._norms = _norms(get(previous), get(self.state.params), self._players())

  def _players(self) -> tuple:
    names = tuple(self.exp.family.optimizers())
    return () if names == (None,) else names

  def host_state(self) -> TrainState:
    return self.exp.parallel.get_replicated(self.state)

  def log(self, step: int) -> None:
    """Averages the metrics since the last log (one device sync) and writes them."""
    summary = _mean_metrics(self.exp.parallel.get_replicated(self.history))
    summary.update({f"train/{k}": float(v) for k, v in jax.device_get(self._norms or {}).items()})
    self.history, self._norms = [], None
    rate = (step - self._last_log[0]) / (time.perf_counter() - self._last_log[1])
    self._last_log = (step, time.perf_counter())
    summary["train/steps_per_sec"] = rate
    summary["train/examples_per_sec"] = rate * self.exp.config.train.batch_size
    bad = [k for k, v in summary.items() if not np.isfinite(v)]
    if bad:
      raise FloatingPointError(self._nonfinite(step) + f" Non-finite: {', '.join(bad)}.")
    self.writer.write_scalars(step, summary)
    self.summary = summary

  def evaluate(self, step: int, record: bool = True) -> dict[str, float]:
    """Periodic evaluation and pictures with the current (EMA) parameters.

    ``record=False`` (a finished run started again) only returns the metrics,
    so ``metrics.jsonl`` keeps one record per step.
    """
    state = self.host_state()
    metrics = evaluation.periodic(self.exp, state, self.workdir / "images")
    writer = self.writer if record else None
    if record:
      self.writer.write_scalars(step, metrics)
    evaluation.save_pictures(
      self.exp, evaluation.eval_params(self.exp, state), self.workdir, step, writer
    )
    log.info("step %d: %s; pictures in %s", step, brief(metrics), self.workdir / "images")
    return metrics

  def checkpoint(self, step: int) -> None:
    """Saves asynchronously, refusing to overwrite good state with NaNs."""
    state = self.host_state()
    if not bool(_all_finite(state.params)):
      raise FloatingPointError(self._nonfinite(step))
    self.ckpt.save(step, state, self.data.get_state(), self.exp.config)
    self.last_saved = step

  def _nonfinite(self, step: int) -> str:
    kept = (
      f"the last good checkpoint (step {self.last_saved}) in {self.workdir / 'checkpoints'} is kept"
      if self.last_saved
      else f"there is no last good checkpoint (none was written before step {step})"
    )
    rates = " or ".join(f"config.{f}" for f in self.exp.family.learning_rate_fields)
    return (
      f"non-finite values at step {step}; {kept}. Lower {rates} "
      "or set config.optimizer.grad_clip_norm."
    )

  def close(self) -> None:
    self.data.close()  # Stops the data's worker processes, if any.
    self.ckpt.wait()  # A failing run still leaves its last checkpoint complete.
    self.ckpt.close()


# Evaluation metrics shown on the console; every one goes to metrics.jsonl and TensorBoard.
_HEADLINES = 6
_FIRST = ("nll", "bits_per", "fid", "kid", "precision", "recall", "mode", "elbo", "loss")


def brief(metrics: dict[str, float]) -> str:
  """``nll 86.04, fid_lenet 3.1 [0.4], ...``: the first few metrics, floors in brackets."""
  names = sorted(
    (k for k in metrics if not k.endswith(("_floor", "_std")) and "num_" not in k),
    key=lambda k: (next((i for i, t in enumerate(_FIRST) if t in k), len(_FIRST)), k),
  )
  shown = []
  for k in names[:_HEADLINES]:
    floor = metrics.get(f"{k}_floor")
    shown.append(
      f"{k.split('/')[-1]} {metrics[k]:.4g}" + (f" [{floor:.3g}]" if floor is not None else "")
    )
  more = len(names) - len(shown)
  return ", ".join(shown) + (f" (+{more} in metrics.jsonl)" if more > 0 else "")


def _progress_line(step: int, total: int, summary: dict[str, float]) -> str:
  """The log line that stands in for the progress bar where there is no terminal."""
  rate = summary["train/steps_per_sec"]
  eta = (total - step) / rate if rate > 0 else float("inf")
  eta_text = time.strftime("%H:%M:%S", time.gmtime(eta)) if np.isfinite(eta) else "?"
  return (
    f"step {step}/{total} ({100 * step / total:.0f}%): loss {summary['train/loss']:.4g}, "
    f"{rate:.3g} steps/s, ETA {eta_text}"
  )


# Calls (of one or up to train.steps_per_call steps) dispatched ahead of the device.
# Two keep an accelerator fed while the host prepares the next batch; an unbounded
# queue is worse than useless: with several CPU devices
# (``--xla_force_host_platform_device_count``) XLA's CPU client can deadlock a
# collective when hundreds of steps are queued (every launch thread blocks in a
# rendezvous that a queued launch would complete).
_MAX_STEPS_IN_FLIGHT = 2


class _Every:
  """Calls ``fn(step)`` at multiples of ``every`` (if given) and at the steps in ``on``."""

  def __init__(self, fn, every: int | None = None, on=()):
    self.fn, self.every, self.on = fn, every, frozenset(on)

  def fires(self, step: int) -> bool:
    return bool(self.every and step % self.every == 0) or step in self.on

  def __call__(self, step: int) -> None:
    if self.fires(step):
      self.fn(step)

  def close(self) -> None:
    pass


class _Profile:
  """A trace of the ``num_steps`` steps after ``first`` in ``logdir`` (TensorBoard's profile tab)."""

  def __init__(self, logdir, first: int, num_steps: int):
    self.logdir, self.first, self.last = os.fspath(logdir), first, first + num_steps
    self.tracing = False

  def fires(self, step: int) -> bool:
    return step in (self.first, self.last)

  def __call__(self, step: int) -> None:
    if step == self.first:
      jax.profiler.start_trace(self.logdir)
      self.tracing = True
    elif step == self.last:
      self.close()

  def close(self) -> None:
    if self.tracing:
      self.tracing = False
      jax.profiler.stop_trace()


def _periodic_actions(run: "_Run", tc, bar) -> list:
  """What happens between steps, in this order: log, evaluate, checkpoint (and profile).

  The last step is always logged and checkpointed; its evaluation runs after
  the loop, on the checkpointed state.
  """
  last = tc.num_steps

  def log_metrics(step):
    run.log(step)
    bar.set_postfix(loss=f"{run.summary['train/loss']:.4g}")
    if bar.disable:  # No terminal (a file, a pipe, a batch job): a line instead of the bar.
      log.info(_progress_line(step, last, run.summary))

  def evaluate(step):
    bar.set_postfix_str("evaluating...", refresh=True)  # Else the bar looks frozen.
    run.evaluate(step)

  evals = range(tc.eval_every, last, tc.eval_every) if tc.eval_every else ()
  actions = [
    _Every(log_metrics, every=tc.log_every, on=[last]),
    _Every(evaluate, on=evals),
    _Every(run.checkpoint, every=tc.checkpoint_every, on=[last]),
  ]
  if tc.profile_steps and jax.process_index() == 0:
    # After the first log, so the trace shows steady-state steps, not compilation;
    # TensorBoard's profile tab reads it from the run's event directory.
    first = (run.start // tc.log_every + 1) * tc.log_every
    actions.append(_Profile(run.workdir / "tensorboard", first, tc.profile_steps))
  return actions


def train_and_evaluate(
  config: ml_collections.ConfigDict, workdir: str | os.PathLike
) -> dict[str, float]:
  """Trains ``config`` in ``workdir``, resuming from its latest checkpoint.

  Args:
    config: experiment config (validated here first).
    workdir: run directory for checkpoints, metrics, TensorBoard and images.

  Returns:
    The last logged train metrics and the final evaluation metrics.

  Raises:
    checkpoint_lib.DiskFullError: a write failed for want of space. The
      message names the checkpoint left intact; the same call resumes from it
      once there is space.
  """
  writers.configure_logging()  # Messages in a notebook too, where no entry point set it up.
  workdir = checkpoint_lib.as_path(workdir)
  try:
    checkpoint_lib.check_workdir(workdir)
    compile_cache.enable(config.train.compilation_cache_dir)  # Before anything compiles.
    with checkpoint_lib.WorkdirLock(workdir):  # One run per workdir.
      return _train(build(config), workdir)
  except checkpoint_lib.DiskFullError:
    raise
  except Exception as e:
    if not checkpoint_lib.is_disk_full(e):
      raise
    kept = checkpoint_lib.latest_complete_step(workdir / "checkpoints")
    raise checkpoint_lib.DiskFullError(workdir, "metrics, events or pictures", kept) from e


def _call_length(step: int, k: int, last: int, actions, logs_at) -> int:
  """How many steps (at most k) the call starting at ``step`` runs.

  A call ends at the first step where an action fires (actions see the state
  between calls) or at ``last``, and a call of several steps does not end at a
  logged step, whose update norm needs the parameters of the step before. The
  length depends on ``step`` alone, so a run resumed after any call makes the
  same calls as an uninterrupted one; the few lengths in a periodic schedule
  each compile once.
  """
  n = 1
  while n < k and step + n - 1 < last and not any(a.fires(step + n - 1) for a in actions):
    n += 1
  return n - 1 if n > 1 and logs_at(step + n - 1) else n


def _next_batches(data, n: int):
  """The next ``n`` batches, stacked along axis 1 when n > 1 (``scan_steps``' layout)."""
  if n == 1:
    return next(data)
  batches = [next(data) for _ in range(n)]
  return jax.tree.map(lambda *xs: np.stack(xs, axis=1), *batches)


def _train(exp: Experiment, workdir: epath.Path) -> dict[str, float]:
  run = _Run(exp, workdir)
  tc = exp.config.train
  calls = {}  # Compiled on first use, one per call length.
  show = tc.progress_bar and writers.interactive()
  bar = writers.progress_bar(
    total=tc.num_steps,
    initial=run.start,
    desc=exp.config.family,
    unit="step",
    disable=not show,
    dynamic_ncols=True,
  )
  actions = []
  try:
    # Log lines go through tqdm so they do not break the progress bar.
    with _Preemption() as preemption, logging_redirect_tqdm(loggers=[log]):
      actions = _periodic_actions(run, tc, bar)
      step = call = run.start
      while step < tc.num_steps:
        call += 1
        n = _call_length(step + 1, tc.steps_per_call, tc.num_steps, actions, run.logs_at)
        if n not in calls:
          calls[n] = exp.compile_train_step(n)
        step += n
        run.step(step, calls[n], exp.parallel.put_batch(_next_batches(run.data, n)))
        if len(run.history) > _MAX_STEPS_IN_FLIGHT:
          jax.block_until_ready(run.history[-_MAX_STEPS_IN_FLIGHT - 1])
        bar.update(n)
        for action in actions:
          action(step)
        if preemption.requested(call):
          if run.last_saved != step:
            run.checkpoint(step)
          log.warning("stop requested: saved step %d in %s; rerun to resume", step, workdir)
          break
  finally:
    for action in actions:
      action.close()
    bar.close()
    run.close()
  summary = dict(run.summary)
  if run.last_saved == tc.num_steps:
    # Under the signal handlers, so SIGTERM lets the evaluation finish instead of killing
    # it; after a kill here, the restart evaluates again and records what was missing.
    recorded = writers.has_record(run.workdir / "metrics.jsonl", tc.num_steps, "eval/")
    if jax.process_count() > 1:  # Process 0 keeps the log: every process follows its answer.
      recorded = bool(multihost_utils.broadcast_one_to_all(np.int32(recorded)))
    if run.start == tc.num_steps and recorded:  # Started again after it finished.
      log.info(
        "already finished at step %d; its metrics are in %s (genjax.evaluate scores it again)",
        tc.num_steps,
        run.workdir / "metrics.jsonl",
      )
      summary = writers.records_at(run.workdir / "metrics.jsonl", tc.num_steps)
      summary.pop("step", None)
    else:
      with _Preemption():
        summary.update(run.evaluate(tc.num_steps, record=run.start < tc.num_steps or not recorded))
  run.writer.flush()
  run.writer.close()
  return summary


def _resume(exp: Experiment, ckpt: checkpoint_lib.Checkpointer):
  """``(step, state, data_state)`` of the newest checkpoint that restores; ``(0, None, None)``.

  A damaged checkpoint (cut short, emptied, garbage in its metadata, an item
  missing) does not block the run: it is set aside as ``<step>.damaged`` and
  the one before it is used. When none restores and the newest was saved with
  other config fields, the run stops and names them: that is another
  experiment, not damage.
  """
  failures = []
  for step in sorted(ckpt.manager.all_steps(), reverse=True):
    try:
      state, data_state, _ = ckpt.restore(exp.abstract_state(), step, exp.parallel.replicated)
    except Exception as e:  # noqa: BLE001 - Orbax raises many types for a bad checkpoint.
      failures.append((step, e))
      continue
    _set_aside(ckpt, failures, f"resuming from step {step}")
    return step, state, data_state
  if not failures:
    return 0, None, None
  newest, error = failures[0]
  changed = _changed_fields(exp, ckpt, newest)
  if changed:
    raise checkpoint_lib.CheckpointMismatchError(
      f"cannot restore checkpoint {newest} in {ckpt.directory} with this config "
      f"({checkpoint_lib.describe(error)}); fields that differ from the saved config: {changed}. "
      "Use a fresh --workdir or the saved config."
    ) from error
  _set_aside(ckpt, failures, "starting from step 0")
  return 0, None, None


def _set_aside(ckpt: checkpoint_lib.Checkpointer, failures, outcome: str) -> None:
  if not failures:
    return
  causes = "; ".join(f"step {step}: {checkpoint_lib.describe(e)}" for step, e in failures)
  ckpt.set_aside([step for step, _ in failures])
  log.warning(
    "damaged checkpoints in %s set aside as <step>.damaged (%s); %s",
    ckpt.directory,
    causes,
    outcome,
  )


def _changed_fields(exp: Experiment, ckpt: checkpoint_lib.Checkpointer, step: int) -> list[str]:
  """Fields in which the saved config differs from this one (none when it is unreadable)."""
  try:
    saved = ckpt.restore_config(step)
  except Exception:  # noqa: BLE001 - an unreadable config is damage, not a difference.
    return []
  return _diff(*(json.loads(c.to_json_best_effort()) for c in (saved, exp.config)))


def _diff(saved: dict, current: dict, prefix: str = "") -> list[str]:
  out = []
  for k in sorted(set(saved) | set(current)):
    a, b = saved.get(k), current.get(k)
    if isinstance(a, dict) and isinstance(b, dict):
      out += _diff(a, b, f"{prefix}{k}.")
    elif a != b:
      out.append(f"{prefix}{k}: {a!r} -> {b!r}")
  return out


def _write_config(workdir: epath.Path, cfg: ml_collections.ConfigDict) -> None:
  if jax.process_index() == 0:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.json").write_text(cfg.to_json_best_effort(indent=2) + "\n")

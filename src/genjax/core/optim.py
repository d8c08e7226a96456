"""Optimizers from config: optax chains with schedules and gradient clipping."""

import ml_collections
import optax

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULES = ("constant", "cosine", "warmup_cosine", "linear", "exponential")


def make_schedule(opt: ml_collections.ConfigDict, num_steps: int) -> optax.Schedule:
  """Learning-rate schedule named by ``opt.schedule``.

  Args:
    opt: optimizer config (``learning_rate``, ``schedule``, ``warmup_steps``,
      ``end_lr_factor``; ``decay_rate`` for "exponential").
    num_steps: total training steps; decaying schedules reach their end value
      there.

  Returns:
    An optax schedule ``step -> learning rate``.
  """
  lr = opt.learning_rate
  end = lr * opt.end_lr_factor
  warmup = opt.warmup_steps
  name = opt.schedule
  if name == "constant":
    if warmup:
      return optax.join_schedules(
        [optax.linear_schedule(0.0, lr, warmup), optax.constant_schedule(lr)], [warmup]
      )
    return optax.constant_schedule(lr)
  if name in ("cosine", "warmup_cosine"):
    return optax.warmup_cosine_decay_schedule(
      0.0 if warmup else lr, lr, warmup, max(num_steps, warmup + 1), end
    )
  if name == "linear":
    return optax.join_schedules(
      [
        optax.linear_schedule(0.0, lr, warmup),
        optax.linear_schedule(lr, end, max(num_steps - warmup, 1)),
      ],
      [warmup],
    )
  if name == "exponential":
    return optax.exponential_decay(lr, num_steps, opt.decay_rate, end_value=end if end else None)
  raise ValueError(f"config.optimizer.schedule={name!r}; allowed: {SCHEDULES}")


def make_optimizer(opt: ml_collections.ConfigDict, num_steps: int) -> optax.GradientTransformation:
  """Optax optimizer named by ``opt.name`` with optional global-norm clipping."""
  schedule = make_schedule(opt, num_steps)
  name = opt.name
  if name == "adam":
    tx = optax.adam(schedule, b1=opt.b1, b2=opt.b2, eps=opt.eps)
  elif name == "adamw":
    tx = optax.adamw(schedule, b1=opt.b1, b2=opt.b2, eps=opt.eps, weight_decay=opt.weight_decay)
  elif name == "sgd":
    tx = optax.sgd(schedule, momentum=opt.momentum or None, nesterov=opt.nesterov)
  elif name == "rmsprop":
    tx = optax.rmsprop(schedule, decay=opt.b2, eps=opt.eps, momentum=opt.momentum)
  else:
    raise ValueError(f"config.optimizer.name={name!r}; allowed: {OPTIMIZERS}")
  if opt.grad_clip_norm > 0:
    tx = optax.chain(optax.clip_by_global_norm(opt.grad_clip_norm), tx)
  return tx

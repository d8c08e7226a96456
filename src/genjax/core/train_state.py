"""The one pytree that holds everything a training run needs to continue."""

import math
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp


class TrainState(flax.struct.PyTreeNode):
  """Training state shared by every family.

  Attributes:
    step: int32 scalar, number of completed updates.
    params: model parameters; a dict keyed by network name where a family has
      several networks (GAN: ``{"generator": ..., "discriminator": ...}``).
    opt_state: optimizer state, with the same top-level structure as
      ``params`` when each network has its own optimizer.
    ema_params: debiased exponential moving average of ``params`` (used for
      evaluation and pictures, see :func:`ema_update`); equal to ``params``
      when ``ema_decay`` is 0.
    model_state: non-trainable collections such as BatchNorm statistics
      (empty dict when unused).
  """

  step: jax.Array
  params: Any
  opt_state: Any
  ema_params: Any
  model_state: Any


def ema_update(ema_params, params, decay: float, count: jax.Array):
  """Debiased exponential moving average after the ``count``-th update.

  After updates with parameters ``p_1 .. p_n`` the result is
  ``sum_i decay^(n-i) p_i / sum_i decay^(n-i)``: the same weights as
  ``decay * ema + (1 - decay) * params`` but normalised, as
  ``optax.ema(debias=True)``. The initialisation carries no weight, so an
  evaluation at step ``n < 1 / (1 - decay)`` sees trained parameters rather
  than a mixture with the random initial ones (``decay^n`` of them, 8 % at
  ``n = 2500`` for ``decay = 0.999``). Long runs are unaffected: the two
  averages differ by a factor ``1 - decay^n``.

  Args:
    ema_params: the average after ``count - 1`` updates.
    params: parameters after the ``count``-th update.
    decay: in ``[0, 1)``; 0 returns ``params``.
    count: number of updates so far, this one included (``>= 1``).
  """
  if decay == 0.0:
    return params
  log_decay = math.log(decay)
  count = jnp.asarray(count, jnp.float32)
  # (1 - decay) / (1 - decay^count), accurate for decay near 1; the first update is exact.
  rate = jnp.where(count <= 1, 1.0, jnp.expm1(log_decay) / jnp.expm1(count * log_decay))

  def mix(average, new):
    r = rate.astype(new.dtype)
    return r * new + (1 - r) * average

  return jax.tree.map(mix, ema_params, params)


def num_params(params) -> int:
  """Number of scalars in a parameter pytree."""
  return sum(int(x.size) for x in jax.tree.leaves(params))

"""The one pytree that holds everything a training run needs to continue."""

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax


class TrainState(flax.struct.PyTreeNode):
  """Training state shared by every family.

  Attributes:
    step: int32 scalar, number of completed updates.
    params: model parameters; a dict keyed by network name where a family has
      several networks (GAN: ``{"generator": ..., "discriminator": ...}``).
    opt_state: optimizer state, with the same top-level structure as
      ``params`` when each network has its own optimizer.
    ema_params: exponential moving average of ``params`` (used for evaluation
      and pictures); equal to ``params`` when ``ema_decay`` is 0.
    model_state: non-trainable collections such as BatchNorm statistics
      (empty dict when unused).
  """

  step: jax.Array
  params: Any
  opt_state: Any
  ema_params: Any
  model_state: Any

  @classmethod
  def create(cls, params, tx: optax.GradientTransformation, model_state=None):
    return cls(
      step=jnp.zeros((), jnp.int32),
      params=params,
      opt_state=tx.init(params),
      ema_params=jax.tree.map(jnp.copy, params),
      model_state={} if model_state is None else model_state,
    )


def ema_update(ema_params, params, decay: float):
  """Returns ``decay * ema + (1 - decay) * params`` (``params`` when decay is 0)."""
  if decay == 0.0:
    return params
  return optax.incremental_update(params, ema_params, step_size=1.0 - decay)


def num_params(params) -> int:
  """Number of scalars in a parameter pytree."""
  return sum(int(x.size) for x in jax.tree.leaves(params))

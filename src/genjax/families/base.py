"""What a model family is: modules + a pure objective + samplers + pictures.

The training loop only talks to :class:`Family`; it never branches on which
family it runs. A family with one network and one loss only implements
:meth:`Family.init_params`, :meth:`Family.loss_fn`, :meth:`Family.eval_fn`
and :meth:`Family.pictures`; two-player families override
:meth:`Family.train_step`.
"""

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax import lax

from genjax.core import fields, optim
from genjax.core.parallel import AXIS
from genjax.core.train_state import TrainState, ema_update
from genjax.data import sources

Metrics = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class DataInfo:
  """What a family needs to know about its data.

  Attributes:
    name: dataset name.
    kind: "image" (``x: [B, H, W, C]``) or "points" (``x: [B, 2]``).
    shape: per-example shape of ``x``.
    num_classes: number of labels (1 when the dataset has none).
    preprocess: name of the preprocessing op; fixes the data range.
    modes: ``[M, 2]`` mode centres for 2-D mixtures, else None.
    mode_std: standard deviation of each mixture component, else None.
  """

  name: str
  kind: str
  shape: tuple[int, ...]
  num_classes: int
  preprocess: str
  modes: np.ndarray | None = None
  mode_std: float | None = None

  @property
  def data_range(self) -> tuple[float, float]:
    return (-1.0, 1.0) if self.preprocess == "scale_pm1" else (0.0, 1.0)


class Family:
  """Base class: a single-objective family trained with one optimizer.

  Args:
    config: the full experiment config.
    data: facts about the dataset.
  """

  # The config sections this family owns, ``{name: {field: Field}}`` (see
  # genjax.core.fields); their defaults join every config and their rules are
  # checked when this family is chosen.
  sections: dict[str, fields.Section] = {}
  # Narrower rules for common fields, by dotted path ("model.architecture").
  narrowed: dict[str, fields.Field] = {}
  # Whether :meth:`sample` generates new data (sample-quality metrics need it).
  can_sample = False
  # Whether the model takes the label (class-conditional generation).
  conditional = False
  # Global batches consumed per step (a GAN's discriminator updates), see
  # pipeline.make_train_iterator; batches then arrive as [b, k, ...].
  minibatches = 1
  # Whether eval/nll is an estimate that depends on ``num_samples`` (False: exact).
  nll_uses_samples = True
  # The family of a trained run this one builds on (a prior over a VQ-VAE's codes), or
  # None. The run layer restores it (see :meth:`first_stage_run`) and passes
  # ``first_stage=(family, eval_variables)`` to the constructor.
  first_stage_family: str | None = None

  @classmethod
  def first_stage_run(cls, config: ml_collections.ConfigDict) -> tuple[str, int, str]:
    """``(workdir, step or 0 for the latest, config field naming it)`` of the first stage."""
    raise NotImplementedError

  def __init__(self, config: ml_collections.ConfigDict, data: DataInfo):
    self.config = config
    self.data = data
    self.ema_decay = float(config.train.ema_decay)
    self.schedule = optim.make_schedule(config.optimizer, config.train.num_steps)
    self.tx = optim.make_optimizer(config.optimizer, config.train.num_steps)

  @classmethod
  def validate(cls, config: ml_collections.ConfigDict) -> list[str]:
    """Config errors that involve several fields ("config.field=value: why").

    Single-field rules are declared in :attr:`sections` and :attr:`narrowed`.
    """
    del config
    return []

  def init_params(self, key: jax.Array, batch: dict[str, jax.Array]) -> tuple[Any, Any]:
    """Returns ``(params, model_state)`` for an example preprocessed batch."""
    raise NotImplementedError

  def init_state(self, key: jax.Array, batch: dict[str, jax.Array]) -> TrainState:
    params, model_state = self.init_params(key, batch)
    return TrainState.create(params, self.tx, model_state)

  def eval_params(self, state: TrainState) -> Any:
    """What evaluation, sampling and pictures use: EMA parameters where kept."""
    return state.ema_params if self.ema_decay > 0 else state.params

  def loss_fn(
    self, params, batch: dict[str, jax.Array], keys: jax.Array, step: jax.Array
  ) -> tuple[jax.Array, Metrics]:
    """Pure objective: ``(scalar loss to minimise, scalar metrics)``.

    Args:
      params: trainable parameters.
      batch: ``{"x": [B, ...] float, "label": [B] int32}`` on this device.
      keys: ``[B]`` per-example PRNG keys.
      step: int32 scalar, the update being computed (for annealing).
    """
    raise NotImplementedError

  def stateful_loss_fn(
    self, params, model_state, batch: dict[str, jax.Array], keys: jax.Array, step: jax.Array
  ) -> tuple[jax.Array, tuple[Metrics, Any]]:
    """:meth:`loss_fn` for models with non-trainable state (e.g. an EMA codebook).

    Returns ``(loss, (metrics, new_model_state))``; the default leaves
    ``model_state`` unchanged. Runs inside the ``data`` axis, so state updates
    can be synchronised with collectives.
    """
    loss, metrics = self.loss_fn(params, batch, keys, step)
    return loss, (metrics, model_state)

  def train_step(
    self, state: TrainState, batch: dict[str, jax.Array], keys: jax.Array
  ) -> tuple[TrainState, Metrics]:
    """One update, run per device inside the ``data`` axis.

    Gradients and metrics are averaged over devices with ``lax.pmean``, so
    every device applies the identical update to its copy of the state.
    """
    grad_fn = jax.value_and_grad(self.stateful_loss_fn, has_aux=True)
    (loss, (metrics, model_state)), grads = grad_fn(
      state.params, state.model_state, batch, keys, state.step
    )
    grads = lax.pmean(grads, AXIS)
    updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = dict(
      metrics,
      loss=loss,
      grad_norm=optax.tree.norm(grads),
      update_norm=optax.tree.norm(updates),
      param_norm=optax.tree.norm(params),
      learning_rate=self.schedule(state.step),
    )
    new_state = state.replace(
      step=state.step + 1,
      params=params,
      opt_state=opt_state,
      ema_params=ema_update(state.ema_params, params, self.ema_decay, state.step + 1),
      model_state=model_state,
    )
    return new_state, lax.pmean(metrics, AXIS)

  def eval_fn(
    self, params, batch: dict[str, jax.Array], keys: jax.Array, num_samples: int
  ) -> dict[str, jax.Array]:
    """Per-example evaluation metrics, each ``[B]`` (the runner averages).

    Args:
      params: parameters to evaluate (EMA parameters where kept).
      batch: as in :meth:`loss_fn`.
      keys: ``[B]`` per-example keys, fixed across evaluations.
      num_samples: importance samples for likelihood estimates.
    """
    raise NotImplementedError

  def summarize_eval(self, means: dict[str, np.ndarray]) -> dict[str, float]:
    """Turns test-split means of :meth:`eval_fn`'s metrics into reported scalars.

    :meth:`eval_fn` may return vector metrics ``[B, K]`` (e.g. code histograms);
    their means over the split arrive here as ``[K]`` and a family reduces
    them (e.g. to a perplexity). The default reports scalars as they are.
    """
    return {k: float(v) for k, v in means.items()}

  def sample(self, params, keys: jax.Array, labels: jax.Array) -> jax.Array:
    """Generates one example per key, in data space (the model's mean where it has one).

    Args:
      params: parameters to sample with (EMA parameters where kept).
      keys: ``[B]`` per-example keys; example ``i`` depends only on ``keys[i]``.
      labels: ``[B]`` int32 labels asked for (ignored by unconditional models).

    Returns:
      ``x: [B, *data.shape]`` in the data range.
    """
    raise NotImplementedError(f"family {self.config.family!r} does not generate samples")

  def sampler_description(self) -> str | None:
    """How ``sample`` draws, for evaluation reports (None: nothing to add)."""
    return None

  def pictures(self, params, batch: dict[str, jax.Array], key: jax.Array) -> dict[str, np.ndarray]:
    """Named picture grids ``[H, W, C]`` in [0, 1] (host side).

    Args:
      params: parameters to draw with (EMA parameters where kept).
      batch: a preprocessed batch of test examples (host arrays).
      key: PRNG key for sampling.
    """
    del params, batch, key
    return {}

  def to_unit(self, x: jax.Array) -> jax.Array:
    """Maps data-space values to [0, 1] for pictures."""
    lo, hi = self.data.data_range
    return jnp.clip((x - lo) / (hi - lo), 0.0, 1.0)


def image_data_errors(c: ml_collections.ConfigDict) -> list[str]:
  """The error of a config whose family needs images but whose dataset holds 2-D points."""
  if c.data.name not in sources.POINT_DATASETS:
    return []
  return [
    f"config.data.name={c.data.name!r}: family {c.family!r} needs an image dataset "
    f"(digits or a tensorflow-datasets image dataset), not 2-D points"
  ]


FAMILIES: dict[str, type[Family]] = {}


def register(*names: str) -> Callable[[type[Family]], type[Family]]:
  """Class decorator that registers a family under one or more names."""

  def wrap(cls):
    for name in names:
      FAMILIES[name] = cls
    return cls

  return wrap

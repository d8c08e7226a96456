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
from genjax.evaluation import images as image_lib
from genjax.models import layers

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
  # The fields that set this family's learning rates (named when training diverges).
  learning_rate_fields: tuple[str, ...] = ("optimizer.learning_rate",)
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
    self.grad_accum_steps = int(config.train.grad_accum_steps)
    # What the networks compute in; parameters, gradients and optimizer state stay float32.
    self.dtype = layers.compute_dtype(config.model.get("dtype", "float32"))
    self._compiled: dict[Any, Callable] = {}

  def optimizers(self) -> dict[str | None, optax.GradientTransformation]:
    """The players and their optimizers.

    ``{None: tx}`` (the default) for one network whose parameters are the whole
    ``params``; ``{name: tx, ...}`` when ``params`` is a dict of networks, each
    trained by its own optimizer (the GAN's generator and discriminator).
    """
    return {None: self.tx}

  def init_state(self, key: jax.Array, batch: dict[str, jax.Array]) -> TrainState:
    params, model_state = self.init_params(key, batch)
    txs = self.optimizers()
    if None in txs:
      opt_state = txs[None].init(params)
    else:
      opt_state = {name: tx.init(params[name]) for name, tx in txs.items()}
    return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      opt_state=opt_state,
      ema_params=jax.tree.map(jnp.copy, params),
      model_state=model_state,
    )

  def apply_gradients(
    self, player: str | None, params, opt_state, grads, prefix: str = ""
  ) -> tuple[Any, Any, Metrics]:
    """One player's update from its per-device gradients (averaged over devices here).

    Returns ``(params, opt_state, {"<prefix>grad_norm": global norm})``. The
    norms of parameters and updates are measured by the loop at logged steps,
    outside the step: any extra reduction compiled into the step changes how
    XLA rounds the update, and results would then depend on what is logged.
    """
    grads = lax.pmean(grads, AXIS)
    updates, opt_state = self.optimizers()[player].update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    return params, opt_state, {prefix + "grad_norm": optax.tree.norm(grads)}

  def finish_step(self, state: TrainState, params, opt_state, model_state, metrics: Metrics):
    """The next state (step, EMA) and the metrics averaged over devices."""
    new_state = state.replace(
      step=state.step + 1,
      params=params,
      opt_state=opt_state,
      ema_params=ema_update(state.ema_params, params, self.ema_decay, state.step + 1),
      model_state=model_state,
    )
    return new_state, lax.pmean(metrics, AXIS)

  def compiled(self, key: Any, make: Callable[[], Callable]) -> Callable:
    """``jax.jit(make())``, built once per family and ``key``, then reused.

    The one cache of compiled helpers (pictures, standing statistics,
    samplers): an evaluation every few thousand steps must not recompile.
    """
    if key not in self._compiled:
      self._compiled[key] = jax.jit(make())
    return self._compiled[key]

  def grid(self, images, nrow: int) -> np.ndarray:
    """A picture grid ``[H, W, C]`` in [0, 1] of data-space ``images [N, ...]``."""
    return image_lib.make_grid(np.asarray(self.to_unit(jnp.asarray(images))), nrow=nrow)

  def label_classes(self, conditional: bool) -> int:
    """Classes a model conditions on: the data's when ``conditional``, else 0.

    Raises:
      ValueError: a conditional model on data without labels.
    """
    if conditional and self.data.num_classes <= 1:
      raise ValueError(f"config.model.conditional=True needs labels; {self.data.name!r} has none")
    return self.data.num_classes if conditional else 0

  @classmethod
  def couples_examples(cls, config: ml_collections.ConfigDict) -> str | None:
    """Why a step of ``config`` is not a mean over independent examples, or None.

    Such a step (BatchNorm statistics, an EMA codebook moved by the whole batch)
    gives another update on micro-batches, so ``train.grad_accum_steps > 1`` is
    refused for it.
    """
    del config
    return None

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

  def eval_params(self, state: TrainState) -> Any:
    """What evaluation, sampling and pictures use: EMA parameters where kept."""
    return state.ema_params if self.ema_decay > 0 else state.params

  def loss_fn(
    self, params, batch: dict[str, jax.Array], keys: jax.Array, step: jax.Array
  ) -> tuple[jax.Array, Metrics]:
    """Pure objective: ``(scalar loss to minimise, scalar metrics)``.

    Args:
      params: trainable parameters.
      batch: ``{"x": [B, ...] float, "label": [B] int32, "index": [B] int32}`` on
        this device; ``index`` holds the examples' positions in the global batch.
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

  def accumulate(self, grad_fn: Callable, model_state, batch) -> tuple[Any, Metrics, Any]:
    """``grad_fn(model_state, batch) -> (grads, metrics, model_state)``, over micro-batches.

    With ``train.grad_accum_steps = k > 1`` the per-device ``batch`` (any pytree
    of ``[b, ...]`` arrays, per-example keys included) is cut into ``k``
    consecutive micro-batches run one after another in a ``lax.scan``, so only
    one micro-batch's activations are alive at a time. Gradients and metrics
    are per-example means, so their mean over equal micro-batches is the whole
    batch's: one optimizer update then equals the update on the full batch.
    ``model_state`` is threaded through the micro-batches in order; families
    whose state depends on the batch as a whole refuse ``k > 1``
    (:meth:`couples_examples`), so only state a step leaves alone reaches here.
    """
    k = self.grad_accum_steps
    if k == 1:  # The whole batch at once: the program a step has always compiled to.
      return grad_fn(model_state, batch)
    micro = jax.tree.map(lambda v: v.reshape((k, v.shape[0] // k) + v.shape[1:]), batch)
    first = jax.tree.map(lambda v: v[0], micro)
    totals = jax.tree.map(
      lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(grad_fn, model_state, first)[:2]
    )

    def add(carry, one):
      totals, model_state = carry
      grads, metrics, model_state = grad_fn(model_state, one)
      return (jax.tree.map(jnp.add, totals, (grads, metrics)), model_state), None

    ((grads, metrics), model_state), _ = lax.scan(add, (totals, model_state), micro)
    grads, metrics = jax.tree.map(lambda v: v / k, (grads, metrics))
    return grads, metrics, model_state

  def train_step(
    self, state: TrainState, batch: dict[str, jax.Array], keys: jax.Array
  ) -> tuple[TrainState, Metrics]:
    """One update, run per device inside the ``data`` axis.

    Gradients and metrics are averaged over devices with ``lax.pmean``, so
    every device applies the identical update to its copy of the state.
    """
    grad_fn = jax.value_and_grad(self.stateful_loss_fn, has_aux=True)

    def grads_and_metrics(model_state, micro):
      (loss, (metrics, model_state)), grads = grad_fn(
        state.params, model_state, micro["batch"], micro["keys"], state.step
      )
      return grads, dict(metrics, loss=loss), model_state

    grads, metrics, model_state = self.accumulate(
      grads_and_metrics, state.model_state, {"batch": batch, "keys": keys}
    )
    params, opt_state, norms = self.apply_gradients(None, state.params, state.opt_state, grads)
    metrics = dict(metrics, **norms, learning_rate=self.schedule(state.step))
    return self.finish_step(state, params, opt_state, model_state, metrics)

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

  def captions(self) -> dict[str, str]:
    """What each of :meth:`pictures`' grids shows (rows, columns), printed above it."""
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
# What a variant's name fixes, by dotted field: ``cvae`` is ``vae`` with
# ``model.conditional=True``. The family itself reads only config fields.
PRESETS: dict[str, dict[str, Any]] = {}


def register(name: str, **preset: Any) -> Callable[[type[Family]], type[Family]]:
  """Class decorator that registers a family (or a variant of it) under ``name``.

  Args:
    name: the ``config.family`` value.
    **preset: fields the name fixes, ``section__field=value``
      (``register("cvae", model__conditional=True)``).
  """

  def wrap(cls):
    FAMILIES[name] = cls
    PRESETS[name] = {k.replace("__", "."): v for k, v in preset.items()}
    return cls

  return wrap

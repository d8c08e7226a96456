"""``build``: from a config to everything a run needs (data, family, devices, evaluators).

The one place a config turns into objects. A family receives the data facts
and, where it builds on another run (a prior over a VQ-VAE's codes), that
run's restored family and parameters; it never opens files itself.
"""

import dataclasses
from typing import Any

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from genjax import config as config_lib
from genjax.core import random as genjax_random
from genjax.core.parallel import DataParallel
from genjax.core.train_state import TrainState
from genjax.data import pipeline, sources
from genjax.data.preprocessing import prepare_batch
from genjax.evaluation import suite
from genjax.families import FAMILIES, DataInfo, Family
from genjax.run import checkpoint as checkpoint_lib
from genjax.run import steps


@dataclasses.dataclass
class Experiment:
  """Everything a config builds before training: usable from a notebook.

  Attributes:
    config: the validated config.
    dataset: the in-memory dataset.
    family: the model family.
    parallel: device placement and compilation.
    samples: the sample-quality metrics of ``config.evals`` (falsy when none).
  """

  config: ml_collections.ConfigDict
  dataset: sources.Dataset
  family: Family
  parallel: DataParallel
  samples: suite.SampleEvaluator = None
  _eval_steps: dict = dataclasses.field(default_factory=dict, repr=False)

  def eval_step(self, num_samples: int):
    """The compiled eval step for ``num_samples`` (built once, then cached)."""
    if num_samples not in self._eval_steps:
      cfg = self.config
      self._eval_steps[num_samples] = self.parallel.compile(
        steps.make_eval_step(
          self.family, seed=cfg.seed, preprocess=cfg.data.preprocess, num_samples=num_samples
        )
      )
    return self._eval_steps[num_samples]

  def compile_train_step(self, num_steps: int = 1):
    """``train_step(state, batch) -> (state, metrics)`` over all devices, state donated.

    With ``num_steps = k > 1`` it runs k steps on k batches stacked along axis 1
    (:func:`genjax.run.steps.scan_steps`), metrics stacked along a leading axis.
    """
    cfg = self.config
    step = steps.make_train_step(self.family, seed=cfg.seed, preprocess=cfg.data.preprocess)
    return self.parallel.compile(step if num_steps == 1 else steps.scan_steps(step), True)

  def train_iterator(self) -> grain.DatasetIterator:
    """This process's slices of the global training batches, in the seed's order."""
    return pipeline.make_train_iterator(
      self.dataset.train,
      global_batch_size=self.config.train.batch_size,
      seed=self.config.seed,
      process_index=jax.process_index(),
      process_count=jax.process_count(),
      minibatches=self.family.minibatches,
      num_workers=self.config.data.num_workers,
    )

  def example_batch(self) -> dict[str, np.ndarray]:
    """A few training examples, in the layout the pipeline yields."""
    n = self.parallel.num_devices
    batch = {k: v[:n] for k, v in self.dataset.train.items()}
    batch["index"] = np.arange(n, dtype=np.int32)
    return batch

  def init_state(self) -> TrainState:
    """Fresh parameters and optimizer state (deterministic from the seed)."""
    batch = self.example_batch()

    # One compiled program: run op by op, each initializer compiles on its own
    # (seconds per conv model on CPU).
    @jax.jit
    def init(batch):
      key = genjax_random.stream_key(self.config.seed, genjax_random.INIT_STREAM)
      keys = jax.random.split(key, len(batch["index"]))
      inputs = prepare_batch(batch, keys, self.config.data.preprocess)
      return self.family.init_state(key, inputs)

    return init(batch)

  def abstract_state(self) -> Any:
    return jax.eval_shape(self.init_state)


def data_info(dataset: sources.Dataset, preprocess: str) -> DataInfo:
  """The facts about ``dataset`` a family is built from."""
  return DataInfo(
    name=dataset.name,
    kind=dataset.kind,
    shape=tuple(dataset.shape),
    num_classes=dataset.num_classes,
    preprocess=preprocess,
    modes=dataset.modes,
    mode_std=dataset.mode_std,
  )


def build(config: ml_collections.ConfigDict, devices=None) -> Experiment:
  """Validates ``config`` and builds dataset, family and device placement.

  Args:
    config: experiment config.
    devices: devices to run on (default: ``config.train.num_devices``).

  Raises:
    ConfigError: naming every invalid field, before any data is read.
  """
  config_lib.validate(config, None if devices is None else len(devices))
  config = config_lib.resolve(config)
  if devices is None:
    devices = config_lib.select_devices(config)
  parallel = DataParallel(config.train.parallel, devices)
  data_cfg = config.data
  dataset = load_data(config)
  test_size = len(dataset.test["label"])
  if config.eval.num_images > test_size:
    raise config_lib.ConfigError(
      f"config.eval.num_images={config.eval.num_images}: the test split of {dataset.name!r} "
      f"has {test_size} examples; ask for at most that many"
    )
  family = build_family(config, data_info(dataset, data_cfg.preprocess))
  samples = suite.SampleEvaluator(config, dataset, family, parallel)
  errors = suite.compatibility_errors(samples.evals, family, dataset)
  if errors:
    raise config_lib.ConfigError("invalid config:\n  " + "\n  ".join(errors))
  samples.check_files()
  return Experiment(config, dataset, family, parallel, samples)


def load_data(config: ml_collections.ConfigDict) -> sources.Dataset:
  """The dataset ``config.data`` names, read as it asks (in memory or streamed)."""
  d = config.data
  return sources.load_dataset(
    d.name,
    data_dir=d.data_dir or None,
    manual_dir=d.manual_dir or None,
    image_size=d.image_size,
    streaming=d.streaming,
  )


def build_family(config: ml_collections.ConfigDict, info: DataInfo) -> Family:
  """The family of ``config``, with its first stage restored where it has one."""
  cls = FAMILIES[config.family]
  extra = {}
  if cls.first_stage_family:
    extra["first_stage"] = load_first_stage(cls, config, info)
  try:
    return cls(config_lib.for_family(config), info, **extra)
  except ValueError as e:  # Model/data mismatches only visible with the data's shape.
    raise config_lib.ConfigError(f"invalid config for dataset {info.name!r}: {e}") from e


def load_first_stage(cls, config: ml_collections.ConfigDict, info: DataInfo) -> tuple[Family, dict]:
  """The trained run a family builds on: ``(its family, its evaluation variables)``.

  Raises:
    ConfigError: naming the config field when the run is missing, of another
      family, or trained on other data.
  """
  workdir, step, field_name = cls.first_stage_run(config)
  workdir = checkpoint_lib.as_path(workdir)
  directory = workdir / "checkpoints"
  field = f"config.{field_name}={str(workdir)!r}"
  if not directory.is_dir():
    raise config_lib.ConfigError(
      f"{field}: no checkpoints in {directory.absolute()}; train the {cls.first_stage_family} first"
    )
  ckpt = checkpoint_lib.Checkpointer(directory, async_save=False)
  try:
    step = step or ckpt.latest_step()
    if step is None or step not in ckpt.manager.all_steps():
      raise config_lib.ConfigError(
        f"{field}: no checkpoint at step {step} in {directory.absolute()}"
      )
    first = ckpt.restore_config(step)
    if first.family != cls.first_stage_family:
      raise config_lib.ConfigError(
        f"{field}: holds a {first.family!r} run, not a {cls.first_stage_family!r} one"
      )
    for name in ("name", "preprocess"):
      if first.data[name] != config.data[name]:
        raise config_lib.ConfigError(
          f"config.data.{name}={config.data[name]!r}: the first stage in {workdir} was "
          f"trained with {first.data[name]!r}"
        )
    first = config_lib.resolve(first)
    family = FAMILIES[first.family](config_lib.for_family(first), info)
    state = restore_state(ckpt, family, step)
  finally:
    ckpt.close()
  return family, jax.tree.map(np.asarray, family.eval_params(state))


def abstract_state(family: Family) -> Any:
  """The shapes and dtypes of ``family``'s train state, from one zero example (no data read)."""
  info = family.data
  example = {
    "x": jnp.zeros((1,) + tuple(info.shape), jnp.float32),
    "label": jnp.zeros((1,), jnp.int32),
  }
  return jax.eval_shape(lambda: family.init_state(jax.random.key(0), example))


def restore_state(ckpt: checkpoint_lib.Checkpointer, family: Family, step: int) -> TrainState:
  """``family``'s train state at ``step``, as host arrays."""
  state, _, _ = ckpt.restore(abstract_state(family), step)
  return state

"""Experiment configuration: defaults, loading and validation.

Every experiment is an ``ml_collections.ConfigDict`` returned by ``get_config()``
in a file under ``experiments/configs/``. :func:`defaults` holds every field
genjax reads, so an experiment file only states what it changes, and a typo in
a command-line override fails (the launcher locks the config).

:func:`validate` checks the whole config before any data is read or anything
compiles, and reports every problem at once, each naming its field and the
allowed values.
"""

import importlib.util
import pathlib
import types

import jax
import ml_collections

from genjax.core import fields, optim, parallel
from genjax.data import preprocessing, records, sources
from genjax.evaluation import suite
from genjax.families import FAMILIES, PRESETS
from genjax.models import layers


class ConfigError(ValueError):
  """A config value is invalid; the message names each bad field."""


F = fields.Field

TOP = {
  "family": F("vae", "registered family name (genjax.families.FAMILIES)"),
  "seed": F(0, "seed of every random stream of the run", integer=True, ge=0),
  # Sample-quality metrics, comma-separated (see genjax.evaluation.suite.EVALS).
  "evals": F("", 'e.g. "fid_lenet,kid_lenet,precision_recall_lenet,label_accuracy"'),
}
DATA = {
  "name": F("digits", "shipped name, or any tensorflow-datasets name"),
  "data_dir": F("", 'tfds data dir ("" = $TFDS_DATA_DIR or the tfds default)'),
  "manual_dir": F("", 'raw files for offline preparation ("" = $GENJAX_MANUAL_DIR)'),
  "preprocess": F("binarize_dynamic", "on-device op", choices=sorted(preprocessing.PREPROCESSORS)),
  "image_size": F(0, "resize the shorter side to this and crop the centre (0 = as stored)", ge=0),
  "streaming": F(
    False,
    "tfds datasets: read batches from the prepared ArrayRecord files instead of decoding "
    "whole splits into memory",
  ),
  "num_workers": F(
    0,
    "processes decoding batches read from disk (streaming, folder:); 0 = a thread",
    integer=True,
    ge=0,
  ),
}
# The network facts several families read; a family narrows a field's rule where
# its values mean something specific to it (AE: mlp | conv; GAN: mlp | dcgan).
MODEL = {
  "architecture": F("mlp", "network kind; each family lists what it builds"),
  "hidden_sizes": F(
    (512, 256), "MLP layers (encoder; reversed for the decoder)", positive_ints=True, nonempty=True
  ),
  "conv_channels": F(
    (32, 64), "conv encoder channels per stride-2 stage", positive_ints=True, nonempty=True
  ),
  "latent_dim": F(16, "size of the latent code", integer=True, ge=1),
  "activation": F("relu", "hidden activation", choices=sorted(layers.ACTIVATIONS)),
  "likelihood": F("bernoulli", "decoder distribution p(x|z) (VAEs)"),
  "conditional": F(False, "feed the label to the networks"),
  "dtype": F(
    "float32",
    "compute dtype of the networks; parameters, gradients and optimizer state stay float32, "
    "and losses, likelihoods and samplers see float32 outputs",
    choices=sorted(layers.DTYPES),
  ),
}
OPTIMIZER = {
  "name": F("adam", "optax optimizer", choices=optim.OPTIMIZERS),
  "learning_rate": F(1e-3, "peak learning rate", gt=0),
  "schedule": F("constant", "learning-rate schedule", choices=optim.SCHEDULES),
  "warmup_steps": F(0, "linear warm-up from 0", ge=0),
  "end_lr_factor": F(0.0, "final learning rate / peak (decaying schedules)", ge=0),
  "decay_rate": F(
    0.1, "decay over the run", gt=0, only_with=("optimizer.schedule", ("exponential",))
  ),
  "b1": F(0.9, "first-moment decay", ge=0, lt=1, only_with=("optimizer.name", ("adam", "adamw"))),
  "b2": F(
    0.999,
    "second-moment decay",
    ge=0,
    lt=1,
    only_with=("optimizer.name", ("adam", "adamw", "rmsprop")),
  ),
  "eps": F(
    1e-8, "denominator offset", gt=0, only_with=("optimizer.name", ("adam", "adamw", "rmsprop"))
  ),
  "weight_decay": F(0.0, "decoupled weight decay", ge=0, only_with=("optimizer.name", ("adamw",))),
  "momentum": F(0.0, "momentum", ge=0, lt=1, only_with=("optimizer.name", ("sgd", "rmsprop"))),
  "nesterov": F(False, "Nesterov momentum", only_with=("optimizer.name", ("sgd",))),
  "grad_clip_norm": F(0.0, "clip gradients to this global norm (0 = off)", ge=0),
}
TRAIN = {
  "batch_size": F(128, "global batch, split over all devices", gt=0),
  "grad_accum_steps": F(
    1,
    "micro-batches per step: each device runs batch_size / (devices * k) examples at a "
    "time and the step makes one update from their mean gradient",
    integer=True,
    ge=1,
  ),
  "num_steps": F(1000, "training steps", gt=0),
  "steps_per_call": F(
    1,
    "training steps compiled into one call (a scan over that many batches), so a small "
    "model's step is not dominated by the host's per-step work; logs, evaluations and "
    "checkpoints still happen at their steps",
    integer=True,
    ge=1,
  ),
  "log_every": F(100, "steps between train-metric logs", gt=0),
  "eval_every": F(1000, "steps between evaluations (0 = only at the end)", ge=0),
  "checkpoint_every": F(1000, "steps between checkpoints", gt=0),
  "keep_checkpoints": F(3, "most recent checkpoints kept", gt=0),
  "ema_decay": F(0.0, "debiased EMA of the parameters for evaluation (0 = off)", ge=0, lt=1),
  "parallel": F("shard_map", "data-parallel transform", choices=parallel.MODES),
  "num_devices": F(0, "data-parallel over the first N devices (0 = all)", ge=0),
  "distributed": F(False, "call jax.distributed.initialize() (multi-host)"),
  "async_checkpoint": F(True, "write checkpoints in a background thread"),
  "progress_bar": F(True, "show a progress bar on a terminal"),
  "compilation_cache_dir": F(
    "",
    "XLA's persistent compilation cache, so a second start skips compiling: a directory, "
    '"none" (off), or "" ($JAX_COMPILATION_CACHE_DIR, else jax/ in $GENJAX_CACHE_DIR '
    "or ~/.cache/genjax)",
  ),
  "profile_steps": F(
    0, "trace this many steps with the JAX profiler after the first log (0 = off)", ge=0
  ),
}
EVAL = {
  "batch_size": F(512, "global eval batch", gt=0),
  "num_examples": F(0, "test examples for genjax.evaluate (0 = all)", ge=0),
  "nll_samples": F(5000, "importance samples for genjax.evaluate", gt=0),
  "nll_chunk": F(100, "samples per decoder pass (bounds memory)", gt=0),
  "periodic_examples": F(1000, "test examples for evaluation during training", gt=0),
  "periodic_nll_samples": F(100, "importance samples during training", gt=0),
  "num_images": F(64, "test examples the pictures draw on", ge=0),
  "sample_examples": F(10000, "generated samples for genjax.evaluate", gt=0),
  "periodic_sample_examples": F(1000, "generated samples during training", gt=0),
  "feature_net_seed": F(0, "seed of the feature net behind *_lenet metrics", integer=True, ge=0),
  "feature_net_steps": F(0, "0 = the default training recipe (tests use a few)", ge=0),
  "inception_weights": F("", "FID Inception .npz for *_inception ($GENJAX_INCEPTION_WEIGHTS)"),
}
COMMON = {"data": DATA, "model": MODEL, "optimizer": OPTIMIZER, "train": TRAIN, "eval": EVAL}


def family_sections() -> dict[str, fields.Section]:
  """Every family's own sections, by name (one declaration per section)."""
  out = {}
  for cls in FAMILIES.values():
    for name, section in cls.sections.items():
      if out.setdefault(name, section) is not section:
        raise RuntimeError(f"config section {name!r} is declared by two families")
  return out


def defaults() -> ml_collections.ConfigDict:
  """Every field genjax reads, with its default value."""
  c = ml_collections.ConfigDict(fields.defaults(TOP))
  for name, section in (COMMON | family_sections()).items():
    c[name] = fields.defaults(section)
  return c


def complete(saved: dict) -> ml_collections.ConfigDict:
  """A saved config with the fields added to :func:`defaults` since it was written.

  Args:
    saved: a config as saved with a checkpoint (nested dicts).
  """
  c = defaults()
  _merge(c, saved)
  # Settings that never had an effect (weight_decay with adam, a VAE's num_samples),
  # refused since: reset in every section, with the family's preset applied first.
  c = resolve(c)
  for name, section in (COMMON | family_sections()).items():
    fields.reset_ignored(c, section, name)
  return c


def _merge(c: ml_collections.ConfigDict, saved: dict) -> None:
  for key, value in saved.items():
    if isinstance(value, dict) and isinstance(c.get(key), ml_collections.ConfigDict):
      _merge(c[key], value)
    elif key in c:
      # Keep the default's type where JSON lost it (tuples come back as lists).
      c[key] = tuple(value) if isinstance(c[key], tuple) and isinstance(value, list) else value
    else:
      c[key] = value


def apply_overrides(c: ml_collections.ConfigDict, overrides: list[str]) -> dict:
  """Sets ``field=value`` strings on ``c``, parsing each value with the field's type.

  Args:
    c: config to change in place.
    overrides: e.g. ``["diffusion.sampler=ddpm", "diffusion.guidance_scale=3"]``.

  Returns:
    The fields set, ``{"diffusion.sampler": "ddpm", ...}``.

  Raises:
    ConfigError: naming an unknown field or a value that does not parse.
  """
  applied = {}
  for item in overrides:
    field, sep, text = item.partition("=")
    try:
      current = fields.get(c, field)
    except (KeyError, AttributeError):
      current = sep = None
    if not sep or isinstance(current, ml_collections.ConfigDict):
      raise ConfigError(f"override {item!r}: expected field=value with an existing config field")
    try:
      value = _parse_like(current, text)
    except ValueError as e:
      raise ConfigError(f"override {item!r}: {e}") from e
    parent, _, name = field.rpartition(".")
    (fields.get(c, parent) if parent else c)[name] = value
    applied[field] = value
  # The run's settings that the overrides make inert (another sampler's tolerance)
  # go back to their defaults instead of being refused.
  for name, section in (COMMON | family_sections()).items():
    if name in c:
      fields.reset_ignored(c, section, name, keep=applied)
  return applied


def _parse_like(current, text: str):
  if isinstance(current, bool):
    if text.lower() not in ("true", "false", "1", "0"):
      raise ValueError(f"{text!r} is not a boolean")
    return text.lower() in ("true", "1")
  if isinstance(current, tuple):
    items = [v for v in text.strip("()[] ").split(",") if v.strip()]
    return tuple(_parse_like(current[0], v.strip()) if current else v.strip() for v in items)
  if isinstance(current, int):
    return int(text)
  if isinstance(current, float):
    return float(text)
  return text


def load_config(path: str | pathlib.Path) -> ml_collections.ConfigDict:
  """Loads ``get_config()`` from a config file (for notebooks and tests)."""
  return _load_module(pathlib.Path(path)).get_config()


def load_sibling(file: str, name: str) -> types.ModuleType:
  """Imports the config module ``name`` next to ``file`` (a variant's base)."""
  return _load_module(pathlib.Path(file).with_name(f"{name}.py"))


def _load_module(path: pathlib.Path) -> types.ModuleType:
  if not path.is_file():
    raise FileNotFoundError(f"config file not found: {path}")
  spec = importlib.util.spec_from_file_location(f"genjax_config_{path.stem}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _check(errors, ok, field, value, allowed):
  if not ok:
    errors.append(f"config.{field}={value!r}: {allowed}")


def validate(c: ml_collections.ConfigDict, num_devices: int | None = None):
  """Raises :class:`ConfigError` listing every invalid field of ``c``.

  Args:
    c: experiment config (see :func:`defaults`).
    num_devices: devices the global batch is split over (default: all).
  """
  c = resolve(c)
  errors = fields.section_errors("", c, dict(TOP, family=F("", choices=sorted(FAMILIES))))
  _check_dataset(errors, c.data.name)
  family = FAMILIES.get(c.family)
  narrowed = family.narrowed if family is not None else {}
  for name, section in COMMON.items():
    section = {k: narrowed.get(f"{name}.{k}", f) for k, f in section.items()}
    errors += fields.section_errors(name, c[name], section, root=c)
  if family is not None:
    for name, section in family.sections.items():
      errors += fields.section_errors(name, c[name], section, root=c)
  available = jax.device_count()
  wanted = c.train.num_devices
  _check(
    errors,
    not isinstance(wanted, int) or wanted <= available,
    "train.num_devices",
    wanted,
    f"only {available} devices are available",
  )
  multihost = c.train.distributed or jax.process_count() > 1
  _check(
    errors,
    not (multihost and wanted),
    "train.num_devices",
    wanted,
    "must be 0 (every device of every host) with train.distributed=True or several processes",
  )
  _check(
    errors,
    not (jax.process_count() > 1 and c.train.parallel == "pmap"),
    "train.parallel",
    c.train.parallel,
    "pmap averages gradients over one process's devices, so each process would train a "
    "model of its own; use 'shard_map' on several processes",
  )
  n = num_devices or (wanted if isinstance(wanted, int) and 0 < wanted <= available else available)
  batch, accum = c.train.batch_size, c.train.grad_accum_steps
  accum = accum if isinstance(accum, int) and accum > 1 else 1
  _check(
    errors,
    isinstance(batch, int) and batch > 0 and batch % (accum * n) == 0,
    "train.batch_size",
    batch,
    f"must be a positive multiple of the {n} devices"
    if accum == 1
    else f"must be a positive multiple of config.train.grad_accum_steps={accum} times the "
    f"{n} devices ({accum * n})",
  )
  why = family.couples_examples(c) if family is not None and accum > 1 else None
  _check(
    errors,
    why is None,
    "train.grad_accum_steps",
    accum,
    f"{why}, so micro-batches would not give the whole batch's update; use 1 with "
    f"family {c.family!r}",
  )
  _check(
    errors,
    c.eval.batch_size % n == 0,
    "eval.batch_size",
    c.eval.batch_size,
    f"must be a multiple of the {n} devices",
  )
  warmup = c.optimizer.warmup_steps
  _check(
    errors,
    not (
      isinstance(warmup, int) and isinstance(c.train.num_steps, int) and warmup >= c.train.num_steps
    ),
    "optimizer.warmup_steps",
    warmup,
    f"must be below config.train.num_steps={c.train.num_steps} (the warm-up would never end)",
  )
  errors.extend(suite.config_errors(c))
  if family is not None:
    errors.extend(family.validate(c))
  if errors:
    raise ConfigError("invalid config:\n  " + "\n  ".join(errors))


def resolve(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A copy of ``c`` with the fields its family's name fixes (``cvae``: ``model.conditional``).

  Raises:
    ConfigError: where ``c`` sets such a field to another value than the name's.
  """
  preset = PRESETS.get(c.family, {})
  if not preset:
    return c
  c = ml_collections.ConfigDict(c.to_dict())
  base = defaults()
  errors = []
  for field, value in preset.items():
    current = fields.get(c, field)
    if current != value and current != fields.get(base, field):
      errors.append(f"config.{field}={current!r}: family {c.family!r} sets it to {value!r}")
    parent, _, name = field.rpartition(".")
    fields.get(c, parent)[name] = value
  if errors:
    raise ConfigError("invalid config:\n  " + "\n  ".join(errors))
  return c


def for_family(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """What ``c``'s family is built from: its own sections and the common training fields.

  Not the data section (a family gets the data facts as ``DataInfo``) and not
  other families' sections, so a family cannot come to depend on either.
  """
  keep = ("family", "seed", "model", "optimizer", "train", "eval", *FAMILIES[c.family].sections)
  return ml_collections.ConfigDict(
    {k: c[k].to_dict() if hasattr(c[k], "to_dict") else c[k] for k in keep}
  )


def select_devices(c: ml_collections.ConfigDict) -> list:
  """The devices ``c`` trains and evaluates on: the first ``train.num_devices`` (0 = all)."""
  n, available = c.train.num_devices, jax.devices()
  if not isinstance(n, int) or not 0 <= n <= len(available):
    raise ConfigError(
      f"config.train.num_devices={n!r}: must be 0 (all) or at most the {len(available)}"
      " devices available"
    )
  return available[:n] if n else available


def _check_dataset(errors, name):
  if name in sources.SHIPPED_DATASETS or str(name).startswith(records.PREFIX):
    return
  if not sources.is_tfds_name(name):
    close = sources.closest_name(name)
    errors.append(
      f"config.data.name={name!r}: {f'did you mean {close!r}? ' if close else ''}allowed: a shipped dataset "
      f"({', '.join(sources.SHIPPED_DATASETS)}), a tensorflow-datasets name or "
      "'folder:/path/to/images'"
    )

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

from genjax.core import optim, parallel
from genjax.data import preprocessing, sources
from genjax.evaluation import suite
from genjax.families import FAMILIES


class ConfigError(ValueError):
  """A config value is invalid; the message names each bad field."""


def defaults() -> ml_collections.ConfigDict:
  """Every field genjax reads, with its default value."""
  c = ml_collections.ConfigDict()
  c.family = "vae"
  c.seed = 0
  # Sample-quality metrics, comma-separated (see genjax.evaluation.suite.EVALS), e.g.
  # "fid_lenet,kid_lenet,precision_recall_lenet,classifier_score_lenet,label_accuracy".
  c.evals = ""
  c.data = dict(
    name="digits",  # shipped name, or any tensorflow-datasets name
    data_dir="",  # tfds data dir ("" = $TFDS_DATA_DIR or tfds default)
    manual_dir="",  # raw files for offline preparation ("" = $GENJAX_MANUAL_DIR)
    preprocess="binarize_dynamic",
  )
  c.model = dict(
    architecture="mlp",  # mlp | conv
    hidden_sizes=(512, 256),  # MLP layers (encoder; reversed for the decoder)
    conv_channels=(32, 64),  # conv encoder channels per stride-2 stage
    latent_dim=16,
    activation="relu",
    likelihood="bernoulli",  # decoder distribution p(x|z)
    conditional=False,  # feed the label to encoder and decoder
  )
  c.objective = dict(
    beta=1.0,  # KL weight (beta-VAE)
    kl_warmup_steps=0,  # linear KL annealing from 0 to beta
    num_samples=1,  # importance samples k for the IWAE objective
    recon_loss="bce",  # AE/DAE reconstruction: bce | l2
    corruption="none",  # DAE corruption: none | gaussian | mask | salt_pepper
    corruption_level=0.0,
  )
  c.gan = dict(
    loss="non_saturating",  # minimax | non_saturating | lsgan | hinge | wgan
    d_steps=1,  # discriminator updates per generator update, each on its own minibatch
    gp_weight=0.0,  # WGAN-GP gradient-penalty weight (10 in Gulrajani et al.)
    r1_weight=0.0,  # R1 penalty weight gamma (the penalty is gamma / 2 * |grad D(x)|^2)
    g_learning_rate=2e-4,  # two time-scale update rule: separate learning rates
    d_learning_rate=2e-4,
    base_channels=32,  # DCGAN width
    d_norm="",  # discriminator normalisation: batch | layer | spectral | none ("" = batch for DCGAN)
    conditioning="projection",  # conditional D: projection | concat
    code_classes=0,  # InfoGAN: size of G's uniform categorical code, read back by D's Q head (0 = off)
    info_weight=1.0,  # InfoGAN: weight lambda of the code cross-entropy in both players' losses
  )
  c.diffusion = dict(
    schedule="linear",  # noise schedule: linear | cosine
    num_steps=1000,  # T, training timesteps
    beta_start=1e-4,  # linear schedule endpoints (Ho et al. 2020)
    beta_end=0.02,
    parameterization="eps",  # what the network predicts: eps | x0 | v
    weighting="simple",  # lambda_t: simple (L_simple) | vlb (true bound) | min_snr
    min_snr_gamma=5.0,  # gamma of the min-SNR weighting (Hang et al. 2023)
    model_variance="beta",  # reverse-process variance sigma_t^2: beta | posterior (beta tilde)
    p_uncond=0.1,  # label dropout for classifier-free guidance (conditional models)
    sampler="ddim",  # sampler of evaluation and pictures: ddpm | ddim
    sample_steps=50,  # DDIM steps
    spacing="trailing",  # DDIM timestep spacing: leading | trailing | linspace
    eta=0.0,  # DDIM stochasticity (0 = deterministic, 1 = DDPM-like)
    guidance_scale=1.0,  # classifier-free guidance: 1 = conditional, 0 = unconditional
    guidance_scales=(0.0, 1.0, 2.0, 4.0),  # rows of images/guidance.png
    clip_x0=True,  # clip predicted x0 to [-1, 1] while sampling
  )
  c.unet = dict(
    channels=64,  # base width
    channel_mults=(1, 2, 2),  # width multiplier per resolution (each halves the side)
    num_res_blocks=2,
    attention_resolutions=(7,),  # image sides with self-attention
    dropout=0.1,
    num_groups=16,  # GroupNorm groups
    conditioning="scale_shift",  # time/class conditioning: scale_shift (adaptive GN) | add
  )
  c.vq = dict(
    num_embeddings=512,  # codebook size K
    embedding_dim=64,  # code size D
    beta=0.25,  # commitment weight (van den Oord et al. 2017)
    ema=True,  # EMA codebook updates (decay, Laplace smoothing) instead of the codebook loss
    decay=0.99,
    epsilon=1e-5,
    restart_threshold=0.0,  # EMA codebook: restart codes used less than this per step (0 = never)
    channels=(32, 64),  # encoder stride-2 stages (28x28 -> 7x7), mirrored by the decoder
    num_res_blocks=2,
    res_channels=32,
    recon_loss="l2",  # l2 (mean squared error) | bce (pixels in [0, 1], Bernoulli logits)
  )
  c.pixelcnn = dict(
    num_layers=8,  # gated layers (the first is mask type A)
    features=64,
    kernel_size=3,  # odd
    levels=2,  # values per pixel: 2 (binarized images) | 256 (uint8 images)
    temperature=1.0,  # sampling temperature
  )
  c.prior = dict(
    vqvae_workdir="",  # the first stage's run directory (a trained `vqvae` run)
    vqvae_step=0,  # its checkpoint step (0 = latest)
    sample_from="learned",  # codes for samples: learned (the PixelCNN prior) | uniform
  )
  c.optimizer = dict(
    name="adam",
    learning_rate=1e-3,
    schedule="constant",
    warmup_steps=0,
    end_lr_factor=0.0,
    decay_rate=0.1,
    b1=0.9,
    b2=0.999,
    eps=1e-8,
    weight_decay=1e-4,
    momentum=0.0,
    nesterov=False,
    grad_clip_norm=0.0,
  )
  c.train = dict(
    batch_size=128,  # global batch, split over all devices
    num_steps=1000,
    log_every=100,
    eval_every=1000,  # 0 disables periodic evaluation
    checkpoint_every=1000,
    keep_checkpoints=3,
    ema_decay=0.0,  # debiased EMA of the parameters for evaluation; 0 disables it
    parallel="shard_map",  # shard_map | pmap
    num_devices=0,  # data-parallel over the first N devices; 0 = all of them
    distributed=False,  # call jax.distributed.initialize() (multi-host)
    async_checkpoint=True,
    progress_bar=True,
  )
  c.eval = dict(
    batch_size=512,
    num_examples=0,  # test examples for `genjax.evaluate` (0 = all)
    nll_samples=5000,  # importance samples for `genjax.evaluate`
    nll_chunk=100,  # samples per decoder pass (bounds memory)
    periodic_examples=1000,  # test examples for evaluation during training
    periodic_nll_samples=100,
    num_images=64,
    sample_examples=10000,  # generated samples for `genjax.evaluate` (and real ones compared)
    periodic_sample_examples=1000,  # generated samples for evaluation during training
    feature_net_seed=0,
    feature_net_steps=0,  # 0 = the default training recipe (tests use a few steps)
    inception_weights="",  # FID Inception .npz for *_inception metrics ($GENJAX_INCEPTION_WEIGHTS)
  )
  return c


def complete(saved: dict) -> ml_collections.ConfigDict:
  """A saved config with the fields added to :func:`defaults` since it was written.

  Args:
    saved: a config as saved with a checkpoint (nested dicts).
  """
  c = defaults()
  _merge(c, saved)
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
      current = _get(c, field)
    except (KeyError, AttributeError):
      current = sep = None
    if not sep or isinstance(current, ml_collections.ConfigDict):
      raise ConfigError(f"override {item!r}: expected field=value with an existing config field")
    try:
      value = _parse_like(current, text)
    except ValueError as e:
      raise ConfigError(f"override {item!r}: {e}") from e
    parent, _, name = field.rpartition(".")
    (_get(c, parent) if parent else c)[name] = value
    applied[field] = value
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


def _check_in(errors, c, field, allowed):
  value = _get(c, field)
  _check(errors, value in allowed, field, value, f"allowed: {', '.join(map(str, allowed))}")


def _check_positive(errors, c, field, allow_zero=False):
  value = _get(c, field)
  ok = isinstance(value, (int, float)) and (value >= 0 if allow_zero else value > 0)
  _check(errors, ok, field, value, "must be >= 0" if allow_zero else "must be > 0")


def _get(c, field):
  for part in field.split("."):
    c = c[part]
  return c


def validate(c: ml_collections.ConfigDict, num_devices: int | None = None):
  """Raises :class:`ConfigError` listing every invalid field of ``c``.

  Args:
    c: experiment config (see :func:`defaults`).
    num_devices: devices the global batch is split over (default: all).
  """
  errors = []
  _check_in(errors, c, "family", sorted(FAMILIES))
  _check_dataset(errors, c.data.name)
  _check_in(errors, c, "data.preprocess", sorted(preprocessing.PREPROCESSORS))
  _check_in(errors, c, "optimizer.name", optim.OPTIMIZERS)
  _check_in(errors, c, "optimizer.schedule", optim.SCHEDULES)
  _check_in(errors, c, "train.parallel", parallel.MODES)
  for field in (
    "optimizer.learning_rate",
    "train.batch_size",
    "train.num_steps",
    "train.log_every",
    "train.checkpoint_every",
    "train.keep_checkpoints",
    "eval.batch_size",
    "eval.nll_samples",
    "eval.nll_chunk",
    "eval.periodic_examples",
    "eval.periodic_nll_samples",
    "eval.sample_examples",
    "eval.periodic_sample_examples",
  ):
    _check_positive(errors, c, field)
  for field in (
    "train.eval_every",
    "eval.num_examples",
    "train.num_devices",
    "optimizer.warmup_steps",
    "optimizer.grad_clip_norm",
    "optimizer.weight_decay",
    "eval.num_images",
    "eval.feature_net_steps",
  ):
    _check_positive(errors, c, field, allow_zero=True)
  _check(
    errors,
    0.0 <= c.train.ema_decay < 1.0,
    "train.ema_decay",
    c.train.ema_decay,
    "must be in [0, 1)",
  )
  available = jax.device_count()
  wanted = c.train.num_devices
  _check(
    errors,
    not isinstance(wanted, int) or wanted <= available,
    "train.num_devices",
    wanted,
    f"only {available} devices are available",
  )
  _check(
    errors,
    not (c.train.distributed and wanted),
    "train.num_devices",
    wanted,
    "must be 0 (every device of every host) with train.distributed=True",
  )
  n = num_devices or (wanted if isinstance(wanted, int) and 0 < wanted <= available else available)
  batch = c.train.batch_size
  _check(
    errors,
    isinstance(batch, int) and batch > 0 and batch % n == 0,
    "train.batch_size",
    batch,
    f"must be a positive multiple of the {n} devices",
  )
  _check(
    errors,
    c.eval.batch_size % n == 0,
    "eval.batch_size",
    c.eval.batch_size,
    f"must be a multiple of the {n} devices",
  )
  errors.extend(suite.config_errors(c))
  family = FAMILIES.get(c.family)
  if family is not None:
    errors.extend(family.validate(c))
  if errors:
    raise ConfigError("invalid config:\n  " + "\n  ".join(errors))


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
  if name in sources.SHIPPED_DATASETS:
    return
  if not sources.is_tfds_name(name):
    errors.append(
      f"config.data.name={name!r}: allowed: a shipped dataset "
      f"({', '.join(sources.SHIPPED_DATASETS)}) or a tensorflow-datasets name"
    )

"""A trained model to use: ``model = genjax.load(path)``, then ``model.sample(16)``.

``path`` is a run directory (its newest readable checkpoint, or ``step``) or a
bundle written by :func:`export` (evaluation parameters only, no optimizer
state). Either way the model runs on the devices this process sees, CPU
included, and draws what training's evaluation draws for the same seed:
sample ``i`` depends only on ``(seed, i)``, not on the batch size or the
number of devices (beyond float rounding).
"""

import dataclasses
import json
import logging
import math
from typing import Any

import flax.serialization
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from etils import epath

import genjax
from genjax import config as config_lib
from genjax.core import random as genjax_random
from genjax.core.parallel import AXIS, DataParallel
from genjax.data import pipeline
from genjax.data.preprocessing import prepare_batch
from genjax.families import FAMILIES, DataInfo, Family
from genjax.run import checkpoint as checkpoint_lib
from genjax.run import experiment, writers

log = logging.getLogger("genjax")

PARAMS_FILE = "params.msgpack"
BUNDLE_FORMAT = 1
DATA_INFO_FILE = "data_info.json"


@dataclasses.dataclass
class Model:
  """A trained family with its evaluation parameters (EMA where kept).

  Attributes:
    config: the run's config (family presets applied).
    family: the model family.
    params: evaluation parameters, host arrays.
    step: the training step they come from.
    source: the run directory or bundle they were read from.
  """

  config: ml_collections.ConfigDict = dataclasses.field(repr=False)
  family: Family = dataclasses.field(repr=False)
  params: Any = dataclasses.field(repr=False)
  step: int
  source: epath.Path
  _first_stage: tuple | None = dataclasses.field(default=None, repr=False)
  _variants: dict = dataclasses.field(default_factory=dict, repr=False)
  _samplers: dict = dataclasses.field(default_factory=dict, repr=False)

  def __repr__(self) -> str:
    count = sum(int(np.size(v)) for v in jax.tree.leaves(self.params))
    return (
      f"<genjax model: {self.config.family} on {self.data.name}, step {self.step}, "
      f"{count:,} parameters, from {self.source}>"
    )

  @property
  def data(self) -> DataInfo:
    """Shape, range and classes of the data the model was trained on."""
    return self.family.data

  # -- generation ---------------------------------------------------------------

  def sample(
    self,
    n: int,
    *,
    seed: int = 0,
    labels=None,
    batch_size: int | None = None,
    progress: bool = False,
    **options,
  ) -> np.ndarray:
    """Draws ``n`` samples: images ``[n, H, W, C]`` in [0, 1], or points ``[n, 2]``.

    Args:
      n: number of samples.
      seed: sample ``i`` depends only on ``(seed, i)``; ``seed=config.seed``
        gives the samples of the run's own evaluation. Other batch sizes and device
        counts give the same samples to float rounding.
      labels: an int or ``[n]`` ints for a conditional model (default: classes
        in turn, ``i % num_classes``).
      batch_size: samples per device batch round (default ``config.eval.batch_size``).
      progress: show a progress bar.
      **options: fields of the family's config sections for this call, e.g.
        ``sampler="ddpm"``, ``sample_steps=50``, ``eta=1.0``,
        ``guidance_scale=3.0`` for diffusion.
    """
    family = self._family(options)
    if not family.can_sample:
      raise ValueError(f"family {self.config.family!r} does not generate samples")
    if family not in self._samplers:  # Compiled once per family: later calls only run.
      parallel = DataParallel("shard_map", jax.local_devices())
      self._samplers[family] = (parallel, parallel.compile(_sampler(family)))
    parallel, compiled = self._samplers[family]
    per_round = _round_up(batch_size or self.config.eval.batch_size, parallel.num_devices)
    key = jax.random.key_data(genjax_random.stream_key(seed, genjax_random.SAMPLE_STREAM))
    replicated = parallel.put_replicated((self.params, key))
    arrays = {"label": self._labels(labels, n)}
    batches = pipeline.eval_batches(arrays, batch_size=per_round, num_examples=n)
    out = []
    for batch in writers.progress_bar(
      batches, total=math.ceil(n / per_round), desc="sample", disable=not progress
    ):
      x, mask = jax.device_get(compiled(replicated, parallel.put_batch(batch)))
      out.append(np.asarray(x)[mask > 0])
    return np.concatenate(out)[:n] if out else np.zeros((0,) + self.data.shape, np.float32)

  def _labels(self, labels, n: int) -> np.ndarray:
    classes = max(self.data.num_classes, 1)
    if labels is None:
      return (np.arange(n) % classes).astype(np.int32)
    labels = np.broadcast_to(np.asarray(labels, np.int32), (n,))
    if labels.min() < 0 or labels.max() >= classes:
      raise ValueError(f"labels must lie in [0, {classes}); got {labels.min()}..{labels.max()}")
    return labels

  def _family(self, options: dict) -> Family:
    """The family with ``options`` set in its config sections (built once per set)."""
    if not options:
      return self.family
    key = tuple(sorted(options.items()))
    if key not in self._variants:
      config = ml_collections.ConfigDict(self.config.to_dict())
      overrides = [f"{self._field(name)}={value}" for name, value in options.items()]
      try:
        config_lib.apply_overrides(config, overrides)
        config_lib.validate(config)
      except config_lib.ConfigError as e:
        raise ValueError(str(e)) from e
      self._variants[key] = _make_family(config, self.data, self._first_stage)
    return self._variants[key]

  def _field(self, name: str) -> str:
    if "." in name:
      return name
    sections = FAMILIES[self.config.family].sections
    found = [f"{s}.{name}" for s, fields in sections.items() if name in fields]
    if len(found) != 1:
      allowed = sorted(f for fields in sections.values() for f in fields)
      raise ValueError(
        f"unknown option {name!r} for family {self.config.family!r}; options: {allowed}"
      )
    return found[0]

  # -- encoding and scoring -------------------------------------------------------

  def encode(self, x, labels=None, *, seed: int = 0) -> np.ndarray:
    """Codes of images ``x`` (``[B, H, W, C]``, uint8 or floats in [0, 1]).

    The posterior mean for a VAE, the code for an autoencoder, the code map
    ``[B, h, w]`` for a VQ-VAE.
    """
    inputs, _ = self._inputs(x, labels, seed)
    fn = self._method("encode")
    return np.asarray(fn(self.params, inputs["x"], inputs["label"]))

  def decode(self, z, labels=None) -> np.ndarray:
    """Images in [0, 1] from codes (the decoder's mean)."""
    fn = self._method("decode")
    labels = self._labels(labels, len(z))
    return np.asarray(fn(self.params, jnp.asarray(z), jnp.asarray(labels)))

  def reconstruct(self, x, labels=None, *, seed: int = 0) -> np.ndarray:
    """``decode(encode(x))``: images in [0, 1]."""
    return self.decode(self.encode(x, labels, seed=seed), labels)

  def interpolate(self, x_a, x_b, num: int = 8, labels=None) -> np.ndarray:
    """Decodes ``num`` codes on the line from ``encode(x_a)`` to ``encode(x_b)``: ``[B, num, ...]``."""
    z_a, z_b = self.encode(x_a, labels), self.encode(x_b, labels)
    if not np.issubdtype(z_a.dtype, np.floating):
      raise ValueError(f"family {self.config.family!r} has discrete codes: nothing in between")
    t = np.linspace(0.0, 1.0, num, dtype=np.float32).reshape((1, num) + (1,) * (z_a.ndim - 1))
    z = (1 - t) * z_a[:, None] + t * z_b[:, None]
    flat = z.reshape((-1,) + z_a.shape[1:])
    rows = None if labels is None else np.repeat(self._labels(labels, len(z_a)), num)
    images = self.decode(flat, rows)
    return images.reshape((len(z_a), num) + images.shape[1:])

  def scores(self, x, labels=None, *, num_samples: int | None = None, seed: int = 0) -> dict:
    """Per-example test metrics of ``x`` (``nll`` in nats, bits/dim, ...), as evaluation computes them.

    ``x`` as stored in the dataset (uint8 images, or floats in [0, 1]); with
    ``seed=config.seed`` and the test split in order, these are the numbers
    ``genjax.evaluate`` averages.
    """
    inputs, keys = self._inputs(x, labels, seed)
    samples = int(num_samples or self.config.eval.nll_samples)
    fn = self.family.compiled(("model.scores", samples), lambda: _scorer(self.family, samples))
    return {k: np.asarray(v) for k, v in fn(self.params, inputs, keys).items()}

  def nll(self, x, labels=None, *, num_samples: int | None = None, seed: int = 0) -> np.ndarray:
    """Negative log-likelihood per example, in nats (a bound or estimate where the family's is)."""
    scores = self.scores(x, labels, num_samples=num_samples, seed=seed)
    if "nll" not in scores:
      raise ValueError(
        f"family {self.config.family!r} has no likelihood; it reports {sorted(scores)}"
      )
    return scores["nll"]

  def log_prob(self, x, labels=None, **kwargs) -> np.ndarray:
    """``-nll(x)``."""
    return -self.nll(x, labels, **kwargs)

  # -- export ---------------------------------------------------------------------

  def export(self, out) -> epath.Path:
    """Writes a parameters-only bundle that :func:`load` reads (no optimizer state, no data).

    ``out/params.msgpack``: the evaluation parameters as a Flax msgpack tree
    (``flax.serialization.msgpack_restore`` reads it anywhere);
    ``out/bundle.json``: config, data facts, step and metrics;
    ``out/README.md``: a model card.
    """
    out = checkpoint_lib.as_path(out)
    if (out / "checkpoints").exists():
      raise FileExistsError(f"{out} is a run directory; export to another directory")
    out.mkdir(parents=True, exist_ok=True)
    host = jax.tree.map(np.asarray, self.params)
    (out / PARAMS_FILE).write_bytes(flax.serialization.msgpack_serialize(host))
    meta = {
      "format": BUNDLE_FORMAT,
      "genjax_version": genjax.__version__,
      "step": self.step,
      "config": _config_json(self.config),
      "data": data_info_to_json(self.data),
      "metrics": self.metrics(),
    }
    if self._first_stage is not None:
      meta["first_stage_config"] = _config_json(self._first_stage[0].config)
    (out / "bundle.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    (out / "README.md").write_text(_model_card(self, meta["metrics"], out))
    return out

  def metrics(self) -> dict[str, float]:
    """The evaluation metrics recorded for this step (``eval/...``), where the run has them."""
    if (self.source / "bundle.json").exists():
      return json.loads((self.source / "bundle.json").read_text()).get("metrics", {})
    values = writers.records_at(self.source / "metrics.jsonl", self.step)
    return {k: v for k, v in sorted(values.items()) if k.startswith("eval/")}

  def _inputs(self, x, labels, seed: int):
    """Model inputs and per-example model keys, as the eval step derives them."""
    x = np.asarray(x)
    labels = self._labels(labels, len(x))
    if self.data.kind == "image":
      if x.dtype != np.uint8:
        x = np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)
      if x.shape[1:] != tuple(self.data.shape):
        raise ValueError(f"expected images of shape {tuple(self.data.shape)}, got {x.shape[1:]}")
      batch = {"image": x, "label": labels}
    else:
      batch = {"points": x.astype(np.float32), "label": labels}
    key = genjax_random.stream_key(seed, genjax_random.EVAL_STREAM)
    keys = genjax_random.example_keys(key, jnp.arange(len(x), dtype=jnp.int32))
    data_keys, model_keys = genjax_random.split(keys, 2)
    return prepare_batch(batch, data_keys, self.config.data.preprocess), model_keys

  def _method(self, name: str):
    """``encode(params, x, labels)`` or ``decode(params, z, labels)``, compiled once."""
    family = self.family
    if hasattr(family, "decode_mean") and hasattr(family, "code"):  # Autoencoders, VAEs.
      encode, decode_mean = family.code, family.decode_mean
    elif hasattr(family, "decode") and hasattr(family, "encode"):  # VQ-VAE: code maps.
      encode = lambda p, x, y: family.encode(p, x)  # noqa: E731
      decode_mean = lambda p, z, y: family.decode(p, z)  # noqa: E731
    else:
      raise ValueError(f"family {self.config.family!r} has no encoder and decoder")
    conditional = family.conditional

    def encoded(params, x, labels):
      return encode(params, x, labels if conditional else None)

    def decoded(params, z, labels):
      return family.to_unit(decode_mean(params, z, labels if conditional else None))

    fn = encoded if name == "encode" else decoded
    return family.compiled(("model." + name,), lambda: fn)


def _config_json(config) -> dict:
  return json.loads(config.to_json_best_effort())


def _model_card(model: Model, metrics: dict, out: epath.Path) -> str:
  count = sum(int(np.size(v)) for v in jax.tree.leaves(model.params))
  d = model.data
  lines = [
    f"# {model.config.family} on {d.name}",
    "",
    f"Trained with genjax for {model.step} steps; {count:,} parameters"
    f"{' (EMA)' if model.family.ema_decay > 0 else ''}. Data: {d.kind}s of shape "
    f"{list(d.shape)}, preprocessing {d.preprocess}, {d.num_classes} classes.",
  ]
  if model.family.sampler_description():
    lines += ["", f"Sampler: {model.family.sampler_description()}."]
  if metrics:
    lines += ["", f"## Evaluation at step {model.step}", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k[len('eval/') :]} | {v:.6g} |" for k, v in metrics.items()]
  lines += [
    "",
    "## Use",
    "",
    "```python",
    "import genjax",
    f"model = genjax.load({str(out)!r})",
    "x = model.sample(16, seed=0)  # images in [0, 1], [16, H, W, C]",
    "```",
    "",
    f"`{PARAMS_FILE}`: the parameter tree in Flax's msgpack format "
    "(`flax.serialization.msgpack_restore`); `bundle.json`: config, data facts, step, metrics.",
    "",
  ]
  return "\n".join(lines)


def _round_up(n: int, multiple: int) -> int:
  return -(-n // multiple) * multiple


def _sampler(family: Family):
  """Per-device sampling over the ``data`` axis, samples gathered onto every device."""

  def generate(replicated, batch):
    params, key_data = replicated
    keys = genjax_random.example_keys(jax.random.wrap_key_data(key_data), batch["index"])
    x = family.sample(params, keys, batch["label"])
    x = family.to_unit(x) if family.data.kind == "image" else x
    gather = lambda v: jax.lax.all_gather(v, AXIS, tiled=True)  # noqa: E731
    return gather(x), gather(batch["mask"])

  return generate


def _scorer(family: Family, num_samples: int):
  return lambda params, inputs, keys: family.eval_fn(params, inputs, keys, num_samples)


# -- loading ---------------------------------------------------------------------


def load(path, step: int | None = None) -> Model:
  """The trained model in a run directory or an exported bundle.

  Args:
    path: a run directory (``--workdir`` of training) or a bundle from :func:`export`.
    step: a run directory's checkpoint step (default: the newest readable one).

  Raises:
    FileNotFoundError: ``path`` is neither, or no checkpoint in it can be read.
  """
  path = checkpoint_lib.as_path(path)
  if (path / PARAMS_FILE).exists():
    if step is not None:
      raise ValueError(f"{path} is an exported bundle of one step; step={step} applies to runs")
    return _load_bundle(path)
  if (path / "checkpoints").is_dir():
    return _load_run(path, step)
  raise FileNotFoundError(
    f"{path}: neither a run directory (no checkpoints/) nor an exported bundle (no {PARAMS_FILE})"
  )


def _make_family(config, info: DataInfo, first_stage) -> Family:
  extra = {"first_stage": first_stage} if first_stage is not None else {}
  return FAMILIES[config.family](config_lib.for_family(config), info, **extra)


def _load_run(workdir: epath.Path, step: int | None) -> Model:
  ckpt = checkpoint_lib.Checkpointer(workdir / "checkpoints", async_save=False)
  try:

    def read(step):
      config = ckpt.restore_config(step)
      resolved = config_lib.resolve(config)
      info = read_data_info(workdir, resolved)
      family = experiment.build_family(resolved, info)
      state = experiment.restore_state(ckpt, family, step)
      return resolved, family, state

    step, (config, family, state), _ = checkpoint_lib.newest_readable(ckpt, step, read)
  finally:
    ckpt.close()
  params = jax.tree.map(np.asarray, family.eval_params(state))
  first = getattr(family, "first_stage", None)
  return Model(config, family, params, step, workdir, _first_stage=first)


def _load_bundle(path: epath.Path) -> Model:
  meta = json.loads((path / "bundle.json").read_text())
  if meta.get("format", 0) > BUNDLE_FORMAT:
    raise ValueError(
      f"{path} was written by a newer genjax ({meta.get('genjax_version')}); upgrade"
    )
  config = config_lib.resolve(config_lib.complete(meta["config"]))
  info = data_info_from_json(meta["data"])
  raw = flax.serialization.msgpack_restore((path / PARAMS_FILE).read_bytes())
  first = None
  cls = FAMILIES[config.family]
  if cls.first_stage_family:
    first_config = config_lib.resolve(config_lib.complete(meta["first_stage_config"]))
    first = (_make_family(first_config, info, None), raw["vqvae"])
  family = _make_family(config, info, first)
  abstract = jax.eval_shape(family.eval_params, experiment.abstract_state(family))
  params = flax.serialization.from_state_dict(abstract, raw)
  checkpoint_lib.check_shapes(abstract, params, path / PARAMS_FILE)
  return Model(config, family, params, int(meta["step"]), path, _first_stage=first)


def data_info_to_json(info: DataInfo) -> dict:
  out = dataclasses.asdict(info)
  out["shape"] = list(info.shape)
  if info.modes is not None:
    out["modes"] = np.asarray(info.modes).tolist()
  return out


def data_info_from_json(d: dict) -> DataInfo:
  d = dict(d, shape=tuple(d["shape"]))
  if d.get("modes") is not None:
    d["modes"] = np.asarray(d["modes"], np.float32)
  return DataInfo(**d)


def write_data_info(workdir: epath.Path, info: DataInfo) -> None:
  """Saves the data facts beside the run, so loading it needs no dataset."""
  (workdir / DATA_INFO_FILE).write_text(json.dumps(data_info_to_json(info), indent=1) + "\n")


def read_data_info(workdir: epath.Path, config) -> DataInfo:
  """The run's data facts: saved beside it, or (older runs) read off the dataset."""
  path = workdir / DATA_INFO_FILE
  if path.exists():
    return data_info_from_json(json.loads(path.read_text()))
  return experiment.data_info(experiment.load_data(config), config.data.preprocess)

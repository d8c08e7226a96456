"""Autoregressive families: PixelCNN on pixels, and a PixelCNN prior over VQ-VAE codes.

``pixelcnn`` (van den Oord et al. 2016) models an image as a product of
per-pixel categoricals in raster order with a gated PixelCNN (no blind spot):
``levels = 2`` on binarized images (dynamic binarization resamples every
epoch; the test split gets one fixed binarization), ``levels = 256`` on uint8
images (``preprocess="scale_01"``). The likelihood is exact: evaluation reports
the test NLL in nats per image and bits/dim.

``vqvae_prior`` (van den Oord et al. 2017, second stage) fits the same model to
the code maps of a trained, frozen ``vqvae`` run (``config.prior.vqvae_workdir``)
and generates images by sampling codes from the prior and decoding them. The
frozen first stage is copied into ``TrainState.model_state["vqvae"]`` when the
run starts, so the run's checkpoints are self-contained. ``config.prior.
sample_from="uniform"`` draws codes uniformly instead: the baseline the
learned prior should beat on sample metrics (``genjax.evaluate
--set=prior.sample_from=uniform``).

Sampling is one compiled ``lax.fori_loop`` over positions, batched; a
conditional model (``config.model.conditional``) takes the class label.
"""

import math

import jax
import jax.numpy as jnp

from genjax.core import fields
from genjax.families.base import Family, image_data_errors, register
from genjax.families.vqvae import VQVAEFamily
from genjax.models.pixelcnn import GatedPixelCNN
from genjax.objectives import autoregressive as ar_objectives
from genjax.objectives.reductions import bits_per_dim
from genjax.samplers import autoregressive as ar_sampler

LEVELS_PREPROCESS = {2: ("binarize_dynamic", "binarize_static"), 256: ("scale_01",)}
SAMPLE_FROM = ("learned", "uniform")
PICTURE_COLUMNS = 8
COMPLETIONS = 3


F = fields.Field
PIXELCNN = {
  "num_layers": F(8, "gated layers (the first is mask type A)", integer=True, ge=1),
  "features": F(64, "channels", integer=True, ge=1),
  "kernel_size": F(3, "kernel side", integer=True, ge=3, odd=True),
  "levels": F(2, "values per pixel: 2 (binarized) | 256 (uint8)", choices=tuple(LEVELS_PREPROCESS)),
  "temperature": F(1.0, "sampling temperature", gt=0),
}
PRIOR = {
  "vqvae_workdir": F("", "the first stage's run directory (a trained vqvae run)"),
  "vqvae_step": F(0, "its checkpoint step (0 = latest)", integer=True, ge=0),
  "sample_from": F(
    "learned", "codes for samples: the learned prior or uniform", choices=SAMPLE_FROM
  ),
}


def prior_errors(c, first_stage_family: str) -> list[str]:
  """Errors of a prior's config: image data and a first-stage run to build on."""
  errors = image_data_errors(c)
  if not c.prior.vqvae_workdir:
    errors.append(
      "config.prior.vqvae_workdir='': set it to the run directory of a trained "
      f"{first_stage_family!r} experiment (the first stage)"
    )
  return errors


class _AutoregressiveBase(Family):
  """Gated PixelCNN over integer grids: likelihood, sampling, completions.

  Subclasses say how images map to grids (:meth:`to_grid`) and back
  (:meth:`from_grid`). Every method takes ``variables``: ``{"prior": params}``
  plus whatever the mapping needs (the frozen VQ-VAE).
  """

  can_sample = True
  nll_uses_samples = False  # Exact likelihood.
  unit = "bits_per_dim"

  def __init__(self, config, data, num_values: int, grid_shape: tuple[int, int], input_kind: str):
    super().__init__(config, data)
    p = config.pixelcnn
    self.conditional = bool(config.model.conditional)
    self.num_classes = self.label_classes(self.conditional)
    self.num_values = num_values
    self.grid_shape = grid_shape
    self.temperature = float(p.temperature)
    self.model = GatedPixelCNN(
      num_layers=int(p.num_layers),
      features=int(p.features),
      num_outputs=num_values,
      kernel_size=int(p.kernel_size),
      num_classes=self.num_classes,
      input_kind=input_kind,
      num_embeddings=num_values if input_kind == "categorical" else 0,
      dtype=self.dtype,
    )

  # -- grids ------------------------------------------------------------------

  def to_grid(self, variables, x):
    """Integer grids ``[B, H, W]`` of data-space images ``x``."""
    raise NotImplementedError

  def from_grid(self, variables, grid):
    """Data-space images of integer grids ``[B, H, W]``."""
    raise NotImplementedError

  def _labels(self, labels):
    return labels if self.conditional else None

  def logits(self, variables, grid, labels):
    """Per-position logits ``[B, H, W, V]``; position i sees only positions < i."""
    return self.model.apply({"params": variables["prior"]}, grid, self._labels(labels))

  def nll(self, variables, grid, labels):
    """Exact negative log-likelihood of each grid, nats ``[B]``."""
    return ar_objectives.categorical_nll(self.logits(variables, grid, labels), grid)

  # -- training and evaluation ------------------------------------------------

  def init_params(self, key, batch):
    grid = jnp.zeros((batch["x"].shape[0],) + self.grid_shape, jnp.int32)
    params = self.model.init(key, grid, self._labels(batch["label"]))["params"]
    return params, self.frozen_state()

  def frozen_state(self) -> dict:
    """Non-trainable variables the grids need (none for pixels)."""
    return {}

  def eval_params(self, state):
    return {"prior": super().eval_params(state), **state.model_state}

  def stateful_loss_fn(self, params, model_state, batch, keys, step):
    del keys, step
    variables = {"prior": params, **model_state}
    grid = self.to_grid(variables, batch["x"])
    nll = self.nll(variables, grid, batch["label"])
    loss = jnp.mean(nll)
    return loss, ({self.unit: bits_per_dim(loss, math.prod(self.grid_shape))}, model_state)

  def eval_fn(self, params, batch, keys, num_samples):
    del keys, num_samples
    nll = self.nll(params, self.to_grid(params, batch["x"]), batch["label"])
    return {"nll": nll, self.unit: bits_per_dim(nll, math.prod(self.grid_shape))}

  # -- sampling ---------------------------------------------------------------

  def sample_grid(self, variables, keys, labels, init=None, start=0):
    """Ancestral samples ``[B, H, W]``; positions before ``start`` are kept from ``init``."""
    return ar_sampler.sample(
      lambda grid, y: self.logits(variables, grid, y),
      self.grid_shape,
      keys,
      labels=self._labels(labels),
      init=init,
      start=start,
      temperature=self.temperature,
      context_rows=self.model.context_rows(),
    )

  def sample(self, params, keys, labels):
    return self.from_grid(params, self.sample_grid(params, keys, labels))

  # -- pictures ---------------------------------------------------------------

  def _sample_picture(self, variables, key, count: int):
    """About ``count`` samples: rows of 8, or one row per class with the same keys down columns."""
    if self.conditional:
      columns = max(1, count // self.num_classes)
      labels = jnp.repeat(jnp.arange(self.num_classes), columns)
      keys = jnp.tile(jax.random.split(key, columns), self.num_classes)
      name = "samples_by_class"
    else:
      columns = PICTURE_COLUMNS
      labels = jnp.zeros((max(count, columns),), jnp.int32)
      keys = jax.random.split(key, labels.shape[0])
      name = "samples"
    images = self.compiled("sample", lambda: self.sample)(variables, keys, labels)
    return name, self.grid(images, columns)

  def captions(self):
    return {
      "samples": "ancestral samples, raster order",
      "samples_by_class": "row c: class c",
      "samples_uniform_prior": "codes drawn uniformly and independently (no prior), decoded",
      "completions": "each row: the occluded test input, completions of its bottom half, "
      "the original",
    }

  def _completion_picture(self, variables, batch, key, rows: int = 4):
    """Rows: the occluded input, completions of its bottom half, the original."""
    x, labels = batch["x"][:rows], batch["label"][:rows]
    rows = x.shape[0]
    height, width = self.grid_shape
    start = (height // 2) * width

    def complete(variables, x, labels, keys):
      grid = self.to_grid(variables, x)
      grid = jnp.repeat(grid, COMPLETIONS, axis=0)
      labels = jnp.repeat(labels, COMPLETIONS)
      return self.from_grid(variables, self.sample_grid(variables, keys, labels, grid, start))

    keys = jax.random.split(jax.random.fold_in(key, 1), rows * COMPLETIONS)
    done = self.compiled("complete", lambda: complete)(variables, x, labels, keys)
    done = done.reshape((rows, COMPLETIONS) + done.shape[1:])
    lo, hi = self.data.data_range
    kept_rows = x.shape[1] * (height // 2) // height  # Image rows above the first sampled one.
    occluded = x.at[:, kept_rows:].set((lo + hi) / 2)
    table = jnp.concatenate([occluded[:, None], done, x[:, None]], axis=1)
    return self.grid(table.reshape((-1,) + x.shape[1:]), COMPLETIONS + 2)


@register("pixelcnn")
class PixelCNNFamily(_AutoregressiveBase):
  """Gated PixelCNN on binarized (2 levels) or uint8 (256 levels) single-channel images.

  Config: ``config.pixelcnn`` (layers, features, kernel size, levels,
  temperature); ``config.model.conditional`` for a class-conditional model.
  """

  def __init__(self, config, data):
    if data.kind != "image" or data.shape[-1] != 1:
      raise ValueError(
        f"family 'pixelcnn' models single-channel images; {data.name!r} has shape {data.shape}"
      )
    levels = int(config.pixelcnn.levels)
    super().__init__(
      config, data, levels, tuple(data.shape[:2]), "binary" if levels == 2 else "categorical"
    )

  sections = {"pixelcnn": PIXELCNN}

  @classmethod
  def validate(cls, c):
    errors = image_data_errors(c)
    levels = c.pixelcnn.levels
    if levels in LEVELS_PREPROCESS and c.data.preprocess not in LEVELS_PREPROCESS[levels]:
      errors.append(
        f"config.data.preprocess={c.data.preprocess!r}: config.pixelcnn.levels={levels} "
        f"needs {' or '.join(map(repr, LEVELS_PREPROCESS[levels]))}"
      )
    return errors

  def to_grid(self, variables, x):
    del variables
    return jnp.round(x[..., 0] * (self.num_values - 1)).astype(jnp.int32)

  def from_grid(self, variables, grid):
    del variables
    return (grid.astype(jnp.float32) / (self.num_values - 1))[..., None]

  def pictures(self, params, batch, key):
    # Each sample runs the network once per pixel: as many as config.eval.num_images.
    name, samples = self._sample_picture(params, key, batch["x"].shape[0])
    return {name: samples, "completions": self._completion_picture(params, batch, key)}


class CodePrior(_AutoregressiveBase):
  """A PixelCNN prior over a frozen first stage named by ``config.prior``."""

  unit = "bits_per_code"
  sections = {"pixelcnn": PIXELCNN, "prior": PRIOR}

  @classmethod
  def first_stage_run(cls, config) -> tuple[str, int, str]:
    return config.prior.vqvae_workdir, config.prior.vqvae_step, "prior.vqvae_workdir"

  @classmethod
  def validate(cls, c):
    return prior_errors(c, cls.first_stage_family)


@register("vqvae_prior")
class VQPriorFamily(CodePrior):
  """PixelCNN prior over the code maps of a frozen VQ-VAE; samples decode through it.

  Config: ``config.prior`` (first-stage workdir and step, code source for
  samples) and ``config.pixelcnn`` (the prior network). ``config.data`` must
  name the dataset and preprocessing the first stage was trained with.
  """

  first_stage_family = "vqvae"

  def __init__(self, config, data, first_stage: tuple[VQVAEFamily, dict]):
    """``first_stage``: the trained VQ-VAE family and its evaluation variables."""
    self.first_stage = first_stage  # Kept whole: a variant of this family is built with it.
    self.vqvae, self._first_stage = first_stage
    self.sample_from = config.prior.sample_from
    super().__init__(config, data, self.vqvae.num_embeddings, self.vqvae.code_shape, "categorical")

  def frozen_state(self):
    return {"vqvae": self._first_stage}

  def to_grid(self, variables, x):
    return jax.lax.stop_gradient(self.vqvae.encode(variables["vqvae"], x))

  def from_grid(self, variables, grid):
    return self.vqvae.decode(variables["vqvae"], grid)

  def uniform_grid(self, keys):
    """Codes drawn uniformly and independently: the no-prior baseline."""
    return jax.vmap(lambda k: jax.random.randint(k, self.grid_shape, 0, self.num_values))(keys)

  def sample(self, params, keys, labels):
    if self.sample_from == "uniform":
      return self.from_grid(params, self.uniform_grid(keys))
    return super().sample(params, keys, labels)

  def pictures(self, params, batch, key):
    name, samples = self._sample_picture(params, key, PICTURE_COLUMNS**2)
    keys = jax.random.split(jax.random.fold_in(key, 2), PICTURE_COLUMNS**2)
    uniform = self.compiled("uniform", lambda: lambda v, k: self.from_grid(v, self.uniform_grid(k)))
    return {
      name: samples,
      "samples_uniform_prior": self.grid(uniform(params, keys), PICTURE_COLUMNS),
      "completions": self._completion_picture(params, batch, key, rows=8),
    }

"""VQ-VAE-2 second stage: a top prior and a bottom prior over a frozen ``vqvae2`` run's codes.

Both priors are trained jointly in one run (one workdir, one ``genjax.load``):
their losses add up to the exact negative log-likelihood of the pair of code
maps, ``-log p(top | y) - log p(bottom | top, y)``, and they share no
parameters, so each network gets the gradient it would get alone.

  * top prior: gated PixelCNN over the top map (``config.pixelcnn``);
  * bottom prior: gated PixelCNN over the bottom map whose every layer also
    reads a conditioning map of the whole top map
    (:class:`genjax.models.vqvae2.BottomPrior`);
  * both take the class label with ``config.model.conditional``.

Samples are ancestral: top codes in raster order, then bottom codes given the
top map and the class, then the frozen decoder. Example ``i``'s top and bottom
draws use two keys split from its own key, so a sample depends only on its key.
As for ``vqvae_prior``, the frozen first stage is copied into
``TrainState.model_state["vqvae"]`` when the run starts, so checkpoints and
exported bundles carry it; ``config.prior.sample_from="uniform"`` decodes
uniformly drawn codes at both levels (the no-prior baseline).
"""

import math

import jax
import jax.numpy as jnp

from genjax.core import random as genjax_random
from genjax.families.autoregressive import PICTURE_COLUMNS, CodePrior
from genjax.families.base import register
from genjax.families.vqvae2 import VQVAE2Family
from genjax.models.vqvae2 import BottomPrior
from genjax.objectives import autoregressive as ar_objectives
from genjax.objectives.reductions import bits_per_dim
from genjax.samplers import autoregressive as ar_sampler

RESAMPLES = 6


@register("vqvae2_prior")
class VQVAE2PriorFamily(CodePrior):
  """Top and bottom PixelCNN priors over a frozen VQ-VAE-2; samples decode through it.

  The inherited single-grid machinery (``logits``, ``sample_grid``) is the top
  prior's; the bottom prior is :meth:`bottom_logits`.

  Config: ``config.prior`` (first-stage workdir and step, code source for
  samples), ``config.pixelcnn`` (both prior networks) and
  ``config.model.conditional``. ``config.data`` must match the first stage's.
  """

  first_stage_family = "vqvae2"

  def __init__(self, config, data, first_stage: tuple[VQVAE2Family, dict]):
    """``first_stage``: the trained VQ-VAE-2 family and its evaluation variables."""
    self.first_stage = first_stage
    self.vqvae, self._first_stage = first_stage
    self.sample_from = config.prior.sample_from
    vq = self.vqvae
    super().__init__(config, data, vq.top_num_embeddings, vq.top_shape, "categorical")
    p = config.pixelcnn
    self.bottom_shape = vq.code_shape
    self.bottom_model = BottomPrior(
      bottom_shape=vq.code_shape,
      num_embeddings=vq.num_embeddings,
      top_num_embeddings=vq.top_num_embeddings,
      num_layers=int(p.num_layers),
      features=int(p.features),
      kernel_size=int(p.kernel_size),
      num_classes=self.num_classes,
    )
    self.num_codes = math.prod(vq.top_shape) + math.prod(vq.code_shape)

  # -- networks ---------------------------------------------------------------

  def init_params(self, key, batch):
    n, labels = batch["x"].shape[0], self._labels(batch["label"])
    top = jnp.zeros((n,) + self.grid_shape, jnp.int32)
    bottom = jnp.zeros((n,) + self.bottom_shape, jnp.int32)
    top_key, bottom_key = jax.random.split(key)
    params = {
      "top": self.model.init(top_key, top, labels)["params"],
      "bottom": self.bottom_model.init(bottom_key, bottom, top, labels)["params"],
    }
    return params, {"vqvae": self._first_stage}

  def logits(self, variables, grid, labels):
    """Top prior logits ``[B, h_top, w_top, K_top]``; position i sees top codes < i."""
    return self.model.apply({"params": variables["prior"]["top"]}, grid, self._labels(labels))

  def condition(self, variables, top):
    """The bottom prior's conditioning map of top codes ``[B, h_top, w_top]``."""
    params = {"params": variables["prior"]["bottom"]}
    return self.bottom_model.apply(params, top, method=BottomPrior.condition)

  def bottom_logits(self, variables, bottom, cond, labels):
    """Bottom prior logits ``[B, h, w, K]`` given the conditioning map of the top codes."""
    params = {"params": variables["prior"]["bottom"]}
    return self.bottom_model.apply(
      params, bottom, cond, self._labels(labels), method=BottomPrior.logits
    )

  def codes(self, variables, x):
    """The frozen first stage's code maps ``(top, bottom)`` of images ``x``."""
    return jax.lax.stop_gradient(self.vqvae.encode(variables["vqvae"], x))

  def level_nll(self, variables, top, bottom, labels):
    """Exact ``(-log p(top | y), -log p(bottom | top, y))`` in nats, each ``[B]``."""
    top_nll = ar_objectives.categorical_nll(self.logits(variables, top, labels), top)
    cond = self.condition(variables, top)
    bottom_logits = self.bottom_logits(variables, bottom, cond, labels)
    return top_nll, ar_objectives.categorical_nll(bottom_logits, bottom)

  # -- training and evaluation ------------------------------------------------

  def _scores(self, variables, batch):
    top_nll, bottom_nll = self.level_nll(
      variables, *self.codes(variables, batch["x"]), batch["label"]
    )
    nll = top_nll + bottom_nll
    return {
      "nll": nll,
      "nll_top": top_nll,
      "nll_bottom": bottom_nll,
      self.unit: bits_per_dim(nll, self.num_codes),
    }

  def stateful_loss_fn(self, params, model_state, batch, keys, step):
    del keys, step
    scores = self._scores({"prior": params, **model_state}, batch)
    metrics = {k: jnp.mean(v) for k, v in scores.items()}
    return metrics["nll"], (metrics, model_state)

  def eval_fn(self, params, batch, keys, num_samples):
    del keys, num_samples
    return self._scores(params, batch)

  # -- sampling ---------------------------------------------------------------

  def sample_bottom(self, variables, keys, labels, top):
    """Bottom code maps ``[B, h, w]`` drawn given top maps ``top`` and labels."""
    cond = self.condition(variables, top)
    return ar_sampler.sample(
      lambda grid, y: self.bottom_logits(variables, grid, cond, y),
      self.bottom_shape,
      keys,
      labels=self._labels(labels),
      temperature=self.temperature,
    )

  def sample_codes(self, variables, keys, labels):
    """Ancestral ``(top [B, h_top, w_top], bottom [B, h, w])``: top first, then bottom given it."""
    top_keys, bottom_keys = genjax_random.split(keys, 2)
    if self.sample_from == "uniform":
      draw = lambda ks, shape, n: jax.vmap(lambda k: jax.random.randint(k, shape, 0, n))(ks)  # noqa: E731
      top = draw(top_keys, self.grid_shape, self.num_values)
      return top, draw(bottom_keys, self.bottom_shape, self.vqvae.num_embeddings)
    top = self.sample_grid(variables, top_keys, labels)
    return top, self.sample_bottom(variables, bottom_keys, labels, top)

  def sample(self, params, keys, labels):
    return self.vqvae.decode(params["vqvae"], *self.sample_codes(params, keys, labels))

  # -- pictures ---------------------------------------------------------------

  def captions(self):
    return {
      "samples": "ancestral samples: top codes, then bottom codes given them, decoded",
      "samples_by_class": "row c: class c",
      "bottom_resamples": "each row: one sampled top code map, its bottom codes resampled "
      "across the columns (what the bottom level adds)",
    }

  def _resamples(self, variables, keys, labels):
    """One top map per row, ``RESAMPLES`` bottom maps drawn given it across the row."""
    top = self.sample_grid(variables, genjax_random.fold_in(keys, 0), labels)
    top = jnp.repeat(top, RESAMPLES, axis=0)
    labels = jnp.repeat(labels, RESAMPLES)
    bottom_keys = jax.vmap(lambda k: jax.random.split(k, RESAMPLES))(keys).reshape(-1)
    bottom = self.sample_bottom(variables, bottom_keys, labels, top)
    return self.vqvae.decode(variables["vqvae"], top, bottom)

  def pictures(self, params, batch, key):
    name, samples = self._sample_picture(params, key, PICTURE_COLUMNS**2)
    rows = min(PICTURE_COLUMNS, max(self.num_classes, 1) if self.conditional else 4)
    keys = jax.random.split(jax.random.fold_in(key, 3), rows)
    labels = jnp.arange(rows, dtype=jnp.int32) % max(self.num_classes, 1)
    resampled = self.compiled("resamples", lambda: self._resamples)(params, keys, labels)
    return {name: samples, "bottom_resamples": self.grid(resampled, RESAMPLES)}

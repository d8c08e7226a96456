"""GAN family: two players, two optimizers, BatchNorm state, one compiled step.

One ``train_step`` runs ``config.gan.d_steps`` discriminator updates (a
``lax.scan``, each on its own minibatch) and then one generator update, all
inside the data-parallel step: gradients of each player are averaged over
devices with ``lax.pmean`` and BatchNorm statistics are averaged across
devices by the modules themselves (``axis_name="data"``), so 1 device and 8
devices compute the same update. Each player has its own optax optimizer and
learning rate (two time-scale update rule, Heusel et al. 2017). The EMA of the
generator is what evaluation and pictures sample from.

With ``config.train.grad_accum_steps`` each player's gradient is accumulated
over the micro-batches before its update: D's over all of them first, then G's
against the updated D, as on the full batch. BatchNorm couples the examples of
a batch, so GANs with it (every DCGAN) refuse micro-batches.

``gan`` is unconditional; ``cgan`` (or ``config.model.conditional=True``)
feeds the label to both players (an embedding into G; projection or
concatenation in D). ``config.gan.code_classes=K`` makes an unconditional GAN
an InfoGAN (Chen et al. 2016): G also takes a uniform K-way code, which D's
auxiliary head Q(c | x) learns to read back from the samples, both players
minimising ``config.gan.info_weight`` times that cross-entropy. The code
gives G a discrete input, so it can put separate modes (digit classes) apart
instead of bridging them with a continuous map of z alone.
"""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax import lax

from genjax.core import fields, optim
from genjax.core import random as genjax_random
from genjax.core.parallel import AXIS
from genjax.data import sources
from genjax.evaluation import images as image_lib
from genjax.families.base import Family, register
from genjax.models import gan as gan_models
from genjax.objectives import gan as gan_objectives

GENERATOR, DISCRIMINATOR = "generator", "discriminator"
# Folded into an example's key to draw its InfoGAN code (z uses the key itself).
CODE_STREAM = 1
# Noise vectors used to recompute the EMA generator's BatchNorm statistics.
STANDING_STATS_EXAMPLES = 1024


F = fields.Field
GAN = {
  "loss": F("non_saturating", "adversarial loss", choices=gan_objectives.LOSSES),
  "d_steps": F(1, "D updates per G update, each on its own minibatch", integer=True, ge=1),
  "gp_weight": F(0.0, "WGAN-GP gradient-penalty weight (10 in Gulrajani et al.)", ge=0),
  "r1_weight": F(0.0, "R1 penalty weight gamma (penalty gamma / 2 |grad D(x)|^2)", ge=0),
  "g_learning_rate": F(2e-4, "G's learning rate (two time-scale update rule)", gt=0),
  "d_learning_rate": F(2e-4, "D's learning rate", gt=0),
  "base_channels": F(32, "DCGAN width", integer=True, ge=1),
  "d_norm": F("", 'D normalisation ("" = batch for DCGAN)', choices=("",) + gan_models.NORMS),
  "conditioning": F("projection", "conditional D", choices=gan_models.CONDITIONINGS),
  "code_classes": F(0, "InfoGAN: size of G's uniform categorical code (0 = off)"),
  "info_weight": F(1.0, "InfoGAN: weight of the code cross-entropy in both losses", ge=0),
}


def _optimizer(config, learning_rate: float, num_steps: int) -> optax.GradientTransformation:
  opt = ml_collections.ConfigDict(config.optimizer.to_dict())
  opt.learning_rate = learning_rate
  return optim.make_optimizer(opt, num_steps)


def _mean(tree):
  return jax.tree.map(lambda v: jnp.mean(v, axis=0), tree)


@register("cgan", model__conditional=True)
@register("gan")
class GANFamily(Family):
  """Generative adversarial networks (Goodfellow et al. 2014) and their common losses.

  Config: ``config.gan`` (loss, d_steps, penalties, learning rates, DCGAN
  width and discriminator normalisation) and ``config.model`` (architecture
  "mlp" for 2-D points or "dcgan" for 28×28 / 32×32 images, hidden_sizes,
  latent_dim). Images must be preprocessed to [-1, 1] (``scale_pm1``): the
  generator ends in tanh.
  """

  can_sample = True
  sections = {"gan": GAN}
  learning_rate_fields = ("gan.g_learning_rate", "gan.d_learning_rate")

  def __init__(self, config: ml_collections.ConfigDict, data):
    super().__init__(config, data)
    g, m = config.gan, config.model
    self.conditional = bool(m.conditional)
    self.num_classes = self.label_classes(self.conditional)
    self.code_classes = int(g.code_classes)
    self.info_weight = float(g.info_weight)
    self.latent_dim = int(m.latent_dim)
    self.loss = gan_objectives.get_loss(g.loss)
    self.minibatches = self.d_steps = int(g.d_steps)
    self.gp_weight, self.r1_weight = float(g.gp_weight), float(g.r1_weight)
    self.generator, self.discriminator = gan_models.build_gan(
      m.architecture,
      data_shape=data.shape,
      latent_dim=self.latent_dim,
      num_classes=self.num_classes,
      hidden_sizes=tuple(m.hidden_sizes),
      base_channels=int(g.base_channels),
      d_norm=g.d_norm or None,
      conditioning=g.conditioning,
      code_classes=self.code_classes,
      axis_name=AXIS,
      dtype=self.dtype,
    )
    steps = config.train.num_steps
    self.tx_g = _optimizer(config, g.g_learning_rate, steps)
    self.tx_d = _optimizer(config, g.d_learning_rate, steps * self.d_steps)

  @classmethod
  def validate(cls, c):
    g, errors = c.gan, []
    points = c.data.name in sources.POINT_DATASETS
    want = "mlp" if points else "dcgan"
    if c.model.architecture != want:
      kind = "2-D points" if points else "images"
      errors.append(
        f"config.model.architecture={c.model.architecture!r}: GANs on {kind} use {want!r}"
      )
    if not points and c.data.preprocess != "scale_pm1":
      errors.append(
        f"config.data.preprocess={c.data.preprocess!r}: the generator ends in tanh; use 'scale_pm1'"
      )
    batch_norm = g.d_norm == "batch" or (g.d_norm == "" and not points)
    if g.gp_weight > 0 and batch_norm:
      errors.append(
        f"config.gan.gp_weight={g.gp_weight!r}: the gradient penalty needs a discriminator "
        "that treats examples independently; set config.gan.d_norm='layer', 'spectral' or 'none'"
      )
    if not isinstance(g.code_classes, int) or g.code_classes < 0 or g.code_classes == 1:
      errors.append(
        f"config.gan.code_classes={g.code_classes!r}: must be 0 (no code) or an integer >= 2"
      )
    elif g.code_classes and c.model.conditional:
      errors.append(
        f"config.gan.code_classes={g.code_classes!r}: a conditional GAN has labels already; "
        "InfoGAN codes are for unconditional models (set it to 0)"
      )
    return errors

  @classmethod
  def couples_examples(cls, c):
    if c.model.architecture == "dcgan" or c.gan.d_norm == "batch":
      return "BatchNorm normalises every example with its batch's statistics"
    return None

  # -- networks ---------------------------------------------------------------

  def _labels(self, labels):
    """D's label input: the label of a conditional model, else nothing."""
    return labels if self.conditional else None

  def _codes(self, keys):
    """The InfoGAN code of every example, drawn from its key (None without codes)."""
    if not self.code_classes:
      return None
    return genjax_random.randint(genjax_random.fold_in(keys, CODE_STREAM), self.code_classes)

  def _g_labels(self, keys, labels):
    """G's label input: the label (conditional), the example's code (InfoGAN), or nothing."""
    return labels if self.conditional else self._codes(keys)

  def _cycling_g_labels(self, n: int):
    """``(labels [n], G's input)`` cycling through G's labels or codes, for fixed pictures."""
    labels = jnp.arange(n, dtype=jnp.int32) % max(self.num_classes, self.code_classes, 1)
    return labels, (labels if self.conditional or self.code_classes else None)

  @staticmethod
  def _apply(module, params, stats, inputs, labels, train: bool):
    """``(output, new_batch_stats)``; statistics only change in training mode."""
    variables = {"params": params}
    if stats:
      variables["batch_stats"] = stats
    if train and stats:
      out, updates = module.apply(variables, inputs, labels, train=True, mutable=["batch_stats"])
      return out, updates["batch_stats"]
    return module.apply(variables, inputs, labels, train=train), stats

  def _generate(self, params, stats, keys, labels, train: bool, g_labels=None):
    """G(z) from per-example keys; ``g_labels`` overrides the label or code G is given."""
    z = genjax_random.normal(keys, (self.latent_dim,))
    if g_labels is None:
      g_labels = self._g_labels(keys, labels)
    return self._apply(self.generator, params, stats, z, g_labels, train)

  def _critic_and_codes(self, params, stats, x, labels, train: bool):
    """``(logits [B], code_logits [B, K] or None, new_batch_stats)``."""
    out, stats = self._apply(self.discriminator, params, stats, x, self._labels(labels), train)
    logits, code_logits = out if self.code_classes else (out, None)
    return logits, code_logits, stats

  def _critic(self, params, stats, x, labels, train: bool):
    logits, _, stats = self._critic_and_codes(params, stats, x, labels, train)
    return logits, stats

  def _info_loss(self, code_logits, codes, metrics):
    """InfoGAN's weighted code cross-entropy per example (0 without codes); logs it."""
    if not self.code_classes:
      return 0.0
    loss = gan_objectives.info_code_loss(code_logits, codes)
    metrics["info_loss"] = jnp.mean(loss)
    metrics["code_accuracy"] = jnp.mean(jnp.argmax(code_logits, -1) == codes)
    return self.info_weight * loss

  def init_params(self, key, batch):
    key_g, key_d = jax.random.split(key)
    x, labels = batch["x"], self._labels(batch["label"])
    z = jnp.zeros((x.shape[0], self.latent_dim), x.dtype)
    g_labels = jnp.zeros((x.shape[0],), jnp.int32) if self.code_classes else labels
    g = self.generator.init(key_g, z, g_labels, train=False)
    d = self.discriminator.init(key_d, x, labels, train=False)
    params = {GENERATOR: g["params"], DISCRIMINATOR: d["params"]}
    stats = {GENERATOR: g.get("batch_stats", {}), DISCRIMINATOR: d.get("batch_stats", {})}
    return params, stats

  def optimizers(self):
    return {GENERATOR: self.tx_g, DISCRIMINATOR: self.tx_d}

  def eval_params(self, state):
    """EMA parameters with BatchNorm statistics that belong to them.

    The running statistics in ``model_state`` were collected with the raw
    generator; the EMA weights produce other activations, so sampling with
    them would normalise wrongly. Standing statistics (as in BigGAN) fix that:
    one pass of the EMA generator over a fixed noise batch in training mode.
    """
    if self.ema_decay == 0 or not state.model_state[GENERATOR]:
      params = state.ema_params if self.ema_decay > 0 else state.params
      return {"params": params, "batch_stats": state.model_state}
    g_stats = self._standing_stats(state.ema_params, state.model_state[GENERATOR])
    stats = dict(state.model_state, **{GENERATOR: g_stats})
    return {"params": state.ema_params, "batch_stats": stats}

  def _standing_stats(self, params, old_stats):
    return self.compiled("standing_stats", self._standing_stats_fn)(params, old_stats)

  def _standing_stats_fn(self):
    # Outside the data-parallel step: no device axis, and momentum 0 so the
    # "running" averages become exactly this batch's statistics.
    module = self.generator.clone(axis_name=None, momentum=0.0)
    num = STANDING_STATS_EXAMPLES
    keys = jax.random.split(jax.random.key(self.config.seed), num)
    _, g_labels = self._cycling_g_labels(num)

    def stats(params, stats):
      z = genjax_random.normal(keys, (self.latent_dim,))
      variables = {"params": params[GENERATOR], "batch_stats": stats}
      _, updates = module.apply(variables, z, g_labels, train=True, mutable=["batch_stats"])
      return updates["batch_stats"]

    return stats

  # -- training ---------------------------------------------------------------

  def _d_loss(self, d_params, d_stats, x, fake, labels, codes, keys):
    real_logits, stats = self._critic(d_params, d_stats, x, labels, True)
    fake_logits, code_logits, stats = self._critic_and_codes(d_params, stats, fake, labels, True)
    per_example = self.loss.discriminator(real_logits, fake_logits)
    metrics = {
      "d_loss": jnp.mean(per_example),
      "real_logit": jnp.mean(real_logits),
      "fake_logit": jnp.mean(fake_logits),
    }
    per_example = per_example + self._info_loss(code_logits, codes, metrics)
    critic = lambda v: self._critic(d_params, stats, v, labels, False)[0]  # noqa: E731
    if self.gp_weight:
      alpha = genjax_random.uniform(keys, ())
      penalty = gan_objectives.gradient_penalty(critic, x, fake, alpha)
      per_example = per_example + self.gp_weight * penalty
      metrics["gradient_penalty"] = jnp.mean(penalty)
    if self.r1_weight:
      penalty = gan_objectives.r1_penalty(critic, x)
      per_example = per_example + 0.5 * self.r1_weight * penalty
      metrics["r1_penalty"] = jnp.mean(penalty)
    return jnp.mean(per_example), (metrics, stats)

  def _d_update(self, g_params, g_stats, carry, minibatch):
    d_params, d_opt, d_stats = carry
    grad_fn = jax.value_and_grad(self._d_loss, has_aux=True)

    def grads_and_metrics(d_stats, micro):
      x, labels, keys = micro
      z_keys, penalty_keys = genjax_random.split(keys, 2)
      codes = self._codes(z_keys)
      fake = self._generate(g_params, g_stats, z_keys, labels, True, g_labels=codes)[0]
      (_, (metrics, d_stats)), grads = grad_fn(
        d_params, d_stats, x, lax.stop_gradient(fake), labels, codes, penalty_keys
      )
      return grads, metrics, d_stats

    grads, metrics, d_stats = self.accumulate(grads_and_metrics, d_stats, minibatch)
    d_params, d_opt, norms = self.apply_gradients(DISCRIMINATOR, d_params, d_opt, grads, "d_")
    return (d_params, d_opt, d_stats), dict(metrics, **norms)

  def _g_loss(self, g_params, g_stats, d_params, d_stats, keys, labels):
    codes = self._codes(keys)
    fake, g_stats = self._generate(g_params, g_stats, keys, labels, True, g_labels=codes)
    # D's statistics from this pass are not kept: only D's own updates move them.
    logits, code_logits, _ = self._critic_and_codes(d_params, d_stats, fake, labels, True)
    per_example = self.loss.generator(logits)
    metrics = {"g_loss": jnp.mean(per_example)}
    info = self._info_loss(code_logits, codes, {})
    loss = jnp.mean(per_example + info)
    return loss, (metrics, g_stats)

  def train_step(self, state, batch, keys):
    """``d_steps`` discriminator updates (scan), then one generator update.

    Args:
      state: the train state (params/opt_state/model_state keyed by player).
      batch: ``x [b, k, ...]``, ``label [b, k]`` (``[b, ...]`` when ``k = 1``).
      keys: per-example keys of the same leading shape.
    """
    x, labels = batch["x"], batch["label"]
    if labels.ndim == 1:  # One minibatch: add its axis.
      x, labels, keys = x[:, None], labels[:, None], keys[:, None]
    swap = functools.partial(jnp.swapaxes, axis1=0, axis2=1)  # -> [k, b, ...]
    x, labels, keys = swap(x), swap(labels), swap(keys)
    params, stats, opt = state.params, state.model_state, state.opt_state
    d_update = functools.partial(self._d_update, params[GENERATOR], stats[GENERATOR])
    carry = (params[DISCRIMINATOR], opt[DISCRIMINATOR], stats[DISCRIMINATOR])
    (d_params, d_opt, d_stats), d_metrics = lax.scan(d_update, carry, (x, labels, keys))
    g_keys = genjax_random.fold_in(keys[-1], 1)
    grad_fn = jax.value_and_grad(self._g_loss, has_aux=True)

    def g_grads_and_metrics(g_stats, micro):
      (_, (g_metrics, g_stats)), grads = grad_fn(
        params[GENERATOR], g_stats, d_params, d_stats, *micro
      )
      return grads, g_metrics, g_stats

    # G's gradient, over all micro-batches, is taken against D after its updates.
    grads, g_metrics, g_stats = self.accumulate(
      g_grads_and_metrics, stats[GENERATOR], (g_keys, labels[-1])
    )
    g_params, g_opt, norms = self.apply_gradients(
      GENERATOR, params[GENERATOR], opt[GENERATOR], grads, "g_"
    )
    metrics = dict(_mean(d_metrics), **g_metrics, **norms)
    metrics["loss"] = metrics["d_loss"] + metrics["g_loss"]
    return self.finish_step(
      state,
      {GENERATOR: g_params, DISCRIMINATOR: d_params},
      {GENERATOR: g_opt, DISCRIMINATOR: d_opt},
      {GENERATOR: g_stats, DISCRIMINATOR: d_stats},
      metrics,
    )

  # -- evaluation -------------------------------------------------------------

  def sample(self, params, keys, labels, g_labels=None):
    """Samples of the eval generator; an InfoGAN draws each code from its key
    unless ``g_labels`` fixes them."""
    variables, stats = params["params"], params["batch_stats"]
    g = variables[GENERATOR], stats[GENERATOR]
    return self._generate(*g, keys, labels, False, g_labels)[0]

  def eval_fn(self, params, batch, keys, num_samples):
    """Discriminator outputs on test data and on as many fresh samples."""
    del num_samples
    d_params, d_stats = params["params"][DISCRIMINATOR], params["batch_stats"][DISCRIMINATOR]
    labels = batch["label"]
    real_logits, _ = self._critic(d_params, d_stats, batch["x"], labels, False)
    fake = self.sample(params, keys, labels)
    fake_logits, _ = self._critic(d_params, d_stats, fake, labels, False)
    return {
      "d_real_logit": real_logits,
      "d_fake_logit": fake_logits,
      "d_accuracy": 0.5 * ((real_logits > 0).astype(jnp.float32) + (fake_logits < 0)),
    }

  def captions(self):
    return {
      "samples": "G(z), z ~ N(0, I)",
      "samples_by_class": "row c: class c; the same z down each column",
      "samples_by_code": "row c: latent code c; the same z down each column",
      "interpolations": "each row: G along the line between two draws of z",
    }

  def pictures(self, params, batch, key):
    if self.data.kind == "points":
      return self._point_pictures(params, batch, key)
    return self._image_pictures(params, key)

  def _sample_compiled(self, params, keys, labels, g_labels=None):
    return self.compiled("sample", lambda: self.sample)(params, keys, labels, g_labels)

  def _samples(self, params, key, labels):
    keys = jax.random.split(key, labels.shape[0])
    return np.asarray(self._sample_compiled(params, keys, labels))

  def _image_pictures(self, params, key):
    grid = self.grid
    if self.conditional or self.code_classes:
      rows = self.num_classes or self.code_classes
      labels = jnp.repeat(jnp.arange(rows), 10)
      # The same 10 noise vectors in every row: only the label (or code) changes down a column.
      keys = jnp.tile(jax.random.split(key, 10), rows)
      samples = np.asarray(self._sample_compiled(params, keys, labels, labels))
      out = {"samples_by_class" if self.conditional else "samples_by_code": grid(samples, 10)}
      if self.code_classes:
        out["samples"] = grid(self._samples(params, key, jnp.zeros((64,), jnp.int32)), 8)
    else:
      out = {"samples": grid(self._samples(params, key, jnp.zeros((64,), jnp.int32)), 8)}
    out["interpolations"] = grid(self._interpolations(params, key), 10)
    return out

  def _interpolations(self, params, key, rows: int = 8, steps: int = 10):
    ends = jax.random.normal(key, (rows, 2, self.latent_dim))
    z = np.concatenate([image_lib.interpolation_codes(a, b, steps) for a, b in np.asarray(ends)])
    _, g_labels = self._cycling_g_labels(rows)
    if g_labels is not None:
      g_labels = jnp.repeat(g_labels, steps)
    g = params["params"][GENERATOR], params["batch_stats"][GENERATOR]
    fn = self.compiled(
      "generate_z",
      lambda: lambda g, stats, z, y: self._apply(self.generator, g, stats, z, y, False)[0],
    )
    return fn(*g, jnp.asarray(z, jnp.float32), g_labels)

  def _point_pictures(self, params, batch, key, n: int = 2000, grid: int = 100):
    labels = jnp.zeros((n,), jnp.int32)
    points = self._samples(params, key, labels)
    ref = self.data.modes if self.data.modes is not None else np.asarray(batch["x"])
    lim = 1.25 * float(np.max(np.abs(ref))) + 3 * (self.data.mode_std or 0.0)
    axis = np.linspace(-lim, lim, grid, dtype=np.float32)
    mesh = np.stack(np.meshgrid(axis, axis), axis=-1).reshape(-1, 2)
    d_params, d_stats = params["params"][DISCRIMINATOR], params["batch_stats"][DISCRIMINATOR]
    critic = self.compiled(
      "critic", lambda: lambda d, stats, v: self._critic(d, stats, v, None, False)[0]
    )
    values = np.asarray(critic(d_params, d_stats, jnp.asarray(mesh))).reshape(grid, grid)
    modes = self.data.modes
    return {
      "samples": image_lib.render_points(points, modes, f"{n} samples"),
      "discriminator": image_lib.render_points(
        points, modes, "discriminator logit and samples", surface=(axis, axis, values)
      ),
    }

"""Hierarchical VAEs: L >= 2 stochastic layers trained on the ELBO or the IWAE bound.

``hvae`` maximises the ELBO (KL warm-up, β and free bits as the VAE's);
``hiwae`` sets ``objective.bound="iwae"`` and trains on the importance-weighted
bound over the joint of all layers with ``objective.num_samples`` samples.
Networks: :mod:`genjax.models.hierarchical` (``model.architecture``).

The code of an input (``code``, ``genjax.load(...).encode``) is the
concatenation of every layer's posterior mean, bottom layer first,
``[B, sum(latent_dims)]``: the draw with zero noise, so a layer whose ``q``
depends on other layers (``z_2`` on ``z_1`` bottom-up, ``z_1`` on ``z_2`` top-down)
takes its mean with those at their means. Active units are counted on these
means: Burda et al.'s ``E_q[z_l | x]`` exactly for a bottom-up net's first layer,
an approximation of it for the others. Decoding a code uses all of it
(bottom-up nets read only ``z_1``).
"""

import jax
import jax.numpy as jnp
import numpy as np

from genjax.core import fields
from genjax.evaluation import images as image_lib
from genjax.families.autoencoders import OBJECTIVE, VAEFamily, _AutoencoderBase
from genjax.families.base import register
from genjax.models.hierarchical import ARCHITECTURES, HierarchicalVAE
from genjax.objectives import hierarchical
from genjax.objectives import vae as vae_objectives

F = fields.Field
HVAE = {
  "latent_dims": F(
    (100, 50),
    "size of each stochastic layer, bottom (next to x) first; at least 2 layers",
    positive_ints=True,
    nonempty=True,
  ),
  "hidden_sizes": F(
    (200, 100),
    "width of the deterministic block before each stochastic layer, bottom first (one per layer)",
    positive_ints=True,
    nonempty=True,
  ),
  "block_depth": F(2, "Dense layers in each deterministic block", integer=True, ge=1),
}


@register("hiwae", objective__bound="iwae")
@register("hvae")
class HierarchicalVAEFamily(VAEFamily):
  """A VAE with a hierarchy of latents (Burda et al. 2016; Sønderby et al. 2016; NVAE).

  Evaluation adds to the VAE's metrics ``kl_1 .. kl_L`` (each layer's KL term,
  bottom first; they sum to ``kl``) and ``active_units_1 .. active_units_L``
  (``active_units`` is their sum). Free bits put a floor on the KL of every
  latent dimension of every layer.
  """

  sections = {"objective": OBJECTIVE, "hvae": HVAE}
  narrowed = dict(VAEFamily.narrowed, **{"model.architecture": F("mlp", choices=ARCHITECTURES)})

  def __init__(self, config, data):
    h = config.hvae
    self.latent_dims = tuple(int(d) for d in h.latent_dims)
    # Bottom-up inference draws z_{l+1} from z_l: only the one-sample KL is an ELBO term there.
    self.kl_estimator = "sample" if config.model.architecture == "mlp" else "analytic"
    super().__init__(config, data)

  def build_module(self, config, data):
    h, m = config.hvae, config.model
    return HierarchicalVAE(
      latent_dims=self.latent_dims,
      hidden_sizes=tuple(int(w) for w in h.hidden_sizes),
      block_depth=int(h.block_depth),
      data_shape=tuple(data.shape),
      num_params=self.num_decoder_params,
      activation=m.activation,
      architecture=m.architecture,
      conv_channels=tuple(int(c) for c in m.conv_channels),
    )

  @classmethod
  def validate(cls, c):
    errors = super().validate(c)
    dims, widths = tuple(c.hvae.latent_dims), tuple(c.hvae.hidden_sizes)
    if len(dims) < 2:
      errors.append(
        f"config.hvae.latent_dims={dims!r}: a hierarchy needs at least 2 stochastic layers "
        "(family 'vae' has one)"
      )
    if len(widths) != len(dims):
      errors.append(
        f"config.hvae.hidden_sizes={widths!r}: needs one width per stochastic layer "
        f"({len(dims)}, as config.hvae.latent_dims={dims!r})"
      )
    if c.model.conditional:
      errors.append(f"config.model.conditional=True: family {c.family!r} is unconditional")
    return errors

  # -- the model as the objectives' callables -------------------------------------

  def init_params(self, key, batch):
    return self.module.init(key, batch["x"])["params"], {}

  def _apply(self, params, method, *args):
    return self.module.apply({"params": params}, *args, method=getattr(HierarchicalVAE, method))

  def _bound_fns(self, params, labels):
    del labels
    return dict(
      infer=lambda x: self._apply(params, "infer", x),
      sample=lambda context, noise: self._apply(params, "sample", context, noise),
      log_likelihood=self.log_likelihood,
      latent_dims=self.latent_dims,
    )

  def _elbo(self, params, x, keys, labels, **options):
    fns = self._bound_fns(params, labels)
    return hierarchical.elbo(x, keys, kl_estimator=self.kl_estimator, **fns, **options)

  def _iwae(self, params, x, keys, labels, **options):
    return hierarchical.iwae_bound(x, keys, **self._bound_fns(params, labels), **options)

  def _kl_terms(self, terms):
    return {f"kl_{i + 1}": terms["kl_layers"][:, i] for i in range(len(self.latent_dims))}

  # -- codes, decoding, sampling ------------------------------------------------------

  def encode(self, params, x, labels=None):
    """The layers of the draw with zero noise: every ``z_l`` at its posterior mean."""
    del labels
    noise = [jnp.zeros((x.shape[0], d), x.dtype) for d in self.latent_dims]
    return self._apply(params, "sample", self._apply(params, "infer", x), noise)[0]

  def code(self, params, x, labels=None):
    return jnp.concatenate([layer.q_mean for layer in self.encode(params, x, labels)], axis=-1)

  def decode(self, params, z, labels=None):
    del labels
    cuts = np.cumsum(self.latent_dims)[:-1].tolist()
    return self._apply(params, "decode", tuple(jnp.split(z, cuts, axis=-1)))

  def decode_top_mean(self, params, z_top):
    """Mean image of the top layer's code, each lower layer at its prior mean given the one above."""
    noise = [jnp.zeros((z_top.shape[0], d), z_top.dtype) for d in self.latent_dims[:-1]]
    out = self._apply(params, "generate", (*noise, z_top))[1]
    return self._mean(out)

  def _mean(self, decoder_output):
    return vae_objectives.likelihood_mean(self.likelihood, decoder_output, self.data.data_range)

  def decode_mean(self, params, z, labels=None):
    return self._mean(self.decode(params, z, labels))

  def sample(self, params, keys, labels):
    del labels
    out = self._apply(params, "generate", hierarchical.layer_noise(keys, self.latent_dims))[1]
    return self._mean(out)

  def summarize_eval(self, means):
    out = super().summarize_eval(means)
    counts = hierarchical.active_units_per_layer(
      means["posterior_mean"], means["posterior_mean_sq"], self.latent_dims
    )
    out.update({f"active_units_{i + 1}": float(n) for i, n in enumerate(counts)})
    return out

  # -- pictures --------------------------------------------------------------------

  def captions(self):
    return dict(
      super().captions(),
      samples="decoder means of ancestral samples z_L ~ N(0, I), z_l ~ p(z_l | z_{l+1})",
      traversals="rows: the top-layer latents whose posterior means vary most over the test "
      "batch, each set to -3, ..., 3 (columns), the others at the code of a test input; lower "
      "layers at their prior means",
    )

  def pictures(self, params, batch, key):
    out = _AutoencoderBase.pictures(self, params, batch, key)
    keys = jax.random.split(key, 64)
    out["samples"] = self.grid(self.compiled("samples", lambda: self.sample)(params, keys, None), 8)
    top = self.latent_dims[-1]
    # The top layer often uses few of its units: show those whose means vary most over the batch.
    means = np.asarray(self._code_compiled(params, batch["x"][:64]))[:, -top:]
    units = np.argsort(-means.var(axis=0))[: min(top, 10)].tolist()
    values = np.linspace(-3.0, 3.0, 11)
    codes = image_lib.latent_traversal_codes(means[0], units, values)
    decode_top = self.compiled("decode_top_mean", lambda: self.decode_top_mean)
    out["traversals"] = self.grid(decode_top(params, jnp.asarray(codes)), len(values))
    return out

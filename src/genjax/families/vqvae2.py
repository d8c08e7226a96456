"""VQ-VAE-2 (Razavi et al. 2019), first stage: a bottom and a top code map, a decoder reading both.

The loss per example is ``recon + Σ_levels (β · commitment [+ codebook])``:
the VQ-VAE loss of :mod:`genjax.families.vqvae` with both levels' VQ terms.
Codebooks, EMA updates and dead-code restarts follow ``config.vq`` for both
levels; ``config.vq2.top_num_embeddings`` sizes the top codebook. Metrics
carry the level in their name: ``perplexity_top``, ``codes_used_bottom``,
``commitment_loss_top`` (without suffix: the sum over levels).

Pictures show what each level holds: the input, its reconstruction from both
levels, and from the top level alone. "Top alone" means the decoder reads the
top map with the bottom quantized map set to zeros (the paper's figure zeroes
the other level in the same way); the decoder never saw zeros in training, so
this view shows what the top codes carry, not a reconstruction it was trained for.

The ``vqvae2_prior`` family fits the priors over both maps.
"""

import jax.numpy as jnp
import numpy as np

from genjax.core import fields
from genjax.evaluation import images as image_lib
from genjax.families.base import register
from genjax.families.vqvae import VQ, VQVAEFamily, build_vqvae
from genjax.models.vqvae2 import VQVAE2, top_grid
from genjax.objectives import vq as vq_lib

F = fields.Field
VQ2 = {"top_num_embeddings": F(512, "top codebook size", integer=True, ge=1)}


@register("vqvae2")
class VQVAE2Family(VQVAEFamily):
  """Two-level VQ-VAE; its code maps feed the ``vqvae2_prior`` family.

  Config: ``config.vq`` (both levels' codebooks, EMA, restarts, network sizes,
  reconstruction loss; ``num_embeddings`` is the bottom codebook's size) and
  ``config.vq2`` (the top codebook's size).
  """

  sections = {"vq": VQ, "vq2": VQ2}

  def __init__(self, config, data):
    super().__init__(config, data)
    self.top_num_embeddings = int(config.vq2.top_num_embeddings)
    self.top_shape = top_grid(self.code_shape)
    self.levels = (
      ("_top", "quantizer_top", self.top_num_embeddings),
      ("_bottom", "quantizer_bottom", self.num_embeddings),
    )

  def build_module(self, axis_name):
    top = int(self.config.vq2.top_num_embeddings)
    vq = self.config.vq
    return build_vqvae(
      vq, self.data.shape[-1], axis_name, VQVAE2, dtype=self.dtype, top_num_embeddings=top
    )

  # -- codes ------------------------------------------------------------------

  def encode(self, params, x):
    """Code maps ``(top [B, h_top, w_top], bottom [B, h, w])`` of data-space images."""
    return self.host_module.apply(params, x, method=VQVAE2.encode)

  def decode(self, params, top, bottom):
    """Images in data space from the two code maps."""
    return self.decode_mean(self.host_module.apply(params, top, bottom, method=VQVAE2.decode))

  # -- pictures ---------------------------------------------------------------

  def captions(self):
    return {
      "reconstructions": "column triples: test input | reconstruction from both levels | "
      "from the top level only (bottom quantized map set to zeros)",
      "codebook_usage_top": "top code use on these test images only",
      "codebook_usage_bottom": "bottom code use on these test images only",
    }

  def _reconstructions(self, params, x):
    out = self.host_module.apply(params, x)
    zeros = jnp.zeros_like(out["z_q_bottom"])
    top_only = self.host_module.apply(params, out["z_q_top"], zeros, method=VQVAE2.decode_quantized)
    both = self.decode_mean(out["output"])
    return both, self.decode_mean(top_only), out["indices_top"], out["indices_bottom"]

  def pictures(self, params, batch, key):
    del key
    x = batch["x"]
    n = min(30, x.shape[0])
    both, top_only, *indices = self.compiled("recon2", lambda: self._reconstructions)(params, x)
    triples = jnp.stack([x[:n], both[:n], top_only[:n]], axis=1)
    out = {"reconstructions": self.grid(triples.reshape((3 * n,) + x.shape[1:]), nrow=15)}
    for (suffix, _, size), codes in zip(self.levels, indices):
      counts = np.asarray(vq_lib.codebook_usage(codes, size))
      out["codebook_usage" + suffix] = image_lib.render_histogram(
        counts,
        f"{suffix[1:]} code use on {x.shape[0]} test images ({int(np.sum(counts > 0))} of "
        f"{size} codes, perplexity {float(vq_lib.perplexity(counts)):.1f})",
      )
    return out

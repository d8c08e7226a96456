"""Bounds of hierarchical VAEs with L stochastic layers of diagonal Gaussian latents.

The generative model is ``p(z_L) prod_{l<L} p(z_l | z_{>l}) p(x | z)`` with
``p(z_L) = N(0, I)``; the inference model samples the layers in whatever order
it likes (bottom-up ``q(z_1|x) q(z_2|z_1)`` as in Burda et al. 2016, or top-down
``q(z_L|x) q(z_{L-1}|z_L, x)`` as in ladder VAEs and NVAE). A model is given as
two callables, so these functions never see parameters:

* ``infer(x) -> context``: the deterministic work done once per input (a
  bottom-up pass), any pytree with a leading batch axis.
* ``sample(context, noise) -> (layers, decoder_output)``: given standard
  normal ``noise`` (one ``[B, D_l]`` array per layer, bottom first), draws
  ``z_l = q_mean_l + exp(q_log_var_l / 2) * noise_l`` in the model's order and
  returns one :class:`Layer` per stochastic layer (bottom first) with the
  parameters of ``q`` and of ``p`` for the drawn ``z`` (the top layer's ``p`` is
  ``N(0, I)``), plus the decoder's output for ``p(x | z)``.

Randomness follows :mod:`genjax.objectives.vae`: sample ``j`` of example ``i``
draws all its layers' noise from ``fold_in(keys[i], j)`` (one normal vector of
``sum(latent_dims)`` values cut into layers), so with one layer these bounds
draw the same ``z`` as the flat VAE's.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from genjax.core import random
from genjax.objectives import vae
from genjax.objectives.reductions import sum_per_example


class Layer(NamedTuple):
  """One stochastic layer of one draw: the sample and both densities' parameters, each ``[B, D_l]``."""

  z: jax.Array
  q_mean: jax.Array
  q_log_var: jax.Array
  p_mean: jax.Array
  p_log_var: jax.Array


Infer = Callable[[jax.Array], Any]
Sample = Callable[[Any, "tuple[jax.Array, ...]"], "tuple[Sequence[Layer], jax.Array]"]
KL_ESTIMATORS = ("analytic", "sample")


def layer_noise(keys: jax.Array, latent_dims: Sequence[int]) -> tuple[jax.Array, ...]:
  """Standard normal noise ``([B, D_1], ..., [B, D_L])``, example ``i`` from ``keys[i]`` only."""
  eps = random.normal(keys, (int(sum(latent_dims)),))
  return tuple(jnp.split(eps, np.cumsum(latent_dims)[:-1].tolist(), axis=1))


def log_importance_weight(
  x: jax.Array, layers: Sequence[Layer], decoder_output: jax.Array, log_likelihood
) -> jax.Array:
  """``log p(x, z_1..z_L) - log q(z_1..z_L | x)`` per example, ``[B]``."""
  out = log_likelihood(x, decoder_output)
  for layer in layers:
    out = out + vae.diag_gaussian_log_prob(layer.z, layer.p_mean, layer.p_log_var)
    out = out - vae.diag_gaussian_log_prob(layer.z, layer.q_mean, layer.q_log_var)
  return out


def layer_kl_per_dim(layer: Layer, estimator: str = "analytic") -> jax.Array:
  """KL term of one layer, per latent dimension ``[B, D_l]``.

  ``"analytic"``: ``KL(q(z_l | .) || p(z_l | z_{>l}))`` in closed form given the
  drawn parents. Its expectation is the layer's ELBO term only when ``q`` and
  ``p`` of the layer condition on the same drawn ``z_{>l}`` (top-down inference,
  and the top layer of any model); with bottom-up inference ``z_{>l}`` is drawn
  *from* ``z_l``, so use ``"sample"``: ``log q(z_l) - log p(z_l)`` at the drawn
  ``z_l`` (a one-sample estimate, unbiased for any order).
  """
  if estimator == "analytic":
    return vae.kl_diag_gaussians_per_dim(
      layer.q_mean, layer.q_log_var, layer.p_mean, layer.p_log_var
    )
  if estimator == "sample":
    z = layer.z
    return 0.5 * (
      layer.p_log_var
      - layer.q_log_var
      + jnp.square(z - layer.p_mean) * jnp.exp(-layer.p_log_var)
      - jnp.square(z - layer.q_mean) * jnp.exp(-layer.q_log_var)
    )
  raise ValueError(f"unknown kl_estimator {estimator!r}; allowed: {list(KL_ESTIMATORS)}")


def elbo(
  x: jax.Array,
  keys: jax.Array,
  *,
  infer: Infer,
  sample: Sample,
  log_likelihood: vae.LogLikelihood,
  latent_dims: Sequence[int],
  beta=1.0,
  kl_estimator: str = "analytic",
  free_bits: float = 0.0,
) -> dict[str, jax.Array]:
  """Single-sample ELBO of a hierarchical VAE, with its KL split by layer.

  The draw uses key ``fold_in(keys[i], 0)``, the key of :func:`iwae_bound`'s
  sample 0, so with ``kl_estimator="sample"`` the ELBO equals
  ``iwae_bound(..., num_samples=1)`` exactly.

  Args:
    x: data ``[B, ...]``.
    keys: per-example typed keys ``[B]``.
    infer, sample: the model (see the module docstring).
    log_likelihood: ``(x, decoder_output) -> [B]``.
    latent_dims: ``(D_1, ..., D_L)``, bottom layer first.
    beta: weight of the KL in the loss (warm-up included).
    kl_estimator: ``"analytic"`` or ``"sample"``, see :func:`layer_kl_per_dim`.
    free_bits: floor in nats *per latent dimension*, in every layer: a
      dimension whose batch-mean KL is below it adds the constant floor to the
      loss (no gradient), see :func:`genjax.objectives.vae.free_bits_floor`.

  Returns:
    ``[B]`` arrays ``elbo = recon - kl``, ``recon = log p(x|z)``, ``kl`` (sum of
    the layers'), ``loss = -(recon - beta * kl')`` with ``kl'`` the free-bits KL,
    and ``kl_layers: [B, L]`` (bottom layer first).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> def sample(x, noise):  # q = p: z_2 ~ N(0, 1), z_1 ~ N(z_2, 1); p(x|z_1) = N(z_1, 1)
    ...   zero = jnp.zeros_like(noise[1])
    ...   top = Layer(noise[1], zero, zero, zero, zero)
    ...   bottom = Layer(top.z + noise[0], top.z, zero, top.z, zero)
    ...   return (bottom, top), bottom.z[..., None]
    >>> out = elbo(jnp.ones((2, 1)), jax.random.split(jax.random.key(0), 2),
    ...            infer=lambda x: x, sample=sample, latent_dims=(1, 1),
    ...            log_likelihood=vae.LIKELIHOODS["gaussian_fixed"])
    >>> out["kl_layers"]
    Array([[0., 0.],
           [0., 0.]], dtype=float32)
  """
  layers, decoder_output = sample(infer(x), layer_noise(random.fold_in(keys, 0), latent_dims))
  recon = log_likelihood(x, decoder_output)
  per_dim = [layer_kl_per_dim(layer, kl_estimator) for layer in layers]
  kl_layers = jnp.stack([sum_per_example(k, k) for k in per_dim], axis=1)
  kl = jnp.sum(kl_layers, axis=1)
  if free_bits > 0:
    penalised = sum(vae.free_bits_floor(k, free_bits) for k in per_dim)
  else:
    penalised = kl
  return {
    "elbo": recon - kl,
    "recon": recon,
    "kl": kl,
    "kl_layers": kl_layers,
    "loss": -(recon - beta * penalised),
  }


def iwae_bound(
  x: jax.Array,
  keys: jax.Array,
  *,
  infer: Infer,
  sample: Sample,
  log_likelihood: vae.LogLikelihood,
  latent_dims: Sequence[int],
  num_samples: int,
  chunk_size: int | None = None,
) -> jax.Array:
  """``log (1/k) sum_j p(x, z^j_1..z^j_L) / q(z^j_1..z^j_L | x)`` per example, ``[B]``.

  The importance weights are over the joint of all layers. Sample ``j`` of
  example ``i`` uses ``fold_in(keys[i], j)``, so the value does not depend on
  ``chunk_size`` (samples processed per scan step, must divide ``num_samples``;
  k = 5000 runs in chunks of 100) or on batching. ``infer`` runs once; ``sample``
  runs once per draw (vmapped over draws, so it must be pure).
  """
  context = infer(x)

  def log_weights(j):
    layers, decoder_output = sample(context, layer_noise(random.fold_in(keys, j), latent_dims))
    return log_importance_weight(x, layers, decoder_output, log_likelihood)

  return vae.log_mean_exp_over_samples(log_weights, num_samples, chunk_size)


def active_units_per_layer(
  mean_of_means, mean_of_squares, latent_dims: Sequence[int], threshold: float = 0.01
) -> list[int]:
  """Burda et al.'s active units of each layer, bottom first.

  Args:
    mean_of_means: ``E_x[mu]`` of the posterior means of all layers, concatenated
      bottom first, ``[sum D_l]``.
    mean_of_squares: ``E_x[mu^2]`` over the same set, same shape.
    latent_dims: ``(D_1, ..., D_L)``.
    threshold: a unit is active when ``Cov_x(mu_d) > threshold``.
  """
  cuts = np.cumsum(latent_dims)[:-1]
  return [
    vae.active_units(m, s, threshold)
    for m, s in zip(
      np.split(np.asarray(mean_of_means), cuts), np.split(np.asarray(mean_of_squares), cuts)
    )
  ]

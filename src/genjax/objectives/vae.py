"""VAE objectives: Gaussian KLs, likelihoods, reparameterization, ELBO and IWAE.

Conventions:
  * Every term is returned per example, shape ``[B]``, summed over all
    non-batch axes. Reductions over the batch are left to the caller.
  * Randomness comes from per-example typed keys ``keys`` of shape ``[B]``
    (see :mod:`genjax.core.random`).
  * A decoder for likelihood ``name`` outputs ``x.shape + (LIKELIHOOD_NUM_PARAMS[name],)``;
    ``[..., 0]`` is the logits / mean / location and ``[..., 1]`` (if present)
    the log-variance / log-scale.
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from genjax.core import random
from genjax.objectives.reductions import sum_per_example

Encode = Callable[[jax.Array], "tuple[jax.Array, jax.Array]"]
Decode = Callable[[jax.Array], jax.Array]
LogLikelihood = Callable[[jax.Array, jax.Array], jax.Array]

_LOG_2PI = math.log(2.0 * math.pi)


# ---------------------------------------------------------------------------
# Gaussian KLs, densities and reparameterization.
# ---------------------------------------------------------------------------


def kl_diag_gaussians(
  mean_q: jax.Array, log_var_q: jax.Array, mean_p: jax.Array, log_var_p: jax.Array
) -> jax.Array:
  """Closed-form KL(N(mean_q, var_q) || N(mean_p, var_p)) for diagonal Gaussians.

  Args:
    mean_q: mean of q, shape ``[B, ...]``.
    log_var_q: log-variance of q, broadcastable to ``mean_q``.
    mean_p: mean of p, broadcastable to ``mean_q`` (e.g. a scalar).
    log_var_p: log-variance of p, broadcastable to ``mean_q``.

  Returns:
    KL per example, shape ``[B]``, summed over all non-batch axes.
  """
  return sum_per_example(kl_diag_gaussians_per_dim(mean_q, log_var_q, mean_p, log_var_p), mean_q)


def kl_diag_gaussians_per_dim(mean_q, log_var_q, mean_p, log_var_p) -> jax.Array:
  """:func:`kl_diag_gaussians` before the sum: one KL per element, shape of ``mean_q``."""
  return 0.5 * (
    log_var_p
    - log_var_q
    + (jnp.exp(log_var_q) + jnp.square(mean_q - mean_p)) * jnp.exp(-log_var_p)
    - 1.0
  )


def kl_standard_normal(mean: jax.Array, log_var: jax.Array) -> jax.Array:
  """KL(N(mean, exp(log_var)) || N(0, I)) per example.

  Args:
    mean: posterior mean, shape ``[B, ...]``.
    log_var: posterior log-variance, same shape as ``mean``.

  Returns:
    KL per example, shape ``[B]``.

  Example:
    >>> import jax.numpy as jnp
    >>> kl_standard_normal(jnp.ones((2, 3)), jnp.zeros((2, 3)))
    Array([1.5, 1.5], dtype=float32)
  """
  kl = 0.5 * (jnp.exp(log_var) + jnp.square(mean) - 1.0 - log_var)
  return sum_per_example(kl, mean)


def reparameterize(keys: jax.Array, mean: jax.Array, log_var: jax.Array) -> jax.Array:
  """Draws ``z = mean + exp(0.5 * log_var) * eps`` with per-example noise.

  Args:
    keys: typed key array, shape ``[B]``; ``eps[i]`` comes from ``keys[i]`` only.
    mean: shape ``[B, ...]``.
    log_var: broadcastable to ``mean``.

  Returns:
    Sample ``z`` with the shape of ``mean``, differentiable in ``mean`` and ``log_var``.
  """
  eps = random.normal(keys, mean.shape[1:], dtype=mean.dtype)
  return mean + jnp.exp(0.5 * log_var) * eps


def gaussian_log_likelihood(x: jax.Array, mean: jax.Array, log_var) -> jax.Array:
  """Diagonal Gaussian log-density log N(x; mean, exp(log_var)) per example.

  Args:
    x: data, shape ``[B, ...]``.
    mean: broadcastable to ``x``.
    log_var: log-variance, scalar (fixed variance) or array broadcastable to ``x``.

  Returns:
    Log-density per example, shape ``[B]``, summed over all non-batch axes.
  """
  lp = -0.5 * (_LOG_2PI + log_var + jnp.square(x - mean) * jnp.exp(-log_var))
  return sum_per_example(lp, x)


def diag_gaussian_log_prob(z: jax.Array, mean, log_var) -> jax.Array:
  """Log-density of ``z`` under N(mean, exp(log_var)), shape ``[B]``.

  Args:
    z: sample, shape ``[B, ...]``.
    mean: broadcastable to ``z`` (``0.0`` for the standard normal prior).
    log_var: broadcastable to ``z``.

  Returns:
    Log-density per example, shape ``[B]``.
  """
  return gaussian_log_likelihood(z, mean, log_var)


# ---------------------------------------------------------------------------
# Observation likelihoods.
# ---------------------------------------------------------------------------


def bernoulli_log_likelihood(x: jax.Array, logits: jax.Array) -> jax.Array:
  """Bernoulli log-likelihood from logits (the negative binary cross-entropy).

  Uses ``x * logits - softplus(logits)``, which stays finite for large |logits|
  where ``log(sigmoid(.))`` would underflow.

  Args:
    x: targets in ``{0, 1}`` (or ``[0, 1]`` for continuous BCE), shape ``[B, ...]``.
    logits: same shape as ``x``.

  Returns:
    Log-likelihood per example, shape ``[B]``.
  """
  return sum_per_example(x * logits - jax.nn.softplus(logits), x)


def discretized_logistic_log_likelihood(
  x: jax.Array, mean: jax.Array, log_scale: jax.Array, num_bins: int = 256
) -> jax.Array:
  """Discretized logistic log-likelihood (Salimans et al. 2017, PixelCNN++).

  ``x`` lies in ``[-1, 1]`` on a grid of ``num_bins`` levels; each level owns the
  logistic mass of a bin of half-width ``1 / (num_bins - 1)``. The lowest bin
  extends to -inf and the highest to +inf, so the probabilities of all bins sum
  to one.

  Instead of PixelCNN++'s fallback to the density at the bin centre when the CDF
  difference underflows, the interior mass is computed in log space via
  ``sigmoid(a) - sigmoid(b) = sigmoid(a) * sigmoid(-b) * (1 - exp(b - a))``,
  which is accurate in all tails; every branch is finite so gradients through
  ``jnp.where`` stay finite.

  Args:
    x: data in ``[-1, 1]`` on the ``num_bins`` grid, shape ``[B, ...]``.
    mean: logistic location, same shape as ``x``.
    log_scale: logistic log-scale, broadcastable to ``x``.
    num_bins: number of quantization levels.

  Returns:
    Log-probability per example, shape ``[B]``.
  """
  half_bin = 1.0 / (num_bins - 1)
  inv_scale = jnp.exp(-log_scale)
  plus_in = inv_scale * (x - mean + half_bin)
  min_in = inv_scale * (x - mean - half_bin)
  log_cdf_plus = jax.nn.log_sigmoid(plus_in)  # mass of (-inf, x + h]
  log_sf_min = jax.nn.log_sigmoid(-min_in)  # mass of [x - h, +inf)
  log_delta = log_cdf_plus + log_sf_min + jnp.log(-jnp.expm1(min_in - plus_in))
  lp = jnp.where(
    x < -1.0 + half_bin,
    log_cdf_plus,
    jnp.where(x > 1.0 - half_bin, log_sf_min, log_delta),
  )
  return sum_per_example(lp, x)


LIKELIHOOD_NUM_PARAMS = {
  "bernoulli": 1,
  "gaussian_fixed": 1,
  "gaussian_learned": 2,
  "discretized_logistic": 2,
}


def _params(name: str, x: jax.Array, decoder_output: jax.Array) -> jax.Array:
  expected = x.shape + (LIKELIHOOD_NUM_PARAMS[name],)
  if decoder_output.shape != expected:
    raise ValueError(
      f"{name} likelihood expects decoder output of shape {expected} "
      f"(x.shape + (num_params,)), got {decoder_output.shape}"
    )
  return decoder_output


def _bernoulli(x, decoder_output):
  return bernoulli_log_likelihood(x, _params("bernoulli", x, decoder_output)[..., 0])


def _gaussian_fixed(x, decoder_output, fixed_log_var=0.0):
  mean = _params("gaussian_fixed", x, decoder_output)[..., 0]
  return gaussian_log_likelihood(x, mean, fixed_log_var)


def _gaussian_learned(x, decoder_output):
  p = _params("gaussian_learned", x, decoder_output)
  return gaussian_log_likelihood(x, p[..., 0], p[..., 1])


def _discretized_logistic(x, decoder_output, num_bins=256):
  p = _params("discretized_logistic", x, decoder_output)
  return discretized_logistic_log_likelihood(x, p[..., 0], p[..., 1], num_bins)


LIKELIHOODS: dict[str, Callable[..., jax.Array]] = {
  "bernoulli": _bernoulli,
  "gaussian_fixed": _gaussian_fixed,  # kwarg fixed_log_var (default 0.0)
  "gaussian_learned": _gaussian_learned,
  "discretized_logistic": _discretized_logistic,  # kwarg num_bins (default 256)
}

# Data range each likelihood models; used to clip means for pictures.
LIKELIHOOD_DATA_RANGE = {
  "bernoulli": (0.0, 1.0),
  "gaussian_fixed": (0.0, 1.0),
  "gaussian_learned": (0.0, 1.0),
  "discretized_logistic": (-1.0, 1.0),
}


def _check_name(name: str) -> None:
  if name not in LIKELIHOODS:
    raise ValueError(f"unknown likelihood {name!r}; allowed: {sorted(LIKELIHOODS)}")


def get_likelihood(name: str, **kwargs) -> LogLikelihood:
  """Returns ``log_likelihood(x, decoder_output) -> [B]`` for a named likelihood.

  Args:
    name: one of ``LIKELIHOODS``.
    **kwargs: extra options (``fixed_log_var`` for ``gaussian_fixed``,
      ``num_bins`` for ``discretized_logistic``).

  Returns:
    The likelihood function with ``kwargs`` bound.
  """
  _check_name(name)
  return functools.partial(LIKELIHOODS[name], **kwargs)


def likelihood_mean(
  name: str, decoder_output: jax.Array, data_range: tuple[float, float] | None = None
) -> jax.Array:
  """Mean image of the observation model, for pictures.

  Args:
    name: one of ``LIKELIHOODS``.
    decoder_output: shape ``x.shape + (num_params,)``.
    data_range: ``(low, high)`` clip range; defaults to
      ``LIKELIHOOD_DATA_RANGE[name]`` (``[-1, 1]`` for the discretized logistic).

  Returns:
    Array of shape ``x.shape``: ``sigmoid(logits)`` for Bernoulli, otherwise the
    mean / location clipped to the data range.
  """
  _check_name(name)
  first = decoder_output[..., 0]
  if name == "bernoulli":
    return jax.nn.sigmoid(first)
  low, high = data_range if data_range is not None else LIKELIHOOD_DATA_RANGE[name]
  return jnp.clip(first, low, high)


# ---------------------------------------------------------------------------
# Bounds.
# ---------------------------------------------------------------------------


def kl_warmup_weight(step, warmup_steps) -> jax.Array:
  """Linear KL annealing weight, 0 at step 0 rising to 1 at ``warmup_steps``.

  The result multiplies ``beta``.

  Args:
    step: current step (int or scalar array, may be traced).
    warmup_steps: length of the warm-up; 0 disables it (weight 1.0).

  Returns:
    float32 scalar in ``[0, 1]``.
  """
  w = jnp.asarray(warmup_steps, jnp.float32)
  ramp = jnp.clip(jnp.asarray(step, jnp.float32) / jnp.maximum(w, 1.0), 0.0, 1.0)
  return jnp.where(w > 0, ramp, 1.0)


def _log_importance_weight(x, z, mean, log_var, decode, log_likelihood):
  """log p(x|z) + log p(z) - log q(z|x), shape ``[B]``."""
  return (
    log_likelihood(x, decode(z))
    + diag_gaussian_log_prob(z, 0.0, 0.0)
    - diag_gaussian_log_prob(z, mean, log_var)
  )


def elbo(
  x: jax.Array,
  keys: jax.Array,
  *,
  encode: Encode,
  decode: Decode,
  log_likelihood: LogLikelihood,
  beta=1.0,
  kl_estimator: str = "analytic",
  free_bits: float = 0.0,
) -> dict[str, jax.Array]:
  """Single-sample evidence lower bound per example.

  ``z`` for example ``i`` is drawn with key ``fold_in(keys[i], 0)``, the same
  key :func:`iwae_bound` uses for its sample 0. With
  ``kl_estimator="sample"`` (KL estimated by ``log q(z|x) - log p(z)`` at that
  ``z``), ``elbo(...)["elbo"]`` equals ``iwae_bound(..., num_samples=1)``
  exactly; with the default analytic KL the two agree in expectation.

  Args:
    x: data, shape ``[B, ...]``.
    keys: typed per-example keys, shape ``[B]``.
    encode: ``x -> (mean, log_var)``, each ``[B, ...]`` (bound to params / labels).
    decode: ``z -> decoder_output`` (bound to params / labels).
    log_likelihood: ``(x, decoder_output) -> [B]``, e.g. from ``LIKELIHOODS``.
    beta: KL weight in the loss (may include a warm-up factor); scalar.
    kl_estimator: ``"analytic"`` (closed form) or ``"sample"`` (single-sample MC).
    free_bits: nats per latent dimension below which its batch-mean KL is not
      penalised (:func:`free_bits_kl`); 0 for none. Only the loss changes.

  Returns:
    Dict of ``[B]`` arrays: ``elbo = recon - kl`` (unweighted), ``recon`` =
    log p(x|z), ``kl``, and ``loss = -(recon - beta * kl)`` (with the free-bits
    KL in place of ``kl`` when ``free_bits > 0``).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> x = jnp.ones((2, 3))
    >>> keys = jax.random.split(jax.random.key(0), 2)
    >>> out = elbo(x, keys,
    ...            encode=lambda x: (jnp.zeros_like(x), jnp.zeros_like(x)),
    ...            decode=lambda z: z[..., None],
    ...            log_likelihood=LIKELIHOODS["gaussian_fixed"])
    >>> sorted(out)
    ['elbo', 'kl', 'loss', 'recon']
    >>> out["kl"]
    Array([0., 0.], dtype=float32)
  """
  mean, log_var = encode(x)
  z = reparameterize(random.fold_in(keys, 0), mean, log_var)
  recon = log_likelihood(x, decode(z))
  if kl_estimator == "analytic":
    kl = kl_standard_normal(mean, log_var)
  elif kl_estimator == "sample":
    kl = diag_gaussian_log_prob(z, mean, log_var) - diag_gaussian_log_prob(z, 0.0, 0.0)
  else:
    raise ValueError(f"unknown kl_estimator {kl_estimator!r}; allowed: ['analytic', 'sample']")
  penalised = free_bits_kl(mean, log_var, free_bits) if free_bits > 0 else kl
  return {
    "elbo": recon - kl,
    "recon": recon,
    "kl": kl,
    "loss": -(recon - beta * penalised),
  }


def free_bits_kl(mean: jax.Array, log_var: jax.Array, floor: float) -> jax.Array:
  """The KL a free-bits loss optimises, per example ``[B]`` (Kingma et al. 2016).

  Each latent dimension is a group whose KL, averaged over the batch, is not
  pushed below ``floor`` nats: a dimension under its floor adds the constant
  ``floor`` (no gradient), one above it adds its KL. The batch mean of the
  result is ``sum_d max(floor, mean_b KL_bd)``.
  """
  kl = 0.5 * (jnp.exp(log_var) + jnp.square(mean) - 1.0 - log_var)
  return free_bits_floor(kl, floor)


def free_bits_floor(kl_per_dim: jax.Array, floor) -> jax.Array:
  """``sum_d`` of each dimension's KL, or the constant ``floor`` where its batch mean is below it.

  Args:
    kl_per_dim: KL of each latent dimension, ``[B, ...]`` (analytic or a sample estimate).
    floor: nats per dimension.

  Returns:
    ``[B]``; a dimension under its floor contributes no gradient.
  """
  kl = kl_per_dim.reshape(kl_per_dim.shape[0], -1)
  above = jnp.mean(kl, axis=0) > floor
  return jnp.sum(jnp.where(above, kl, floor), axis=1)


def active_units(mean_of_means: jax.Array, mean_of_squares: jax.Array, threshold=0.01) -> int:
  """Latent dimensions with ``Cov_x(E_q[z_d | x]) > threshold`` (Burda et al. 2016).

  Args:
    mean_of_means: ``E_x[mu_d]`` over a data set, ``[D]``.
    mean_of_squares: ``E_x[mu_d^2]`` over the same set, ``[D]``.
  """
  # In float64: the difference of two similar moments loses float32's digits.
  means = np.asarray(mean_of_means, np.float64)
  variance = np.asarray(mean_of_squares, np.float64) - np.square(means)
  return int(np.sum(variance > threshold))


def iwae_bound(
  x: jax.Array,
  keys: jax.Array,
  *,
  encode: Encode,
  decode: Decode,
  log_likelihood: LogLikelihood,
  num_samples: int,
  chunk_size: int | None = None,
) -> jax.Array:
  """Importance-weighted bound log (1/k) sum_j p(x, z_j) / q(z_j | x) (Burda et al.).

  Sample ``j`` of example ``i`` uses key ``fold_in(keys[i], j)``, so the value
  does not depend on ``chunk_size`` or batching. With ``num_samples=1`` it equals
  ``elbo(..., kl_estimator="sample")["elbo"]`` for the same ``keys``. The encoder
  runs once; the decoder runs once per sample (vmapped over samples, so
  ``decode`` must be a pure function).

  Args:
    x: data, shape ``[B, ...]``.
    keys: typed per-example keys, shape ``[B]``.
    encode: ``x -> (mean, log_var)``.
    decode: ``z -> decoder_output``.
    log_likelihood: ``(x, decoder_output) -> [B]``.
    num_samples: number of importance samples ``k``.
    chunk_size: if given and smaller than ``num_samples``, samples are processed
      ``chunk_size`` at a time in a ``lax.scan`` with a running logsumexp, so
      memory is O(chunk_size) (e.g. k=5000 for NLL estimation). Must divide
      ``num_samples``.

  Returns:
    Bound per example, shape ``[B]``. Differentiable and jittable.
  """
  mean, log_var = encode(x)

  def log_weights(j):
    z = reparameterize(random.fold_in(keys, j), mean, log_var)
    return _log_importance_weight(x, z, mean, log_var, decode, log_likelihood)

  return log_mean_exp_over_samples(log_weights, num_samples, chunk_size)


def log_mean_exp_over_samples(
  log_weights: Callable[[jax.Array], jax.Array], num_samples: int, chunk_size: int | None = None
) -> jax.Array:
  """``log (1/k) sum_j exp(log_weights(j))`` for ``j < k``, chunked so memory is O(chunk).

  Args:
    log_weights: ``j (uint32 scalar) -> [B]``; pure, vmapped over ``j``.
    num_samples: ``k``.
    chunk_size: samples per ``lax.scan`` step (``None``: all at once); must divide ``k``.
      The value does not depend on it: sample ``j`` is the same in any chunk.

  Returns:
    ``[B]``, differentiable (each chunk is rematerialised for the gradient).
  """
  if chunk_size is None or chunk_size >= num_samples:
    chunk_size = num_samples
  if chunk_size <= 0 or num_samples % chunk_size:
    raise ValueError(
      f"num_samples ({num_samples}) must be a positive multiple of chunk_size ({chunk_size})"
    )

  def chunk_logsumexp(start):
    js = start + jnp.arange(chunk_size, dtype=jnp.uint32)
    return jax.nn.logsumexp(jax.vmap(log_weights)(js), axis=0)

  # First chunk outside the scan so the running logsumexp never starts at -inf.
  total = chunk_logsumexp(jnp.uint32(0))
  num_chunks = num_samples // chunk_size
  if num_chunks > 1:
    # Rematerialize per chunk so gradients also need only O(chunk_size) memory.
    chunk_fn = jax.checkpoint(chunk_logsumexp)

    def body(acc, start):
      return jnp.logaddexp(acc, chunk_fn(start)), None

    starts = jnp.arange(1, num_chunks, dtype=jnp.uint32) * chunk_size
    total, _ = jax.lax.scan(body, total, starts)
  return total - math.log(num_samples)


def iwae_loss(x: jax.Array, keys: jax.Array, **kwargs) -> jax.Array:
  """Negative IWAE bound per example, shape ``[B]``; see :func:`iwae_bound`."""
  return -iwae_bound(x, keys, **kwargs)

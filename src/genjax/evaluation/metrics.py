"""Host-side sample-quality metrics: FD/FID, KID, precision/recall, IS analogue, mode coverage.

All functions are pure NumPy/SciPy functions of features (e.g. classifier embeddings),
logits or 2-D points, computed in float64; none of them touches JAX or a model.

References:
  * Fréchet distance (FID): Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update
    Rule Converge to a Local Nash Equilibrium".
  * Kernel Inception Distance: Binkowski et al. 2018, "Demystifying MMD GANs".
  * Improved precision and recall: Kynkäänniemi et al. 2019, "Improved Precision and Recall
    Metric for Assessing Generative Models".
  * Inception Score: Salimans et al. 2016, "Improved Techniques for Training GANs".
  * Mode coverage on 2-D Gaussian mixtures: Lin et al. 2018, "PacGAN"; Srivastava et al.
    2017, "VEEGAN".
"""

from __future__ import annotations

import numpy as np
from scipy.special import log_softmax, logsumexp

# Up to this k the k-th nearest neighbour is found by repeated argmin, which beats
# np.partition on wide rows.
_MAX_K_BY_ARGMIN = 8


def _as_features(x, name: str) -> np.ndarray:
  """Validates a finite 2-D ``[N, D]`` array and returns it as float64."""
  x = np.asarray(x, dtype=np.float64)
  if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
    raise ValueError(f"{name} must be a non-empty 2-D [N, D] array, got shape {x.shape}.")
  if not np.all(np.isfinite(x)):
    raise ValueError(f"{name} contains non-finite values (NaN or inf).")
  return x


def _check_same_dim(a: np.ndarray, b: np.ndarray, names: str) -> None:
  if a.shape[1] != b.shape[1]:
    raise ValueError(
      f"{names} must have the same feature dimension, got {a.shape[1]} and {b.shape[1]}."
    )


# ---------------------------------------------------------------------------
# Fréchet distance.
# ---------------------------------------------------------------------------


def gaussian_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Mean and unbiased covariance of a feature set, in float64.

  Args:
    features: shape ``[N, D]`` with ``N >= 2``.

  Returns:
    ``(mu, sigma)``: mean ``[D]`` and covariance ``[D, D]`` (normalised by ``N - 1``).
  """
  x = _as_features(features, "features")
  if x.shape[0] < 2:
    raise ValueError(f"gaussian_statistics needs at least 2 samples, got {x.shape[0]}.")
  mu = x.mean(axis=0)
  centred = x - mu
  sigma = centred.T @ centred / (x.shape[0] - 1)
  return mu, sigma


def _sqrt_psd(s: np.ndarray) -> np.ndarray:
  """Symmetric square root of a PSD matrix; tiny negative eigenvalues are rounding noise."""
  w, v = np.linalg.eigh(0.5 * (s + s.T))
  return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance_from_statistics(mu1, sigma1, mu2, sigma2) -> float:
  """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2).

  Computes ``||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1^{1/2} S2 S1^{1/2})^{1/2})``. The trace of
  the matrix square root equals that of ``(S1 S2)^{1/2}`` but is taken from a symmetric PSD
  matrix, so eigenvalues stay real and singular covariances give no NaN.

  Args:
    mu1: mean ``[D]``.
    sigma1: PSD covariance ``[D, D]``.
    mu2: mean ``[D]``.
    sigma2: PSD covariance ``[D, D]``.

  Returns:
    The distance, a non-negative float.

  Example:
    >>> import numpy as np
    >>> frechet_distance_from_statistics(np.zeros(2), np.eye(2), np.ones(2), 4.0 * np.eye(2))
    4.0
  """
  mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
  sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
  d = mu1.shape[0] if mu1.ndim == 1 else -1
  if mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
    raise ValueError(
      "Expected mu [D] and sigma [D, D] for both Gaussians, got shapes "
      f"{mu1.shape}, {sigma1.shape}, {mu2.shape}, {sigma2.shape}."
    )
  root1 = _sqrt_psd(sigma1)
  middle = root1 @ sigma2 @ root1
  eig = np.linalg.eigvalsh(0.5 * (middle + middle.T))
  trace_sqrt = np.sqrt(np.clip(eig, 0.0, None)).sum()
  diff = mu1 - mu2
  fd = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt
  return float(max(fd, 0.0))


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
  """Fréchet distance between Gaussian fits of two feature sets (FID on classifier features).

  Args:
    features_a: shape ``[N, D]`` with ``N > D``.
    features_b: shape ``[M, D]`` with ``M > D``.

  Returns:
    The distance, a non-negative float.

  Raises:
    ValueError: if an input is not a finite 2-D array, the feature dimensions differ, or a set
      has too few samples for a full-rank covariance.
  """
  a = _as_features(features_a, "features_a")
  b = _as_features(features_b, "features_b")
  _check_same_dim(a, b, "features_a and features_b")
  for name, x in (("features_a", a), ("features_b", b)):
    n, d = x.shape
    if n <= d:
      raise ValueError(
        "Fréchet distance needs more samples than feature dimensions: got "
        f"{n} samples of {d}-d features in {name}; use at least {d + 1} "
        "(config.eval.sample_examples)."
      )
  return frechet_distance_from_statistics(*gaussian_statistics(a), *gaussian_statistics(b))


# ---------------------------------------------------------------------------
# Kernel Inception Distance.
# ---------------------------------------------------------------------------


def _kernel_sum(x: np.ndarray, y: np.ndarray, *, skip_diagonal: bool) -> float:
  """Sum over pairs of ``(x.y + 1)^3`` for features pre-scaled by ``D^{-1/2}``."""
  k = x @ y.T
  k += 1.0
  # vdot(k, k^2) sums the cubes without another full-size temporary.
  total = np.vdot(k, np.square(k))
  if skip_diagonal:
    total -= np.sum(np.diagonal(k) ** 3)
  return float(total)


def _unbiased_mmd2(x: np.ndarray, y: np.ndarray) -> float:
  """Unbiased MMD^2 with ``k(x, y) = (x.y / D + 1)^3``; needs ``len(x), len(y) >= 2``."""
  m, n = x.shape[0], y.shape[0]
  x, y = x / np.sqrt(x.shape[1]), y / np.sqrt(y.shape[1])
  within_x = _kernel_sum(x, x, skip_diagonal=True) / (m * (m - 1))
  within_y = _kernel_sum(y, y, skip_diagonal=True) / (n * (n - 1))
  return within_x + within_y - 2.0 * _kernel_sum(x, y, skip_diagonal=False) / (m * n)


def kernel_inception_distance(
  features_a: np.ndarray,
  features_b: np.ndarray,
  *,
  num_subsets: int = 100,
  subset_size: int = 1000,
  seed: int = 0,
) -> tuple[float, float]:
  """Kernel Inception Distance: unbiased MMD^2 averaged over random subsets.

  Each subset draws ``min(subset_size, N, M)`` rows of each set without replacement using
  ``np.random.default_rng(seed)``; within-set kernel sums exclude the diagonal, so the
  estimate is unbiased and can be slightly negative when the distributions match.

  Args:
    features_a: shape ``[N, D]``.
    features_b: shape ``[M, D]``.
    num_subsets: number of subsets to average over.
    subset_size: rows per subset before capping at ``N`` and ``M``.
    seed: seed of the subset sampler.

  Returns:
    ``(mean, std)`` of the per-subset MMD^2 estimates (``std`` with ``ddof=0``).
  """
  a = _as_features(features_a, "features_a")
  b = _as_features(features_b, "features_b")
  _check_same_dim(a, b, "features_a and features_b")
  if num_subsets < 1:
    raise ValueError(f"num_subsets must be >= 1, got {num_subsets}.")
  size = min(subset_size, a.shape[0], b.shape[0])
  if size < 2:
    raise ValueError(
      f"KID needs subsets of at least 2 samples, got min(subset_size={subset_size}, "
      f"N={a.shape[0]}, M={b.shape[0]}) = {size}."
    )
  if size == a.shape[0] == b.shape[0]:
    # Every "subset" is a permutation of the whole sets, and MMD^2 ignores order.
    return _unbiased_mmd2(a, b), 0.0
  rng = np.random.default_rng(seed)
  estimates = np.empty(num_subsets)
  for i in range(num_subsets):
    x = a[rng.choice(a.shape[0], size, replace=False)]
    y = b[rng.choice(b.shape[0], size, replace=False)]
    estimates[i] = _unbiased_mmd2(x, y)
  return float(estimates.mean()), float(estimates.std())


# ---------------------------------------------------------------------------
# Improved precision and recall.
# ---------------------------------------------------------------------------


def _kth_smallest_per_row(d: np.ndarray, k: int) -> np.ndarray:
  """k-th smallest value of each row (1-based); overwrites ``d``."""
  if k > _MAX_K_BY_ARGMIN:
    return np.partition(d, k - 1, axis=1)[:, k - 1]
  rows = np.arange(d.shape[0])
  for _ in range(k - 1):
    d[rows, d.argmin(axis=1)] = np.inf
  return d.min(axis=1)


def _squared_knn_radii(x: np.ndarray, sq: np.ndarray, k: int, chunk_size: int) -> np.ndarray:
  """Squared distance from each row of ``x`` to its k-th nearest other row -> ``[N]``.

  Uses ``||a - b||^2 = ||a||^2 + (||b||^2 - 2 a.b)``; the first term is constant along a row,
  so it is added after the selection instead of to every entry.
  """
  n = x.shape[0]
  minus_two_x = -2.0 * x
  radii = np.empty(n)
  for start in range(0, n, chunk_size):
    stop = min(start + chunk_size, n)
    d = x[start:stop] @ minus_two_x.T
    d += sq[None, :]
    d[np.arange(stop - start), np.arange(start, stop)] = np.inf  # exclude self
    radii[start:stop] = _kth_smallest_per_row(d, k) + sq[start:stop]
  return np.maximum(radii, 0.0)  # negative only through cancellation


def precision_recall(
  real: np.ndarray, fake: np.ndarray, *, k: int = 3, chunk_size: int = 1024
) -> dict[str, float]:
  """Improved precision and recall of a generated set against a real one.

  Each set's manifold is the union of balls around its points with radius equal to the
  distance to the point's k-th nearest neighbour within the same set (itself excluded).
  A point is inside a ball if its distance is ``<=`` the radius.

  Args:
    real: real features, shape ``[N, D]`` with ``N > k``.
    fake: generated features, shape ``[M, D]`` with ``M > k``.
    k: neighbourhood size.
    chunk_size: rows per block of the pairwise distance matrices; memory is
      ``O(chunk_size * max(N, M))``.

  Returns:
    ``{"precision": fraction of fake points inside the real manifold,
    "recall": fraction of real points inside the fake manifold}``.
  """
  real = _as_features(real, "real")
  fake = _as_features(fake, "fake")
  _check_same_dim(real, fake, "real and fake")
  if k < 1 or chunk_size < 1:
    raise ValueError(f"k and chunk_size must be >= 1, got k={k}, chunk_size={chunk_size}.")
  for name, x in (("real", real), ("fake", fake)):
    if x.shape[0] <= k:
      raise ValueError(
        f"precision_recall with k={k} needs more than {k} samples per set, "
        f"got {x.shape[0]} {name} samples."
      )
  # Distances are translation invariant; centring shrinks the norms that cancel in
  # ||a||^2 + ||b||^2 - 2ab.
  centre = real.mean(axis=0)
  real, fake = real - centre, fake - centre
  sq_real, sq_fake = np.einsum("ij,ij->i", real, real), np.einsum("ij,ij->i", fake, fake)
  radii_real = _squared_knn_radii(real, sq_real, k, chunk_size)
  radii_fake = _squared_knn_radii(fake, sq_fake, k, chunk_size)
  # ||f - r||^2 <= radius_r  <=>  -2 f.r - (radius_r - ||r||^2) <= -||f||^2, and likewise with
  # the roles swapped, so one pass over the -2 f.r blocks serves both directions.
  offset_real = radii_real - sq_real
  offset_fake = radii_fake - sq_fake
  minus_two_real = -2.0 * real
  fake_in_real = np.zeros(fake.shape[0], dtype=bool)
  closest_to_real = np.full(real.shape[0], np.inf)
  for start in range(0, fake.shape[0], chunk_size):
    stop = min(start + chunk_size, fake.shape[0])
    g = fake[start:stop] @ minus_two_real.T
    fake_in_real[start:stop] = (g - offset_real[None, :]).min(axis=1) <= -sq_fake[start:stop]
    g -= offset_fake[start:stop, None]
    np.minimum(closest_to_real, g.min(axis=0), out=closest_to_real)
  real_in_fake = closest_to_real <= -sq_real
  return {"precision": float(fake_in_real.mean()), "recall": float(real_in_fake.mean())}


def energy_distance(x: np.ndarray, y: np.ndarray, *, chunk_size: int = 2048) -> float:
  """Energy distance ``2 E|X - Y| - E|X - X'| - E|Y - Y'|`` between two samples (Székely).

  Zero only when the distributions agree, for any dimension; the within-set means
  leave out each point's distance to itself (U-statistics), so two samples of the
  same distribution give values around zero of either sign.

  Args:
    x: samples ``[N, D]``, N >= 2.
    y: samples ``[M, D]``, M >= 2.
    chunk_size: rows per block of the pairwise distances.
  """
  x, y = _as_features(x, "x"), _as_features(y, "y")
  _check_same_dim(x, y, "x and y")
  if len(x) < 2 or len(y) < 2:
    raise ValueError(f"energy_distance needs 2 or more samples per set, got {len(x)}, {len(y)}")

  def mean_distance(a, b, same: bool) -> float:
    total = 0.0
    for start in range(0, len(a), chunk_size):
      block = a[start : start + chunk_size]
      d2 = np.sum(block**2, 1)[:, None] + np.sum(b**2, 1)[None, :] - 2.0 * block @ b.T
      if same:  # Each point's distance to itself: zero, not the expansion's rounding.
        rows = np.arange(len(block))
        d2[rows, start + rows] = 0.0
      total += np.sqrt(np.maximum(d2, 0.0)).sum()
    if same:
      return total / (len(a) * (len(a) - 1))
    return total / (len(a) * len(b))

  x, y = x.astype(np.float64), y.astype(np.float64)
  return 2.0 * mean_distance(x, y, False) - mean_distance(x, x, True) - mean_distance(y, y, True)


# ---------------------------------------------------------------------------
# Classifier-based scores.
# ---------------------------------------------------------------------------


def classifier_score(logits: np.ndarray, *, num_splits: int = 10) -> tuple[float, float]:
  """Inception-Score analogue ``exp(E_x KL(p(y|x) || p(y)))`` for any classifier's logits.

  As in the original IS code, samples are split in order into ``num_splits`` contiguous
  parts (part ``i`` is rows ``i * N // S`` to ``(i + 1) * N // S``) and ``p(y)`` is the
  mean prediction within a part.

  Args:
    logits: classifier logits, shape ``[N, K]``.
    num_splits: number of parts ``S``; reduced to ``N`` when ``N < num_splits``.

  Returns:
    ``(mean, std)`` of the per-part scores, each in ``[1, K]``.
  """
  log_p = np.asarray(logits, dtype=np.float64)
  if log_p.ndim != 2 or log_p.shape[0] == 0:
    raise ValueError(f"logits must be a non-empty [N, K] array, got shape {log_p.shape}.")
  if not np.all(np.isfinite(log_p)):
    raise ValueError("logits contain non-finite values (NaN or inf).")
  if num_splits < 1:
    raise ValueError(f"num_splits must be >= 1, got {num_splits}.")
  log_p = log_softmax(log_p, axis=1)
  n = log_p.shape[0]
  splits = min(num_splits, n)
  scores = np.empty(splits)
  for i in range(splits):
    part = log_p[i * n // splits : (i + 1) * n // splits]
    log_marginal = logsumexp(part, axis=0) - np.log(part.shape[0])
    kl = np.sum(np.exp(part) * (part - log_marginal), axis=1)
    scores[i] = np.exp(kl.mean())
  return float(scores.mean()), float(scores.std())


def label_accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
  """Fraction of samples whose argmax prediction equals the label.

  Args:
    logits: shape ``[N, K]``.
    labels: integer labels, shape ``[N]``.

  Returns:
    Accuracy in ``[0, 1]``.
  """
  logits, labels = np.asarray(logits), np.asarray(labels)
  if logits.ndim != 2 or labels.shape != logits.shape[:1] or labels.shape[0] == 0:
    raise ValueError(
      f"Expected non-empty logits [N, K] and labels [N], got {logits.shape} and {labels.shape}."
    )
  return float(np.mean(np.argmax(logits, axis=1) == labels))


# ---------------------------------------------------------------------------
# Histograms and mode coverage.
# ---------------------------------------------------------------------------


def _kl_bits(p: np.ndarray, q: np.ndarray) -> float:
  """KL(p || q) in bits for normalised histograms with ``q > 0`` wherever ``p > 0``."""
  mask = p > 0
  return float(np.sum(p[mask] * np.log2(p[mask] / q[mask])))


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
  """Jensen-Shannon divergence in bits between two histograms.

  Args:
    p: non-negative counts or probabilities, shape ``[M]``, positive sum.
    q: same shape as ``p``.

  Returns:
    JS divergence in ``[0, 1]``: 0 for equal histograms, 1 for disjoint supports.
  """
  p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
  if p.ndim != 1 or p.shape != q.shape:
    raise ValueError(f"Expected two 1-D histograms of equal length, got {p.shape}, {q.shape}.")
  if np.any(p < 0) or np.any(q < 0) or p.sum() <= 0 or q.sum() <= 0:
    raise ValueError("Histograms must be non-negative with a positive sum.")
  p, q = p / p.sum(), q / q.sum()
  m = 0.5 * (p + q)
  js = 0.5 * _kl_bits(p, m) + 0.5 * _kl_bits(q, m)
  return float(np.clip(js, 0.0, 1.0))


def mode_coverage(
  samples: np.ndarray, modes: np.ndarray, std: float, *, threshold: float = 3.0
) -> dict[str, float]:
  """Mode-coverage statistics of samples from a Gaussian-mixture model (PacGAN protocol).

  A sample is high quality if its Euclidean distance to the nearest mode is at most
  ``threshold * std``; a mode is captured if it is the nearest mode of at least one
  high-quality sample.

  Args:
    samples: points, shape ``[N, 2]`` (any ``[N, D]`` works).
    modes: mixture means, shape ``[M, D]``.
    std: standard deviation of each (isotropic) mixture component.
    threshold: quality radius in units of ``std``.

  Returns:
    ``{"modes_captured", "num_modes": M, "high_quality": fraction of samples,
    "mode_js": JS divergence in bits between the histogram of high-quality samples over
    modes and the uniform distribution (1.0, the worst value, if there are none),
    "num_samples": N}``, all as floats.

  Example:
    >>> import numpy as np
    >>> modes = np.array([[0.0, 0.0], [2.0, 0.0]])
    >>> samples = np.array([[0.01, 0.0], [1.98, 0.03], [1.0, 1.0], [0.0, 5.0]])
    >>> mode_coverage(samples, modes, std=0.05)  # doctest: +NORMALIZE_WHITESPACE
    {'modes_captured': 2.0, 'num_modes': 2.0, 'high_quality': 0.5, 'mode_js': 0.0,
     'num_samples': 4.0}
  """
  samples = _as_features(samples, "samples")
  modes = _as_features(modes, "modes")
  _check_same_dim(samples, modes, "samples and modes")
  if not std > 0:
    raise ValueError(f"std must be positive, got {std}.")
  n, num_modes = samples.shape[0], modes.shape[0]
  dists = np.linalg.norm(samples[:, None, :] - modes[None, :, :], axis=-1)
  nearest = dists.argmin(axis=1)
  good = dists[np.arange(n), nearest] <= threshold * std
  counts = np.bincount(nearest[good], minlength=num_modes)
  num_good = int(good.sum())
  mode_js = js_divergence(counts, np.ones(num_modes)) if num_good else 1.0
  return {
    "modes_captured": float(np.count_nonzero(counts)),
    "num_modes": float(num_modes),
    "high_quality": num_good / n,
    "mode_js": mode_js,
    "num_samples": float(n),
  }

"""Tests for genjax.evaluation.metrics against closed forms, SciPy and brute force."""

import doctest
import itertools
import math

import chex
import numpy as np
import pytest
import scipy.linalg
from scipy.spatial.distance import cdist, jensenshannon
from scipy.special import softmax

from genjax.evaluation import metrics


def _rng(seed=0):
  return np.random.default_rng(seed)


def _grid_modes():
  """The 25-mode grid at {-4, -2, 0, 2, 4}^2 (std 0.05)."""
  return np.array(list(itertools.product([-4.0, -2.0, 0.0, 2.0, 4.0], repeat=2)))


def _ring_modes():
  """The 8-mode ring of radius 2 (std 0.02)."""
  angles = 2.0 * np.pi * np.arange(8) / 8
  return 2.0 * np.stack([np.cos(angles), np.sin(angles)], axis=1)


GRID_STD, RING_STD = 0.05, 0.02


def _random_rotation(d, seed):
  q, r = np.linalg.qr(_rng(seed).normal(size=(d, d)))
  return q * np.sign(np.diag(r))


def _random_covariance(d, seed, n=None):
  """Non-diagonal, well-conditioned sample covariance of random correlated features."""
  rng = _rng(seed)
  x = rng.normal(size=(n or 4 * d, d)) @ rng.normal(size=(d, d))
  return np.cov(x, rowvar=False)


def test_doctests():
  assert doctest.testmod(metrics).failed == 0


# ---------------------------------------------------------------------------
# Fréchet distance.
# ---------------------------------------------------------------------------


def _diag_closed_form(mu1, a, mu2, b):
  return np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)


def test_gaussian_statistics_matches_numpy():
  x = _rng(0).normal(size=(50, 4)).astype(np.float32)
  mu, sigma = metrics.gaussian_statistics(x)
  assert mu.dtype == np.float64 and sigma.dtype == np.float64
  assert mu.shape == (4,) and sigma.shape == (4, 4)
  np.testing.assert_allclose(mu, x.astype(np.float64).mean(0), rtol=1e-12)
  np.testing.assert_allclose(sigma, np.cov(x.astype(np.float64), rowvar=False), rtol=1e-12)


def test_frechet_from_statistics_diagonal_closed_form():
  rng = _rng(1)
  d = 6
  mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
  a, b = rng.uniform(0.1, 3.0, size=d), rng.uniform(0.1, 3.0, size=d)
  got = metrics.frechet_distance_from_statistics(mu1, np.diag(a), mu2, np.diag(b))
  assert isinstance(got, float) and math.isfinite(got)
  np.testing.assert_allclose(got, _diag_closed_form(mu1, a, mu2, b), rtol=1e-10)


def test_frechet_from_statistics_commuting_closed_form():
  rng = _rng(2)
  d = 8
  rot = _random_rotation(d, seed=3)
  mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
  a, b = rng.uniform(0.2, 4.0, size=d), rng.uniform(0.2, 4.0, size=d)
  s1, s2 = rot @ np.diag(a) @ rot.T, rot @ np.diag(b) @ rot.T
  got = metrics.frechet_distance_from_statistics(mu1, s1, mu2, s2)
  np.testing.assert_allclose(got, _diag_closed_form(mu1, a, mu2, b), rtol=1e-10)


@pytest.mark.parametrize("d", [3, 16])
def test_frechet_from_statistics_matches_scipy_sqrtm(d):
  rng = _rng(d)
  mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
  s1, s2 = _random_covariance(d, seed=10 + d), _random_covariance(d, seed=20 + d)
  assert not np.allclose(s1 @ s2, s2 @ s1)
  covmean = scipy.linalg.sqrtm(s1 @ s2).real
  want = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean)
  got = metrics.frechet_distance_from_statistics(mu1, s1, mu2, s2)
  np.testing.assert_allclose(got, want, rtol=1e-6)


def test_frechet_from_statistics_rejects_bad_shapes():
  with pytest.raises(ValueError, match="shapes"):
    metrics.frechet_distance_from_statistics(np.ones(3), np.eye(3), np.ones(2), np.eye(2))


def test_frechet_distance_on_samples_approaches_closed_form():
  rng = _rng(4)
  d, n = 4, 20000
  mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
  a, b = rng.uniform(0.5, 2.0, size=d), rng.uniform(0.5, 2.0, size=d)
  x = mu1 + np.sqrt(a) * rng.normal(size=(n, d))
  y = mu2 + np.sqrt(b) * rng.normal(size=(n, d))
  want = _diag_closed_form(mu1, a, mu2, b)
  got = metrics.frechet_distance(x, y)
  assert math.isfinite(got)
  np.testing.assert_allclose(got, want, rtol=0.05, atol=0.02)


def test_frechet_distance_identity_and_symmetry():
  rng = _rng(5)
  x = rng.normal(size=(300, 10)) @ rng.normal(size=(10, 10))
  y = rng.normal(size=(250, 10)) + 0.5
  assert 0.0 <= metrics.frechet_distance(x, x) < 1e-8 * np.trace(np.cov(x, rowvar=False))
  fxy, fyx = metrics.frechet_distance(x, y), metrics.frechet_distance(y, x)
  assert fxy > 1.0
  np.testing.assert_allclose(fxy, fyx, rtol=1e-8)


def test_frechet_distance_rejects_too_few_samples():
  rng = _rng(6)
  with pytest.raises(ValueError, match=r"50 samples of 128-d.*at least 129"):
    metrics.frechet_distance(rng.normal(size=(50, 128)), rng.normal(size=(500, 128)))
  with pytest.raises(ValueError, match=r"8 samples of 8-d features in features_b.*at least 9"):
    metrics.frechet_distance(rng.normal(size=(20, 8)), rng.normal(size=(8, 8)))


def test_frechet_distance_rejects_bad_inputs():
  rng = _rng(7)
  x = rng.normal(size=(40, 3))
  with pytest.raises(ValueError, match="same feature dimension"):
    metrics.frechet_distance(x, rng.normal(size=(40, 4)))
  with pytest.raises(ValueError, match="2-D"):
    metrics.frechet_distance(x[:, 0], x)
  bad = x.copy()
  bad[3, 1] = np.nan
  with pytest.raises(ValueError, match="features_b contains non-finite"):
    metrics.frechet_distance(x, bad)
  bad[3, 1] = np.inf
  with pytest.raises(ValueError, match="features_a contains non-finite"):
    metrics.frechet_distance(bad, x)


def test_frechet_distance_near_singular_covariances_are_finite():
  rng = _rng(8)
  d, rank, n = 32, 5, 400
  # Rank-deficient features (N > D but rank 5): a sqrtm of S1 @ S2 gives complex noise here.
  x = rng.normal(size=(n, rank)) @ rng.normal(size=(rank, d))
  y = rng.normal(size=(n, rank)) @ rng.normal(size=(rank, d)) + 0.1
  for a, b in [(x, y), (y, x), (x, x)]:
    got = metrics.frechet_distance(a, b)
    assert math.isfinite(got) and got >= 0.0
  assert metrics.frechet_distance(x, x) < 1e-6
  # Covariances with tiny (and rounding-negative) eigenvalues.
  rot = _random_rotation(d, seed=9)
  eig = np.concatenate([rng.uniform(0.5, 2.0, size=d - 4), [1e-18, 0.0, -1e-16, 1e-14]])
  s = rot @ np.diag(eig) @ rot.T
  for s2 in (s, s + 1e-3 * np.eye(d)):
    got = metrics.frechet_distance_from_statistics(np.zeros(d), s, np.zeros(d), s2)
    assert math.isfinite(got) and got >= 0.0
  assert metrics.frechet_distance_from_statistics(np.zeros(d), s, np.zeros(d), s) < 1e-8


# ---------------------------------------------------------------------------
# Kernel Inception Distance.
# ---------------------------------------------------------------------------


def _brute_force_mmd2(x, y):
  """Unbiased MMD^2 with k(x, y) = (x.y / D + 1)^3, written out term by term."""
  d = x.shape[1]
  k = lambda u, v: (np.dot(u, v) / d + 1.0) ** 3
  m, n = len(x), len(y)
  kxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
  kyy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
  kxy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
  return kxx + kyy - 2.0 * kxy


def test_kid_matches_brute_force_on_whole_set():
  rng = _rng(10)
  x, y = rng.normal(size=(9, 4)), rng.normal(size=(9, 4)) + 0.3
  mean, std = metrics.kernel_inception_distance(x, y, num_subsets=1, subset_size=100)
  np.testing.assert_allclose(mean, _brute_force_mmd2(x, y), rtol=1e-12)
  assert std == 0.0
  # Every subset is the whole set, so all estimates agree.
  mean3, std3 = metrics.kernel_inception_distance(x, y, num_subsets=3, subset_size=9, seed=4)
  np.testing.assert_allclose(mean3, mean, rtol=1e-12)
  assert std3 < 1e-12


def test_kid_is_unbiased_over_independent_draws():
  rng = _rng(11)
  estimates = []
  for i in range(200):
    x, y = rng.normal(size=(8, 3)), rng.normal(size=(8, 3))
    est, _ = metrics.kernel_inception_distance(x, y, num_subsets=1, subset_size=8)
    if i < 3:
      np.testing.assert_allclose(est, _brute_force_mmd2(x, y), rtol=1e-12)
    estimates.append(est)
  estimates = np.asarray(estimates)
  assert np.all(np.isfinite(estimates)) and np.any(estimates < 0)
  assert abs(estimates.mean()) < 4.0 * estimates.std() / math.sqrt(len(estimates))


def test_kid_same_distribution_small_and_shift_increases():
  rng = _rng(12)
  d, n = 16, 1000
  x, y = rng.normal(size=(n, d)), rng.normal(size=(n, d))
  kwargs = dict(num_subsets=10, subset_size=400)
  same_mean, same_std = metrics.kernel_inception_distance(x, y, **kwargs)
  assert math.isfinite(same_mean) and same_std > 0
  assert abs(same_mean) < 3.0 * same_std and abs(same_mean) < 0.02
  kids = [metrics.kernel_inception_distance(x, y + s, **kwargs)[0] for s in (0.25, 0.5, 1.0)]
  assert kids[0] > same_mean + 10.0 * same_std
  assert kids[0] < kids[1] < kids[2]


def test_kid_seed_and_validation():
  rng = _rng(13)
  x, y = rng.normal(size=(60, 5)), rng.normal(size=(50, 5))
  kwargs = dict(num_subsets=5, subset_size=20)
  a = metrics.kernel_inception_distance(x, y, seed=1, **kwargs)
  assert a == metrics.kernel_inception_distance(x, y, seed=1, **kwargs)
  assert a != metrics.kernel_inception_distance(x, y, seed=2, **kwargs)
  with pytest.raises(ValueError, match="at least 2"):
    metrics.kernel_inception_distance(x, y[:1])
  with pytest.raises(ValueError, match="at least 2"):
    metrics.kernel_inception_distance(x, y, subset_size=1)
  with pytest.raises(ValueError, match="same feature dimension"):
    metrics.kernel_inception_distance(x, y[:, :4])


# ---------------------------------------------------------------------------
# Improved precision and recall.
# ---------------------------------------------------------------------------


def _brute_force_precision_recall(real, fake, k):
  def radii(x):
    d = cdist(x, x)
    np.fill_diagonal(d, np.inf)
    return np.sort(d, axis=1)[:, k - 1]

  d = cdist(fake, real)
  precision = np.mean(np.any(d <= radii(real)[None, :], axis=1))
  recall = np.mean(np.any(d.T <= radii(fake)[None, :], axis=1))
  return {"precision": precision, "recall": recall}


def _around(modes, std, per_mode, rng):
  return np.repeat(modes, per_mode, axis=0) + std * rng.normal(size=(len(modes) * per_mode, 2))


def test_precision_recall_identical_sets():
  x = _rng(14).normal(size=(300, 8))
  assert metrics.precision_recall(x, x.copy()) == {"precision": 1.0, "recall": 1.0}
  # A large common offset must not cancel away the zero distances.
  far = (x + 1e4).astype(np.float32)
  assert metrics.precision_recall(far, far.copy()) == {"precision": 1.0, "recall": 1.0}


def test_precision_recall_disjoint_sets():
  rng = _rng(15)
  real, fake = rng.normal(size=(200, 6)), rng.normal(size=(150, 6)) + 100.0
  assert metrics.precision_recall(real, fake) == {"precision": 0.0, "recall": 0.0}


def test_precision_recall_half_the_modes():
  rng = _rng(16)
  modes = _ring_modes()
  real = _around(modes, RING_STD, 200, rng)
  fake = _around(modes[::2], RING_STD, 200, rng)
  got = metrics.precision_recall(real, fake)
  assert got["precision"] > 0.95
  np.testing.assert_allclose(got["recall"], 0.5, atol=0.03)
  assert got["recall"] <= 0.5


@pytest.mark.parametrize("k", [1, 3, 10])
def test_precision_recall_matches_brute_force(k):
  rng = _rng(17 + k)
  real = rng.normal(size=(160, 5))
  fake = 1.2 * rng.normal(size=(130, 5)) + 0.4
  got = metrics.precision_recall(real, fake, k=k)
  want = _brute_force_precision_recall(real, fake, k)
  assert 0.0 < got["precision"] < 1.0 and 0.0 < got["recall"] < 1.0
  assert got == want


def test_precision_recall_chunk_size_invariant():
  rng = _rng(18)
  real, fake = rng.normal(size=(120, 4)), rng.normal(size=(90, 4)) + 0.5
  results = [metrics.precision_recall(real, fake, chunk_size=c) for c in (1, 7, 64, 1024)]
  assert all(r == results[0] for r in results)


def test_precision_recall_validation():
  rng = _rng(19)
  with pytest.raises(ValueError, match="got 3 fake samples"):
    metrics.precision_recall(rng.normal(size=(10, 2)), rng.normal(size=(3, 2)), k=3)
  with pytest.raises(ValueError, match="same feature dimension"):
    metrics.precision_recall(rng.normal(size=(10, 2)), rng.normal(size=(10, 3)))


# ---------------------------------------------------------------------------
# Classifier-based scores.
# ---------------------------------------------------------------------------


def _direct_split_scores(logits, splits):
  n = len(logits)
  scores = []
  for i in range(splits):
    p = softmax(logits[i * n // splits : (i + 1) * n // splits], axis=1)
    py = p.mean(axis=0)
    scores.append(np.exp(np.mean(np.sum(p * (np.log(p) - np.log(py)), axis=1))))
  return np.mean(scores), np.std(scores)


def test_classifier_score_uniform_predictions_is_one():
  rng = _rng(20)
  logits = rng.normal(size=(100, 1)) * np.ones((1, 10))
  mean, std = metrics.classifier_score(logits)
  np.testing.assert_allclose(mean, 1.0, rtol=1e-12)
  assert std < 1e-12


def test_classifier_score_confident_balanced_is_num_classes():
  rng = _rng(21)
  k, per_class = 10, 50
  labels = np.tile(np.arange(k), per_class)
  logits = 60.0 * np.eye(k)[labels] + rng.normal(size=(k * per_class, k))
  mean, std = metrics.classifier_score(logits, num_splits=10)
  np.testing.assert_allclose(mean, k, rtol=1e-9)
  assert std < 1e-8


def test_classifier_score_splits_are_contiguous():
  rng = _rng(22)
  k, per_class = 5, 40
  # Sorted by class: every split holds one class, so each split scores 1.
  logits = 60.0 * np.eye(k)[np.repeat(np.arange(k), per_class)] + rng.normal(size=(200, k))
  np.testing.assert_allclose(metrics.classifier_score(logits, num_splits=k)[0], 1.0, rtol=1e-9)
  np.testing.assert_allclose(metrics.classifier_score(logits, num_splits=1)[0], k, rtol=1e-9)


@pytest.mark.parametrize("n, splits", [(103, 10), (50, 3), (7, 1)])
def test_classifier_score_matches_direct_computation(n, splits):
  logits = 2.0 * _rng(n).normal(size=(n, 6))
  got = metrics.classifier_score(logits, num_splits=splits)
  np.testing.assert_allclose(got, _direct_split_scores(logits, splits), rtol=1e-10)
  assert 1.0 <= got[0] <= 6.0


def test_classifier_score_reduces_splits_to_num_samples():
  logits = 3.0 * _rng(23).normal(size=(4, 5))
  got = metrics.classifier_score(logits, num_splits=10)
  # One sample per split: p(y) equals p(y|x), so every split scores exactly 1.
  np.testing.assert_allclose(got, (1.0, 0.0), atol=1e-12)
  assert got == metrics.classifier_score(logits, num_splits=4)


def test_classifier_score_is_stable_for_huge_logits():
  logits = 1e4 * _rng(24).normal(size=(60, 4))
  mean, std = metrics.classifier_score(logits, num_splits=3)
  assert np.isfinite([mean, std]).all() and 1.0 <= mean <= 4.0 + 1e-9


def test_label_accuracy():
  rng = _rng(25)
  labels = rng.integers(0, 7, size=40)
  logits = rng.normal(size=(40, 7))
  logits[np.arange(40), labels] += 100.0
  logits[np.arange(10), labels[:10]] -= 200.0  # these 10 are now wrong
  assert metrics.label_accuracy(logits, labels) == 0.75
  with pytest.raises(ValueError):
    metrics.label_accuracy(logits, labels[:5])


# ---------------------------------------------------------------------------
# JS divergence and mode coverage.
# ---------------------------------------------------------------------------


def test_js_divergence_properties_and_scipy():
  rng = _rng(26)
  p, q = rng.uniform(0.1, 1.0, size=12), rng.uniform(0.1, 1.0, size=12)
  p[[2, 5]] = 0.0
  chex.assert_trees_all_close(metrics.js_divergence(p, 3.0 * p), 0.0, atol=1e-15)
  assert metrics.js_divergence([1.0, 0.0, 0.0], [0.0, 2.0, 5.0]) == 1.0
  js = metrics.js_divergence(p, q)
  assert 0.0 < js < 1.0
  np.testing.assert_allclose(js, metrics.js_divergence(q, p), rtol=1e-12)
  np.testing.assert_allclose(js, jensenshannon(p, q, base=2) ** 2, rtol=1e-10)


def _js_one_hot_vs_uniform(m):
  """Closed form of JS(e_1, uniform over m) in bits."""
  kl_one_hot = math.log2(2 * m / (m + 1))
  kl_uniform = math.log2(2 / (m + 1)) / m + (m - 1) / m
  return 0.5 * (kl_one_hot + kl_uniform)


def _within(modes, std, per_mode, rng):
  """Points at distance < std from each mode, per_mode of them per mode."""
  angles = rng.uniform(0, 2 * np.pi, size=len(modes) * per_mode)
  radii = std * rng.uniform(0.0, 0.99, size=angles.shape)
  offsets = radii[:, None] * np.stack([np.cos(angles), np.sin(angles)], axis=1)
  return np.repeat(modes, per_mode, axis=0) + offsets


@pytest.mark.parametrize("modes, std", [(_grid_modes(), GRID_STD), (_ring_modes(), RING_STD)])
def test_mode_coverage_all_modes(modes, std):
  samples = _within(modes, std, 20, _rng(27))
  got = metrics.mode_coverage(samples, modes, std)
  assert got["modes_captured"] == len(modes) and got["num_modes"] == len(modes)
  assert got["high_quality"] == 1.0 and got["num_samples"] == 20 * len(modes)
  chex.assert_trees_all_close(got["mode_js"], 0.0, atol=1e-12)


@pytest.mark.parametrize("modes, std", [(_grid_modes(), GRID_STD), (_ring_modes(), RING_STD)])
def test_mode_coverage_single_mode(modes, std):
  samples = _within(modes[3:4], std, 100, _rng(28))
  got = metrics.mode_coverage(samples, modes, std)
  m = len(modes)
  assert got["modes_captured"] == 1.0 and got["high_quality"] == 1.0
  one_hot = np.eye(m)[3]
  np.testing.assert_allclose(got["mode_js"], metrics.js_divergence(one_hot, np.ones(m)))
  np.testing.assert_allclose(got["mode_js"], _js_one_hot_vs_uniform(m), rtol=1e-12)


def test_mode_coverage_off_mode_noise():
  rng = _rng(29)
  # Odd grid coordinates are sqrt(2) from every grid mode; the ring's centre is 2 away.
  grid_noise = rng.choice([-3.0, -1.0, 1.0, 3.0], size=(50, 2)) + 0.1 * rng.uniform(size=(50, 2))
  ring_noise = 0.5 * rng.uniform(-1.0, 1.0, size=(50, 2))
  cases = [(grid_noise, _grid_modes(), GRID_STD), (ring_noise, _ring_modes(), RING_STD)]
  for samples, modes, std in cases:
    got = metrics.mode_coverage(samples, modes, std)
    assert got == {
      "modes_captured": 0.0,
      "num_modes": float(len(modes)),
      "high_quality": 0.0,
      "mode_js": 1.0,
      "num_samples": 50.0,
    }


def test_mode_coverage_mixed_known_counts():
  rng = _rng(30)
  modes = _grid_modes()
  good = _within(modes[:10], GRID_STD, 7, rng)  # 70 samples on 10 modes
  bad = rng.choice([-3.0, -1.0, 1.0, 3.0], size=(30, 2))  # exactly 30 % off-mode
  samples = rng.permutation(np.concatenate([good, bad]))
  got = metrics.mode_coverage(samples, modes, GRID_STD)
  assert got["high_quality"] == 0.7 and got["modes_captured"] == 10.0
  counts = np.r_[np.full(10, 7.0), np.zeros(15)]
  np.testing.assert_allclose(got["mode_js"], metrics.js_divergence(counts, np.ones(25)))
  assert math.isfinite(got["mode_js"]) and 0.0 < got["mode_js"] < 1.0


def test_mode_coverage_threshold_boundary():
  modes = _ring_modes()
  direction = np.array([np.cos(0.3), np.sin(0.3)])
  inside = modes[5] + 2.9 * RING_STD * direction
  outside = modes[2] + 3.1 * RING_STD * direction
  got = metrics.mode_coverage(np.stack([inside, outside]), modes, RING_STD)
  assert got["high_quality"] == 0.5 and got["modes_captured"] == 1.0
  got = metrics.mode_coverage(np.stack([inside, outside]), modes, RING_STD, threshold=3.2)
  assert got["high_quality"] == 1.0 and got["modes_captured"] == 2.0


def test_energy_distance_equals_its_definition_on_small_sets():
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(40, 3)), rng.normal(1.0, 2.0, size=(30, 3))
  within = lambda a: cdist(a, a).sum() / (len(a) * (len(a) - 1))  # noqa: E731
  expected = 2 * cdist(x, y).mean() - within(x) - within(y)
  assert metrics.energy_distance(x, y) == pytest.approx(expected, rel=1e-10)
  assert metrics.energy_distance(x, y, chunk_size=7) == pytest.approx(expected, rel=1e-10)
  assert metrics.energy_distance(y, x) == pytest.approx(expected, rel=1e-10)


def test_energy_distance_of_shifted_gaussians_matches_the_closed_form():
  # 1-D N(0, 1) against N(mu, 1): X - Y ~ N(-mu, 2), so with s = sqrt(2),
  # E|X - Y| = s sqrt(2/pi) exp(-mu^2 / 2s^2) + mu (1 - 2 Phi(-mu / s)) and E|X - X'| = 2 / sqrt(pi).
  from scipy.stats import norm

  rng = np.random.default_rng(1)
  mu, s, n = 0.8, math.sqrt(2.0), 4000
  cross = s * math.sqrt(2 / math.pi) * math.exp(-(mu**2) / (2 * s**2)) + mu * (
    1 - 2 * norm.cdf(-mu / s)
  )
  expected = 2 * cross - 2 * (2 / math.sqrt(math.pi))
  got = metrics.energy_distance(rng.normal(size=(n, 1)), rng.normal(mu, size=(n, 1)))
  assert got == pytest.approx(expected, abs=0.02)  # Sampling error ~ 1/sqrt(n).
  same = metrics.energy_distance(rng.normal(size=(n, 1)), rng.normal(size=(n, 1)))
  assert abs(same) < 0.01

"""Tests for genjax.objectives.vae against closed forms, scipy and identities."""

import doctest
import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from scipy import integrate, stats

from genjax.core import random
from genjax.objectives import vae


def _keys(b, seed=0):
  return jax.random.split(jax.random.key(seed), b)


def _rng(seed=0):
  return np.random.default_rng(seed)


# ---------------------------------------------------------------------------
# KL divergences.
# ---------------------------------------------------------------------------


def test_kl_known_values():
  one = jnp.ones((1, 1))
  np.testing.assert_allclose(vae.kl_standard_normal(one, 0 * one), [0.5], rtol=1e-6)
  np.testing.assert_allclose(
    vae.kl_standard_normal(0 * one, math.log(4.0) * one), [0.8068528], rtol=1e-6
  )
  np.testing.assert_allclose(
    vae.kl_diag_gaussians(0 * one, math.log(4.0) * one, 0.0, 0.0), [0.8068528], rtol=1e-6
  )


def test_kl_diag_gaussians_matches_numerical_integration():
  rng = _rng(1)
  mq, mp = rng.normal(size=(2, 3)), rng.normal(size=(2, 3))
  lvq, lvp = rng.uniform(-1.5, 1.0, size=(2, 3)), rng.uniform(-1.0, 1.5, size=(2, 3))
  got = vae.kl_diag_gaussians(*(jnp.asarray(a, jnp.float32) for a in (mq, lvq, mp, lvp)))
  want = np.zeros(2)
  for i in range(2):
    for j in range(3):
      q = stats.norm(mq[i, j], math.exp(0.5 * lvq[i, j]))
      p = stats.norm(mp[i, j], math.exp(0.5 * lvp[i, j]))
      lo, hi = q.mean() - 12 * q.std(), q.mean() + 12 * q.std()
      val, _ = integrate.quad(lambda t, q=q, p=p: q.pdf(t) * (q.logpdf(t) - p.logpdf(t)), lo, hi)
      want[i] += val
  assert got.shape == (2,) and np.all(np.isfinite(got))
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_kl_diag_gaussians_with_standard_prior_equals_kl_standard_normal():
  rng = _rng(2)
  m = jnp.asarray(rng.normal(size=(4, 2, 3)), jnp.float32)
  lv = jnp.asarray(rng.normal(size=(4, 2, 3)), jnp.float32)
  a = vae.kl_diag_gaussians(m, lv, jnp.zeros_like(m), jnp.zeros_like(lv))
  b = vae.kl_diag_gaussians(m, lv, 0.0, 0.0)
  c = vae.kl_standard_normal(m, lv)
  assert c.shape == (4,) and np.all(c > 0)
  np.testing.assert_allclose(a, c, rtol=1e-6)
  np.testing.assert_allclose(b, c, rtol=1e-6)


# ---------------------------------------------------------------------------
# Likelihoods.
# ---------------------------------------------------------------------------


def test_bernoulli_at_zero_logits_is_minus_d_log2():
  x = jnp.asarray(_rng(3).integers(0, 2, size=(3, 28, 28, 1)), jnp.float32)
  ll = vae.bernoulli_log_likelihood(x, jnp.zeros_like(x))
  np.testing.assert_allclose(ll, np.full(3, -784 * math.log(2.0)), rtol=1e-6)


def test_bernoulli_matches_scipy():
  rng = _rng(4)
  logits = rng.normal(scale=3.0, size=(5, 7))
  x = rng.integers(0, 2, size=(5, 7))
  want = stats.bernoulli.logpmf(x, 1.0 / (1.0 + np.exp(-logits))).sum(axis=1)
  f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
  got = vae.bernoulli_log_likelihood(f32(x), f32(logits))
  np.testing.assert_allclose(got, want, rtol=1e-5)


def test_bernoulli_stable_for_extreme_logits():
  logits = jnp.array([[100.0, -100.0, 100.0, -100.0]])
  x = jnp.array([[0.0, 1.0, 1.0, 0.0]])
  ll = vae.bernoulli_log_likelihood(x, logits)
  np.testing.assert_allclose(ll, [-200.0], rtol=1e-6)
  grad = jax.grad(lambda lg: vae.bernoulli_log_likelihood(x, lg).sum())(logits)
  assert np.all(np.isfinite(grad))
  np.testing.assert_allclose(grad, [[-1.0, 1.0, 0.0, 0.0]], atol=1e-6)


def test_gaussian_log_likelihood_matches_scipy():
  rng = _rng(5)
  x, mean = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 3, 4))
  log_var = rng.uniform(-2.0, 2.0, size=(2, 3, 4))
  f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
  want = stats.norm.logpdf(x, mean, np.exp(0.5 * log_var)).reshape(2, -1).sum(1)
  x32, mean32 = f32(x), f32(mean)
  got = vae.gaussian_log_likelihood(x32, mean32, f32(log_var))
  np.testing.assert_allclose(got, want, rtol=1e-5)
  want_fixed = stats.norm.logpdf(x, mean, math.exp(0.5 * -1.3)).reshape(2, -1).sum(1)
  got = vae.gaussian_log_likelihood(x32, mean32, -1.3)
  np.testing.assert_allclose(got, want_fixed, rtol=1e-5)
  got = vae.diag_gaussian_log_prob(x32, mean32, f32(log_var))
  np.testing.assert_allclose(got, want, rtol=1e-5)


_GRID = np.linspace(-1.0, 1.0, 256)


@pytest.mark.parametrize(
  "mean,log_scale",
  [(0.0, -2.0), (0.3, -6.0), (-0.999, -3.0), (0.998, 0.5), (1.0, -8.0), (-1.0, 2.0), (0.5, -4.5)],
)
def test_discretized_logistic_bins_sum_to_one_and_match_scipy(mean, log_scale):
  # One single-pixel example per bin value.
  x = jnp.asarray(_GRID, jnp.float32).reshape(256, 1)
  ll = vae.discretized_logistic_log_likelihood(
    x, jnp.full_like(x, mean), jnp.full_like(x, log_scale)
  )
  assert ll.shape == (256,) and np.all(np.isfinite(ll))
  probs = np.exp(np.asarray(ll, np.float64))
  np.testing.assert_allclose(probs.sum(), 1.0, atol=1e-4)
  # Independent truth: logistic CDF differences in float64 with open-ended edge bins.
  edges = np.concatenate([[-np.inf], (_GRID[:-1] + _GRID[1:]) / 2, [np.inf]])
  cdf = stats.logistic.cdf(edges, loc=mean, scale=math.exp(log_scale))
  want = np.diff(cdf)
  np.testing.assert_allclose(probs, want, atol=2e-6, rtol=2e-3)


def test_discretized_logistic_gradients_finite_in_tails():
  x = jnp.asarray([[-1.0, 1.0, 0.0, 2 / 255 - 1.0]])
  mean = jnp.asarray([[0.9, -0.9, 0.95, 0.99]])
  for log_scale in (-9.0, 0.0, 4.0):
    ls = jnp.full_like(x, log_scale)
    ll, grads = jax.value_and_grad(
      lambda m, s: vae.discretized_logistic_log_likelihood(x, m, s).sum(), argnums=(0, 1)
    )(mean, ls)
    assert np.isfinite(ll) and all(np.all(np.isfinite(g)) for g in grads)


def test_likelihood_registry_consistent_with_functions():
  rng = _rng(6)
  x01 = jnp.asarray(rng.uniform(size=(3, 4, 4, 1)), jnp.float32)
  xpm = jnp.asarray(np.round(rng.uniform(0, 255, size=(3, 4, 4, 1))) / 127.5 - 1.0, jnp.float32)
  for name, n in vae.LIKELIHOOD_NUM_PARAMS.items():
    x = xpm if name == "discretized_logistic" else x01
    out = jnp.asarray(rng.normal(size=x.shape + (n,)), jnp.float32)
    got = vae.LIKELIHOODS[name](x, out)
    if name == "bernoulli":
      want = vae.bernoulli_log_likelihood(x, out[..., 0])
    elif name == "gaussian_fixed":
      want = vae.gaussian_log_likelihood(x, out[..., 0], 0.0)
    elif name == "gaussian_learned":
      want = vae.gaussian_log_likelihood(x, out[..., 0], out[..., 1])
    else:
      want = vae.discretized_logistic_log_likelihood(x, out[..., 0], out[..., 1])
    assert got.shape == (3,) and np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=1e-6)
  out = jnp.asarray(rng.normal(size=x01.shape + (1,)), jnp.float32)
  np.testing.assert_allclose(
    vae.get_likelihood("gaussian_fixed", fixed_log_var=-2.0)(x01, out),
    vae.gaussian_log_likelihood(x01, out[..., 0], -2.0),
    rtol=1e-6,
  )
  with pytest.raises(ValueError, match="decoder output of shape"):
    vae.LIKELIHOODS["gaussian_learned"](x01, out)
  with pytest.raises(ValueError, match="allowed"):
    vae.get_likelihood("poisson")


def test_likelihood_mean():
  out = jnp.asarray(_rng(7).normal(scale=2.0, size=(2, 3, 2)), jnp.float32)
  mean = vae.likelihood_mean
  np.testing.assert_allclose(mean("bernoulli", out[..., :1]), jax.nn.sigmoid(out[..., 0]))
  np.testing.assert_allclose(mean("gaussian_learned", out), np.clip(out[..., 0], 0, 1))
  np.testing.assert_allclose(mean("discretized_logistic", out), np.clip(out[..., 0], -1, 1))
  np.testing.assert_allclose(
    vae.likelihood_mean("gaussian_fixed", out[..., :1], data_range=(-1.0, 1.0)),
    np.clip(out[..., 0], -1, 1),
  )
  assert vae.likelihood_mean("gaussian_learned", out).shape == (2, 3)
  with pytest.raises(ValueError, match="allowed"):
    vae.likelihood_mean("nope", out)


# ---------------------------------------------------------------------------
# Reparameterization.
# ---------------------------------------------------------------------------


def test_reparameterize_moments():
  b = 20000
  mean = jnp.broadcast_to(jnp.array([1.5, -2.0]), (b, 2))
  log_var = jnp.broadcast_to(jnp.log(jnp.array([0.25, 4.0])), (b, 2))
  z = vae.reparameterize(_keys(b), mean, log_var)
  assert z.shape == (b, 2) and np.all(np.isfinite(z))
  np.testing.assert_allclose(z.mean(0), [1.5, -2.0], atol=0.05)
  np.testing.assert_allclose(z.std(0), [0.5, 2.0], rtol=0.03)


def test_reparameterize_gradients():
  rng = _rng(8)
  keys = _keys(3)
  mean = jnp.asarray(rng.normal(size=(3, 2)), jnp.float32)
  log_var = jnp.asarray(rng.normal(size=(3, 2)), jnp.float32)

  @jax.jit
  def run(mean, log_var):
    jac = jax.jacobian(lambda m: vae.reparameterize(keys, m, log_var))(mean)
    g = jax.grad(lambda lv: vae.reparameterize(keys, mean, lv).sum())(log_var)
    return jac, g, vae.reparameterize(keys, mean, log_var)

  jac, g, z = run(mean, log_var)
  np.testing.assert_allclose(jac.reshape(6, 6), np.eye(6), atol=0)
  np.testing.assert_allclose(g, 0.5 * (z - mean), rtol=1e-5, atol=1e-7)


def test_reparameterize_uses_only_own_key():
  rng = _rng(9)
  keys = _keys(3)
  mean = jnp.asarray(rng.normal(size=(3, 4)), jnp.float32)
  log_var = jnp.asarray(rng.normal(size=(3, 4)), jnp.float32)
  z = vae.reparameterize(keys, mean, log_var)
  z2 = vae.reparameterize(keys.at[1].set(jax.random.key(123)), mean, log_var)
  np.testing.assert_array_equal(z[0], z2[0])
  np.testing.assert_array_equal(z[2], z2[2])
  assert not np.allclose(z[1], z2[1])


# ---------------------------------------------------------------------------
# Toy models.
# ---------------------------------------------------------------------------

_D, _L = 4, 2


# Jitted entry points (static model closures) keep the tests fast: eager dispatch
# of many tiny ops costs far more than one compile on a 2-core machine.
_STATIC = ("encode", "decode", "log_likelihood", "num_samples", "chunk_size")
_iwae = jax.jit(vae.iwae_bound, static_argnames=_STATIC)
_iwae_loss = jax.jit(vae.iwae_loss, static_argnames=_STATIC)
_elbo = jax.jit(vae.elbo, static_argnames=_STATIC[:3] + ("kl_estimator",))


@functools.cache
def _nonlinear_model(seed=10):
  rng = _rng(seed)
  shapes = [(_D, _L), (_D, _L), (_L, _D), (_L, _D)]
  a, c, e, f = (jnp.asarray(rng.normal(size=s) * 0.5, jnp.float32) for s in shapes)

  def encode(x):
    return jnp.tanh(x @ a), x @ c - 1.0

  def decode(z):
    return jnp.stack([jnp.tanh(z @ e), 0.3 * jnp.sin(z @ f)], axis=-1)

  return dict(encode=encode, decode=decode, log_likelihood=vae.LIKELIHOODS["gaussian_learned"])


@functools.cache
def _linear_gaussian(seed=11, exact=True):
  """z ~ N(0, I), x | z ~ N(W z + b, s2 I) with W^T W diagonal (so the posterior is diagonal)."""
  rng = _rng(seed)
  q, _ = np.linalg.qr(rng.normal(size=(_D, _L)))
  w = q * np.array([1.5, 0.7])
  b = rng.normal(size=_D)
  s2 = 0.5
  post_var = 1.0 / (1.0 + np.diag(w.T @ w) / s2)
  wj, bj = jnp.asarray(w, jnp.float32), jnp.asarray(b, jnp.float32)

  def encode(x):
    mean = (x - bj) @ wj * jnp.asarray(post_var / s2, jnp.float32)
    log_var = jnp.broadcast_to(jnp.log(jnp.asarray(post_var, jnp.float32)), mean.shape)
    if not exact:  # a deliberately poor q: shifted and too narrow
      return mean + 0.5, log_var - 1.0
    return mean, log_var

  def decode(z):
    return (z @ wj.T + bj)[..., None]

  model = dict(
    encode=encode,
    decode=decode,
    log_likelihood=vae.get_likelihood("gaussian_fixed", fixed_log_var=math.log(s2)),
  )
  marginal = stats.multivariate_normal(b, w @ w.T + s2 * np.eye(_D))  # closed-form p(x)
  log_px = marginal.logpdf
  return model, log_px


def _data(b, seed=12):
  return jnp.asarray(_rng(seed).normal(size=(b, _D)), jnp.float32)


# ---------------------------------------------------------------------------
# ELBO.
# ---------------------------------------------------------------------------


class ElboVariantsTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters("analytic", "sample")
  def test_elbo_shapes_and_identities(self, kl_estimator):
    model = _nonlinear_model()
    fn = self.variant(
      lambda x, keys, beta: vae.elbo(x, keys, beta=beta, kl_estimator=kl_estimator, **model)
    )
    out = fn(_data(5), _keys(5), 0.25)
    assert sorted(out) == ["elbo", "kl", "loss", "recon"]
    for v in out.values():
      chex.assert_shape(v, (5,))
      chex.assert_tree_all_finite(v)
    np.testing.assert_allclose(out["elbo"], out["recon"] - out["kl"], rtol=1e-6)
    np.testing.assert_allclose(out["loss"], -(out["recon"] - 0.25 * out["kl"]), rtol=1e-6)


def test_elbo_sample_key_kl_consistency_and_grads():
  model = _nonlinear_model()
  b = 4000
  x = jnp.broadcast_to(_data(1), (b, _D))
  keys = _keys(b)

  @jax.jit
  def run(x):
    analytic = vae.elbo(x, keys, **model)
    sampled = vae.elbo(x, keys, kl_estimator="sample", **model)
    mean, log_var = model["encode"](x)
    z = vae.reparameterize(random.fold_in(keys, 0), mean, log_var)
    recon = model["log_likelihood"](x, model["decode"](z))
    grads = jax.grad(lambda x: vae.elbo(x, keys, **model)["loss"].mean())(x)
    return analytic, sampled, recon, grads

  analytic, sampled, recon, grads = run(x)
  chex.assert_tree_all_finite(grads)
  # Sample 0 is drawn from fold_in(keys[i], 0), as in iwae_bound.
  np.testing.assert_allclose(analytic["recon"], recon, rtol=1e-5)
  np.testing.assert_allclose(sampled["recon"], recon, rtol=1e-5)
  # Monte-Carlo KL log q(z|x) - log p(z) averages to the closed form.
  np.testing.assert_allclose(sampled["kl"].mean(), analytic["kl"][0], rtol=0.05)
  with pytest.raises(ValueError, match="analytic"):
    vae.elbo(x, keys, kl_estimator="bogus", **model)


def test_kl_warmup_weight():
  assert float(vae.kl_warmup_weight(0, 100)) == 0.0
  assert float(vae.kl_warmup_weight(50, 100)) == pytest.approx(0.5)
  assert float(vae.kl_warmup_weight(100, 100)) == 1.0
  assert float(vae.kl_warmup_weight(10_000, 100)) == 1.0
  assert float(vae.kl_warmup_weight(0, 0)) == 1.0
  assert float(vae.kl_warmup_weight(7, 0)) == 1.0
  assert float(jax.jit(vae.kl_warmup_weight)(jnp.int32(25), 100)) == pytest.approx(0.25)


# ---------------------------------------------------------------------------
# IWAE.
# ---------------------------------------------------------------------------


def test_iwae_k1_equals_single_sample_elbo():
  model = _nonlinear_model()
  x, keys = _data(6), _keys(6, seed=3)
  bound = _iwae(x, keys, num_samples=1, **model)
  ref = _elbo(x, keys, kl_estimator="sample", **model)["elbo"]
  assert bound.shape == (6,) and np.all(np.isfinite(bound))
  np.testing.assert_allclose(bound, ref, rtol=1e-5, atol=1e-5)


def test_iwae_chunked_equals_unchunked_values_and_grads():
  model = _nonlinear_model()
  x, keys = _data(3), _keys(3, seed=4)

  @functools.partial(jax.jit, static_argnums=1)
  def value_and_grad(x, chunk):
    def f(x):
      return vae.iwae_bound(x, keys, num_samples=8, chunk_size=chunk, **model)

    return f(x), jax.grad(lambda x: f(x).sum())(x)

  full, g_full = value_and_grad(x, None)
  chunked, g_chunk = value_and_grad(x, 2)
  chex.assert_tree_all_finite((chunked, g_chunk))
  np.testing.assert_allclose(chunked, full, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(g_chunk, g_full, rtol=1e-4, atol=1e-5)


def test_iwae_rejects_non_dividing_chunk():
  model = _nonlinear_model()
  with pytest.raises(ValueError, match=r"num_samples \(8\).*chunk_size \(3\)"):
    vae.iwae_bound(_data(2), _keys(2), num_samples=8, chunk_size=3, **model)


def test_iwae_bound_tightens_with_k():
  model, log_px = _linear_gaussian(exact=False)
  b = 64
  x = jnp.broadcast_to(_data(1, seed=13), (b, _D))
  keys = _keys(b, seed=5)
  means = [
    float(_iwae(x, keys, num_samples=k, chunk_size=c, **model).mean())
    for k, c in ((1, None), (10, None), (100, 25))
  ]
  truth = float(log_px(np.asarray(x[0], np.float64)))
  # Gaps are ~0.3-0.6 nats here, several standard errors of the 64-key averages.
  assert means[0] < means[1] < means[2] < truth, (means, truth)


@pytest.mark.parametrize("k,chunk", [(1, None), (12, 4)])
def test_iwae_equals_log_px_for_exact_posterior(k, chunk):
  model, log_px = _linear_gaussian(exact=True)
  x = _data(5, seed=14)
  loss = _iwae_loss(x, _keys(5, seed=6), num_samples=k, chunk_size=chunk, **model)
  want = log_px(np.asarray(x, np.float64))
  np.testing.assert_allclose(-loss, want, rtol=1e-5, atol=1e-4)


def test_elbo_is_exact_for_exact_posterior():
  model, log_px = _linear_gaussian(exact=True)
  x = _data(5, seed=14)
  want = log_px(np.asarray(x, np.float64))
  # Every importance weight equals p(x), so even the single-sample sampled-KL ELBO is exact.
  sampled = _elbo(x, _keys(5), kl_estimator="sample", **model)["elbo"]
  np.testing.assert_allclose(sampled, want, rtol=1e-5, atol=1e-4)


def test_docstring_examples():
  result = doctest.testmod(vae, optionflags=doctest.NORMALIZE_WHITESPACE)
  assert result.attempted > 0 and result.failed == 0


def test_free_bits_stop_the_kl_gradient_of_dimensions_below_their_floor():
  mean = jnp.array([[2.0, 0.05, 0.0], [1.5, -0.05, 0.0]])  # KL: large, tiny, zero
  log_var = jnp.zeros_like(mean)
  floor = 0.5

  def free(m):
    return jnp.mean(vae.free_bits_kl(m, log_var, floor))

  def plain(m):
    return jnp.mean(vae.kl_standard_normal(m, log_var))

  per_dim = 0.5 * np.square(np.asarray(mean))  # KL of N(m, 1) from N(0, 1)
  expected = per_dim[:, 0].mean() + 2 * floor  # Dimensions 1 and 2 sit at their floor.
  np.testing.assert_allclose(free(mean), expected, rtol=1e-6)
  grad, plain_grad = jax.grad(free)(mean), jax.grad(plain)(mean)
  np.testing.assert_allclose(grad[:, 0], plain_grad[:, 0], rtol=1e-6)
  np.testing.assert_array_equal(grad[:, 1:], 0.0)
  # With every dimension above its floor, free bits change nothing.
  np.testing.assert_allclose(
    vae.free_bits_kl(mean, log_var, 1e-6), vae.kl_standard_normal(mean, log_var), rtol=1e-6
  )


def test_free_bits_change_only_the_loss_of_the_elbo():
  x = jnp.ones((2, 3))
  keys = jax.random.split(jax.random.key(0), 2)
  fns = dict(
    encode=lambda x: (0.1 * x, jnp.zeros_like(x)),
    decode=lambda z: z[..., None],
    log_likelihood=vae.LIKELIHOODS["gaussian_fixed"],
  )
  plain, free = vae.elbo(x, keys, **fns), vae.elbo(x, keys, free_bits=0.5, **fns)
  for k in ("elbo", "recon", "kl"):
    np.testing.assert_array_equal(plain[k], free[k])
  np.testing.assert_allclose(free["loss"], -(free["recon"] - 3 * 0.5), rtol=1e-6)


def test_active_units_threshold_the_variance_of_posterior_means():
  rng = np.random.default_rng(0)
  # Standard deviations 1, 0.3 and 0.01 around large offsets: variances 1, 0.09, 1e-4.
  mu = rng.normal(size=(20000, 3)) * [1.0, 0.3, 0.01] + [50.0, -20.0, 30.0]
  assert vae.active_units(mu.mean(0), np.square(mu).mean(0)) == 2
  assert vae.active_units(mu.mean(0), np.square(mu).mean(0), threshold=1e-5) == 3

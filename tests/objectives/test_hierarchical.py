"""genjax.objectives.hierarchical against closed forms.

The reference model is linear-Gaussian with two layers, every dimension
independent: p(z2) = N(0, 1), p(z1 | z2) = N(A z2 + a, D1), p(x | z1) =
N(B z1 + b, D2). Its marginal log p(x) and both factorisations of the exact
posterior are computed here in float64 by Gaussian conditioning, not by the
code under test. With q equal to the exact posterior every importance weight
equals p(x), so the IWAE estimate equals log p(x) for any k and any key.
"""

import doctest

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from genjax.core import random
from genjax.objectives import hierarchical, vae
from genjax.objectives.hierarchical import Layer

D = 3  # dimensions of x, z1 and z2
B = 5  # examples
RNG = np.random.default_rng(0)
A, a, D1 = RNG.uniform(0.5, 2.0, D), RNG.normal(size=D), RNG.uniform(0.3, 1.5, D)
Bm, b, D2 = RNG.uniform(-2.0, -0.5, D), RNG.normal(size=D), RNG.uniform(0.2, 0.8, D)
X = RNG.normal(size=(B, D)) * 2.0


def _log_px(x):
  """log p(x): x ~ N(B a + b, B^2 (A^2 + D1) + D2) in each dimension."""
  var = Bm**2 * (A**2 + D1) + D2
  return stats.norm(Bm * a + b, np.sqrt(var)).logpdf(x).sum(1)


def _f32(v):
  return jnp.asarray(v, jnp.float32)


def _decoder_output(z1):
  """gaussian_learned parameters of p(x | z1): mean and log-variance."""
  mean = _f32(Bm) * z1 + _f32(b)
  return jnp.stack([mean, jnp.broadcast_to(_f32(np.log(D2)), mean.shape)], axis=-1)


def _p_z1(z2):
  return _f32(A) * z2 + _f32(a), jnp.broadcast_to(_f32(np.log(D1)), z2.shape)


def _top_down_exact(x, noise):
  """q(z2 | x) q(z1 | z2, x), both exact: x = B A z2 + (B a + b) + noise of variance B^2 D1 + D2."""
  gain, noise_var = Bm * A, Bm**2 * D1 + D2
  prec2 = 1.0 + gain**2 / noise_var
  mean2 = _f32(gain / noise_var / prec2) * (x - _f32(Bm * a + b))
  log_var2 = jnp.broadcast_to(_f32(-np.log(prec2)), x.shape)
  z2 = mean2 + jnp.exp(0.5 * log_var2) * noise[1]
  p_mean1, p_log_var1 = _p_z1(z2)
  prec1 = 1.0 / D1 + Bm**2 / D2
  mean1 = (p_mean1 / _f32(D1) + _f32(Bm / D2) * (x - _f32(b))) / _f32(prec1)
  log_var1 = jnp.broadcast_to(_f32(-np.log(prec1)), x.shape)
  z1 = mean1 + jnp.exp(0.5 * log_var1) * noise[0]
  zero = jnp.zeros_like(z2)
  layers = (Layer(z1, mean1, log_var1, p_mean1, p_log_var1), Layer(z2, mean2, log_var2, zero, zero))
  return layers, _decoder_output(z1)


def _bottom_up_exact(x, noise):
  """q(z1 | x) q(z2 | z1), both exact (z2 is independent of x given z1)."""
  var1 = A**2 + D1  # marginal variance of z1
  prec1 = 1.0 / var1 + Bm**2 / D2
  mean1 = (_f32(a / var1) + _f32(Bm / D2) * (x - _f32(b))) / _f32(prec1)
  log_var1 = jnp.broadcast_to(_f32(-np.log(prec1)), x.shape)
  z1 = mean1 + jnp.exp(0.5 * log_var1) * noise[0]
  prec2 = 1.0 + A**2 / D1
  mean2 = _f32(A / D1 / prec2) * (z1 - _f32(a))
  log_var2 = jnp.broadcast_to(_f32(-np.log(prec2)), x.shape)
  z2 = mean2 + jnp.exp(0.5 * log_var2) * noise[1]
  zero = jnp.zeros_like(z2)
  layers = (Layer(z1, mean1, log_var1, *_p_z1(z2)), Layer(z2, mean2, log_var2, zero, zero))
  return layers, _decoder_output(z1)


def _model(sample):
  return dict(
    infer=lambda x: x,
    sample=sample,
    log_likelihood=vae.LIKELIHOODS["gaussian_learned"],
    latent_dims=(D, D),
  )


def _keys(seed, n=B):
  return jax.random.split(jax.random.key(seed), n)


@pytest.mark.parametrize(
  "sample", [_top_down_exact, _bottom_up_exact], ids=["top_down", "bottom_up"]
)
@pytest.mark.parametrize("k,chunk", [(1, None), (3, None), (8, 2), (12, 4)])
def test_iwae_with_the_exact_posterior_is_log_px_for_any_k_and_key(sample, k, chunk):
  want = _log_px(X)
  for seed in range(3):
    got = hierarchical.iwae_bound(
      _f32(X), _keys(seed), num_samples=k, chunk_size=chunk, **_model(sample)
    )
    assert got.shape == (B,) and np.all(np.isfinite(got))
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(
  "sample", [_top_down_exact, _bottom_up_exact], ids=["top_down", "bottom_up"]
)
def test_sampled_kl_elbo_with_the_exact_posterior_is_log_px(sample):
  out = hierarchical.elbo(_f32(X), _keys(4), kl_estimator="sample", **_model(sample))
  np.testing.assert_allclose(np.asarray(out["elbo"], np.float64), _log_px(X), rtol=1e-5, atol=1e-4)


def test_analytic_kl_elbo_of_the_exact_top_down_posterior_is_log_px_on_average():
  """The analytic per-layer KL changes each draw's value but not its mean (top-down q)."""
  x = jnp.broadcast_to(_f32(X[:1]), (4000, D))
  out = hierarchical.elbo(x, _keys(5, 4000), **_model(_top_down_exact))
  mean, sem = float(jnp.mean(out["elbo"])), float(jnp.std(out["elbo"])) / np.sqrt(4000)
  assert abs(mean - _log_px(X[:1])[0]) < 4 * sem + 1e-4
  assert float(jnp.std(out["elbo"])) > 1e-3  # Not exact per draw, so the test can tell.


def _random_model(x, noise):
  """A top-down model whose q is not the posterior: fixed random maps, two layers of 4 and 2."""
  rng = np.random.default_rng(3)
  w = [_f32(rng.normal(size=s) * 0.5) for s in [(D, 2), (D, 2), (2, 4), (2, 4), (D + 2, 4), (4, D)]]
  mean2, log_var2 = x @ w[0], jnp.tanh(x @ w[1])
  z2 = mean2 + jnp.exp(0.5 * log_var2) * noise[1]
  p_mean1, p_log_var1 = z2 @ w[2], jnp.tanh(z2 @ w[3])
  h = jnp.concatenate([x, z2], axis=1)
  mean1, log_var1 = p_mean1 + h @ w[4], p_log_var1 - 0.3
  z1 = mean1 + jnp.exp(0.5 * log_var1) * noise[0]
  zero = jnp.zeros_like(z2)
  layers = (Layer(z1, mean1, log_var1, p_mean1, p_log_var1), Layer(z2, mean2, log_var2, zero, zero))
  return layers, (z1 @ w[5])[..., None]


RANDOM = dict(
  infer=lambda x: x,
  sample=_random_model,
  log_likelihood=vae.LIKELIHOODS["gaussian_fixed"],
  latent_dims=(4, 2),
)


def _np_kl(mq, lvq, mp, lvp):
  mq, lvq, mp, lvp = (np.asarray(v, np.float64) for v in (mq, lvq, mp, lvp))
  return 0.5 * (lvp - lvq + (np.exp(lvq) + (mq - mp) ** 2) / np.exp(lvp) - 1.0).sum(1)


def test_layer_kls_are_the_closed_form_kls_and_sum_to_the_total():
  x, keys = _f32(X), _keys(6)
  out = hierarchical.elbo(x, keys, **RANDOM)
  layers, _ = _random_model(x, hierarchical.layer_noise(random.fold_in(keys, 0), (4, 2)))
  assert out["kl_layers"].shape == (B, 2)
  for i, layer in enumerate(layers):
    want = _np_kl(layer.q_mean, layer.q_log_var, layer.p_mean, layer.p_log_var)
    np.testing.assert_allclose(np.asarray(out["kl_layers"][:, i]), want, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(out["kl"], out["kl_layers"].sum(1), rtol=1e-6)
  assert np.all(np.asarray(out["kl_layers"]) > 0)
  np.testing.assert_allclose(out["elbo"], out["recon"] - out["kl"], rtol=1e-6)
  sampled = hierarchical.elbo(x, keys, kl_estimator="sample", **RANDOM)
  np.testing.assert_allclose(sampled["kl"], sampled["kl_layers"].sum(1), rtol=1e-5, atol=1e-5)


def test_iwae_k1_equals_the_sampled_kl_elbo_and_is_chunk_independent():
  x, keys = _f32(X), _keys(7)
  elbo = hierarchical.elbo(x, keys, kl_estimator="sample", **RANDOM)["elbo"]
  np.testing.assert_allclose(
    hierarchical.iwae_bound(x, keys, num_samples=1, **RANDOM), elbo, rtol=1e-6, atol=1e-5
  )
  whole = hierarchical.iwae_bound(x, keys, num_samples=12, **RANDOM)
  for chunk in (1, 3, 4):
    got = hierarchical.iwae_bound(x, keys, num_samples=12, chunk_size=chunk, **RANDOM)
    np.testing.assert_allclose(got, whole, rtol=1e-6, atol=1e-5)
  assert np.mean(whole) > np.mean(elbo)  # k = 12 is tighter than one sample (on average)


def test_one_layer_is_the_flat_vae_bound():
  """With L = 1 the noise rule and the weights are the flat VAE's: identical bounds."""
  rng = np.random.default_rng(8)
  w_mean, w_var, w_dec = (_f32(rng.normal(size=(D, 2)) * 0.5) for _ in range(3))
  encode = lambda x: (x @ w_mean, jnp.tanh(x @ w_var))  # noqa: E731
  decode = lambda z: (z @ w_dec.T)[..., None]  # noqa: E731

  def sample(x, noise):
    mean, log_var = encode(x)
    z = mean + jnp.exp(0.5 * log_var) * noise[0]
    zero = jnp.zeros_like(z)
    return (Layer(z, mean, log_var, zero, zero),), decode(z)

  likelihood = vae.LIKELIHOODS["gaussian_fixed"]
  x, keys = _f32(X), _keys(9)
  flat = vae.iwae_bound(
    x, keys, encode=encode, decode=decode, log_likelihood=likelihood, num_samples=6
  )
  got = hierarchical.iwae_bound(
    x,
    keys,
    infer=lambda x: x,
    sample=sample,
    log_likelihood=likelihood,
    latent_dims=(2,),
    num_samples=6,
  )
  np.testing.assert_allclose(got, flat, rtol=1e-6, atol=1e-5)


def _free_bits_model(theta, x, noise):
  """q(z_l) = N(theta_l, 1); p(z_1) = N(0.5, 1) and p(z_2) = N(0, 1): each KL reads one theta."""
  del x
  ones, zero = jnp.ones_like(noise[0]), jnp.zeros_like(noise[0])
  mean1, mean2 = theta["bottom"] * ones, theta["top"] * ones
  layers = (
    Layer(mean1 + noise[0], mean1, zero, zero + 0.5, zero),
    Layer(mean2 + noise[1], mean2, zero, zero, zero),
  )
  return layers, layers[0].z[:, :1, None]


def test_free_bits_stop_the_gradient_of_a_layer_below_its_floor():
  theta = {"top": jnp.asarray([0.1, -0.2]), "bottom": jnp.asarray([3.0, -2.0])}
  x = _f32(X[:, :1])
  # KL per dimension: top 0.005 and 0.02 nats, bottom 3.125 and 3.125 nats.

  def kl_loss(theta, floor):
    out = hierarchical.elbo(
      x,
      _keys(10),
      infer=lambda x: x,
      sample=lambda x, noise: _free_bits_model(theta, x, noise),
      log_likelihood=vae.LIKELIHOODS["gaussian_fixed"],
      latent_dims=(2, 2),
      free_bits=floor,
    )
    return jnp.mean(out["loss"] + out["recon"])  # beta * the penalised KL

  free = jax.grad(kl_loss)(theta, 0.5)
  np.testing.assert_array_equal(free["top"], 0.0)  # Below the floor: no pull towards the prior.
  assert np.all(np.abs(np.asarray(free["bottom"])) > 1.0)  # Above it: the full KL gradient.
  np.testing.assert_allclose(kl_loss(theta, 0.5), 2 * 0.5 + 2 * (3.0 - 0.5) ** 2 / 2, rtol=1e-5)
  plain = jax.grad(kl_loss)(theta, 0.0)
  np.testing.assert_allclose(plain["top"], theta["top"], rtol=1e-5)  # d/dm m^2/2
  np.testing.assert_allclose(plain["bottom"], free["bottom"], rtol=1e-6)


def test_active_units_per_layer_count_dimensions_whose_mean_varies():
  rng = np.random.default_rng(11)
  spread = np.array([1.0, 0.0, 0.3, 0.05, 0.2, 0.01, 0.0])  # std over x of each mean
  means = 0.7 + rng.normal(size=(5000, 7)) * spread  # An offset: variance, not the raw moment.
  counts = hierarchical.active_units_per_layer(
    means.mean(0), (means**2).mean(0), latent_dims=(4, 3)
  )
  assert counts == [2, 1]  # std 1 and 0.3 (var 1, 0.09) | 0.2 (var 0.04); 0.05 -> var 0.0025


def test_unknown_kl_estimator_is_refused():
  with pytest.raises(ValueError, match="kl_estimator"):
    hierarchical.elbo(_f32(X), _keys(0), kl_estimator="mc", **RANDOM)


def test_docstring_examples():
  failures, _ = doctest.testmod(hierarchical)
  assert failures == 0

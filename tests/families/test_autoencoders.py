"""Behaviour tests for the autoencoder families (AE, DAE, VAE, β-VAE, cVAE, IWAE).

Every expected value is computed independently of the family's objective code:
likelihoods, KLs and cross-entropies by hand in float64 numpy from the raw
encoder / decoder outputs, grid shapes from ``make_grid``'s documented layout.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import config as config_lib
from genjax.core import random as genjax_random
from genjax.run import experiment

B = 16  # examples per test batch
PAD = 2  # make_grid's default padding
RTOL, ATOL = 1e-5, 1e-4


def _set(c, field, value):
  *parents, last = field.split(".")
  for p in parents:
    c = c[p]
  c[last] = value


def _config(family, overrides):
  c = config_lib.defaults()
  c.family = family
  c.model.hidden_sizes = (16,)
  c.model.latent_dim = 3
  c.train.batch_size = 8
  c.eval.batch_size = 8
  for field, value in overrides:
    _set(c, field, value)
  return c


@functools.lru_cache(maxsize=None)
def _build(family, overrides=()):
  """``(experiment, params)`` for a tiny model on ``digits`` (cached per config)."""
  exp = experiment.build(_config(family, overrides), devices=jax.devices()[:1])
  return exp, exp.init_state().params


def _batch(seed=0, binary=True, n=B):
  rng = np.random.default_rng(seed)
  if binary:
    x = (rng.uniform(size=(n, 8, 8, 1)) < 0.4).astype(np.float32)
  else:
    x = rng.uniform(0.05, 0.95, size=(n, 8, 8, 1)).astype(np.float32)
  labels = rng.integers(0, 10, size=n).astype(np.int32)
  return {"x": jnp.asarray(x), "label": jnp.asarray(labels)}


def _keys(seed=0, n=B):
  return genjax_random.example_keys(jax.random.key(seed), jnp.arange(n))


def _np(a):
  return np.asarray(a, dtype=np.float64)


def _log_sigmoid(t):
  return -np.logaddexp(0.0, -t)


def _bernoulli_ll(x, logits):
  """Σ x log σ(l) + (1 - x) log(1 - σ(l)) per example, float64."""
  x, logits = _np(x), _np(logits)
  ll = x * _log_sigmoid(logits) + (1.0 - x) * _log_sigmoid(-logits)
  return ll.reshape(len(x), -1).sum(1)


def _kl_std_normal(mean, log_var):
  mean, log_var = _np(mean), _np(log_var)
  return 0.5 * (np.exp(log_var) + mean**2 - 1.0 - log_var).sum(1)


def _grid_size(n_rows, n_cols, h=8, w=8):
  """Size of a make_grid image: ``rows * (H + padding) + padding`` etc."""
  return (n_rows * (h + PAD) + PAD, n_cols * (w + PAD) + PAD, 1)


def _hand_elbo_terms(family, params, batch, keys, labels=None):
  """(log p(x|z), KL) per example from raw encoder/decoder outputs and the key rule."""
  mean, log_var = family.encode(params, batch["x"], labels)
  eps = np.stack(
    [
      np.asarray(jax.random.normal(jax.random.fold_in(keys[i], 0), (mean.shape[1],)))
      for i in range(len(keys))
    ]
  )
  z = _np(mean) + np.exp(0.5 * _np(log_var)) * eps
  out = family.decode(params, jnp.asarray(z, jnp.float32), labels)
  assert out.shape == batch["x"].shape + (1,)
  return _bernoulli_ll(batch["x"], out[..., 0]), _kl_std_normal(mean, log_var)


def _all_finite(tree):
  return all(bool(np.all(np.isfinite(np.asarray(leaf)))) for leaf in jax.tree.leaves(tree))


# ---------------------------------------------------------------------------
# VAE.
# ---------------------------------------------------------------------------


def test_vae_loss_matches_hand_computed_elbo():
  exp, params = _build("vae")
  family, batch, keys = exp.family, _batch(1), _keys(1)
  recon_ll, kl = _hand_elbo_terms(family, params, batch, keys)
  loss, metrics = family.loss_fn(params, batch, keys, jnp.int32(0))
  assert np.isfinite(float(loss))
  np.testing.assert_allclose(float(loss), np.mean(kl - recon_ll), rtol=RTOL, atol=ATOL)
  np.testing.assert_allclose(float(metrics["elbo"]), np.mean(recon_ll - kl), rtol=RTOL, atol=ATOL)
  np.testing.assert_allclose(float(metrics["recon"]), -np.mean(recon_ll), rtol=RTOL, atol=ATOL)
  np.testing.assert_allclose(float(metrics["kl"]), np.mean(kl), rtol=RTOL, atol=ATOL)
  assert float(metrics["kl"]) > 0.0
  # The noise really is per example: other keys give another loss.
  other, _ = family.loss_fn(params, batch, _keys(2), jnp.int32(0))
  assert float(other) != float(loss)


def test_beta_and_kl_warmup_weight_the_kl():
  exp, params = _build("vae", (("objective.beta", 4.0), ("objective.kl_warmup_steps", 100)))
  family, batch, keys = exp.family, _batch(3), _keys(3)
  loss_fn = jax.jit(family.loss_fn)
  loss0, m0 = loss_fn(params, batch, keys, jnp.int32(0))
  loss50, m50 = loss_fn(params, batch, keys, jnp.int32(50))
  loss200, m200 = loss_fn(params, batch, keys, jnp.int32(200))
  assert _all_finite((loss0, loss50, loss200, m0, m50, m200))
  assert float(m50["kl"]) > 0.1  # otherwise the test could not tell the weights apart
  np.testing.assert_allclose(float(loss0), float(m0["recon"]), rtol=RTOL, atol=ATOL)
  want50 = float(m50["recon"]) + 2.0 * float(m50["kl"])
  np.testing.assert_allclose(float(loss50), want50, rtol=RTOL, atol=ATOL)
  want200 = float(m200["recon"]) + 4.0 * float(m200["kl"])  # warm-up over: full beta
  np.testing.assert_allclose(float(loss200), want200, rtol=RTOL, atol=ATOL)
  # The metrics themselves do not depend on the weight.
  np.testing.assert_allclose(float(m0["elbo"]), float(m50["elbo"]), rtol=RTOL)


def test_vae_eval_fn_metrics_are_consistent():
  exp, params = _build("vae")
  family, batch, keys = exp.family, _batch(4), _keys(4)
  out = jax.jit(family.eval_fn, static_argnums=3)(params, batch, keys, 50)
  out = {k: _np(v) for k, v in out.items()}
  assert set(out) >= {"elbo", "recon", "kl", "nll", "bits_per_dim"}
  np.testing.assert_allclose(
    out.pop("posterior_mean_sq"), out.pop("posterior_mean") ** 2, rtol=1e-6
  )
  for k, v in out.items():
    assert v.shape == (B,), k
    assert np.all(np.isfinite(v)), k
  np.testing.assert_allclose(out["elbo"], -(out["recon"] + out["kl"]), rtol=RTOL, atol=ATOL)
  # The eval ELBO is the same single-sample bound as training (same key rule).
  recon_ll, kl = _hand_elbo_terms(family, params, batch, keys)
  np.testing.assert_allclose(out["elbo"], recon_ll - kl, rtol=RTOL, atol=ATOL)
  # 50 importance samples give a tighter bound on log p(x) than the ELBO.
  assert out["nll"].mean() <= -out["elbo"].mean()
  assert np.all(out["nll"] > 0.0)  # -log p(x) of binary data is positive
  np.testing.assert_allclose(out["bits_per_dim"], out["nll"] / (64 * math.log(2.0)), rtol=RTOL)


@pytest.mark.parametrize("latent_dim", [2, 3])
def test_vae_manifold_picture_only_for_2d_latents(latent_dim):
  exp, params = _build("vae", (("model.latent_dim", latent_dim),))
  pics = exp.family.pictures(params, _batch(5), jax.random.key(0))
  assert {"reconstructions", "interpolations", "samples", "traversals"} <= set(pics)
  assert pics["samples"].shape == _grid_size(8, 8)  # 64 samples, 8 per row
  assert pics["traversals"].shape == _grid_size(latent_dim, 11)
  for name, grid in pics.items():
    assert np.all((grid >= 0.0) & (grid <= 1.0)), name
  if latent_dim == 2:
    assert pics["manifold"].shape == _grid_size(20, 20)
  else:
    assert "manifold" not in pics


# ---------------------------------------------------------------------------
# IWAE.
# ---------------------------------------------------------------------------


def test_iwae_loss_is_tighter_than_negative_elbo_and_differentiable():
  iwae_exp, params = _build("iwae", (("objective.num_samples", 5),))
  vae_exp, vae_params = _build("vae")
  # Same module and seed, so the VAE family can evaluate the IWAE parameters.
  assert jax.tree.structure(params) == jax.tree.structure(vae_params)
  batch = _batch(6, n=32)
  iwae_loss = jax.jit(iwae_exp.family.loss_fn)
  vae_loss = jax.jit(vae_exp.family.loss_fn)
  step = jnp.int32(0)
  iwae_values, vae_values = [], []
  for seed in range(6):
    keys = _keys(100 + seed, n=32)
    loss, metrics = iwae_loss(params, batch, keys, step)
    assert np.isfinite(float(loss))
    np.testing.assert_allclose(float(metrics["iwae_bound"]), -float(loss), rtol=RTOL)
    iwae_values.append(float(loss))
    vae_values.append(float(vae_loss(params, batch, keys, step)[0]))
  assert np.mean(iwae_values) <= np.mean(vae_values)
  grads = jax.grad(lambda p: iwae_exp.family.loss_fn(p, batch, _keys(0, n=32), step)[0])(params)
  assert _all_finite(grads)
  assert sum(float(jnp.sum(jnp.abs(g))) for g in jax.tree.leaves(grads)) > 0.0


# ---------------------------------------------------------------------------
# cVAE.
# ---------------------------------------------------------------------------


def test_cvae_labels_condition_decoder_and_loss():
  exp, params = _build("cvae")
  family, batch, keys = exp.family, _batch(7), _keys(7)
  assert family.conditional and family.num_classes == 10
  z = jax.random.normal(jax.random.key(1), (B, 3))
  labels = batch["label"]
  shifted = (labels + 1) % 10
  out_a = family.decode(params, z, labels)
  out_b = family.decode(params, z, shifted)
  assert _all_finite((out_a, out_b))
  # Each example's decoding changes with its own label.
  diff = np.abs(_np(out_a) - _np(out_b)).reshape(B, -1).max(1)
  assert np.all(diff > 1e-6)
  loss_a, _ = family.loss_fn(params, batch, keys, jnp.int32(0))
  loss_b, _ = family.loss_fn(params, dict(batch, label=shifted), keys, jnp.int32(0))
  assert np.isfinite(float(loss_a)) and np.isfinite(float(loss_b))
  assert abs(float(loss_a) - float(loss_b)) > 1e-5
  # And the loss is still the hand-computed negative ELBO with the labels fed in.
  recon_ll, kl = _hand_elbo_terms(family, params, batch, keys, labels)
  np.testing.assert_allclose(float(loss_a), np.mean(kl - recon_ll), rtol=RTOL, atol=ATOL)


def test_cvae_pictures_show_one_row_per_class():
  exp, params = _build("cvae")
  pics = exp.family.pictures(params, _batch(8), jax.random.key(0))
  assert "samples_by_class" in pics and "samples" not in pics
  grid = pics["samples_by_class"]
  # 10 classes x 10 samples, one class per row.
  assert grid.shape == _grid_size(10, 10)
  assert grid.shape[0] == 10 * (8 + PAD) + PAD
  assert np.all(np.isfinite(grid)) and np.all((grid >= 0.0) & (grid <= 1.0))


# ---------------------------------------------------------------------------
# AE and DAE.
# ---------------------------------------------------------------------------


def _hand_bce(family, params, x):
  """Σ BCE(sigmoid(logits), x) per example, via p = sigmoid(logits) in float64."""
  code = family.encode(params, x)
  assert not isinstance(code, tuple)
  logits = _np(family.decode(params, code)[..., 0])
  p = 1.0 / (1.0 + np.exp(-logits))
  xn = _np(x)
  return -(xn * np.log(p) + (1.0 - xn) * np.log(1.0 - p)).reshape(len(xn), -1).sum(1)


def test_ae_loss_is_bce_of_reconstruction():
  exp, params = _build("ae")
  family = exp.family
  batch, keys = _batch(9, binary=False), _keys(9)
  want = _hand_bce(family, params, batch["x"])
  loss, metrics = family.loss_fn(params, batch, keys, jnp.int32(0))
  assert np.isfinite(float(loss))
  np.testing.assert_allclose(float(loss), want.mean(), rtol=RTOL, atol=ATOL)
  np.testing.assert_allclose(float(metrics["recon"]), want.mean(), rtol=RTOL, atol=ATOL)
  # Deterministic: the keys do not matter without a corruption.
  np.testing.assert_allclose(
    float(family.loss_fn(params, batch, _keys(10), jnp.int32(0))[0]), float(loss), rtol=1e-6
  )
  ev = family.eval_fn(params, batch, keys, 1)
  assert "recon_clean_input" not in ev
  np.testing.assert_allclose(_np(ev["recon"]), want, rtol=RTOL, atol=ATOL)


DAE = (("objective.corruption", "mask"), ("objective.corruption_level", 0.5))


def test_dae_corrupts_input_but_reports_clean_reconstruction():
  exp, params = _build("dae", DAE)
  ae_exp, ae_params = _build("ae")
  assert jax.tree.structure(params) == jax.tree.structure(ae_params)
  family = exp.family
  batch, keys = _batch(11, binary=False), _keys(11)
  clean = _hand_bce(family, params, batch["x"])
  dae_loss, _ = family.loss_fn(params, batch, keys, jnp.int32(0))
  ae_loss, _ = ae_exp.family.loss_fn(params, batch, keys, jnp.int32(0))
  assert np.isfinite(float(dae_loss))
  np.testing.assert_allclose(float(ae_loss), clean.mean(), rtol=RTOL, atol=ATOL)
  assert abs(float(dae_loss) - float(ae_loss)) > 1e-3
  ev = family.eval_fn(params, batch, keys, 1)
  assert _all_finite(ev)
  np.testing.assert_allclose(_np(ev["recon_clean_input"]), clean, rtol=RTOL, atol=ATOL)
  np.testing.assert_allclose(_np(ev["recon"]).mean(), float(dae_loss), rtol=RTOL, atol=ATOL)


def test_dae_denoising_picture_has_three_rows():
  exp, params = _build("dae", DAE)
  pics = exp.family.pictures(params, _batch(12, n=32), jax.random.key(0))
  assert {"reconstructions", "interpolations", "denoising"} <= set(pics)
  # corrupted / denoised / clean rows of 16 images each.
  assert pics["denoising"].shape == _grid_size(3, 16)
  assert np.all((pics["denoising"] >= 0.0) & (pics["denoising"] <= 1.0))
  ae_exp, ae_params = _build("ae")
  assert "denoising" not in ae_exp.family.pictures(ae_params, _batch(12), jax.random.key(0))


# ---------------------------------------------------------------------------
# Data validation.
# ---------------------------------------------------------------------------


def test_vae_on_points_dataset_raises_naming_the_dataset():
  c = _config("vae", (("data.name", "ring8"), ("data.preprocess", "none")))
  with pytest.raises(config_lib.ConfigError, match=r"config\.data\.name='ring8'.*needs an image"):
    experiment.build(c, devices=jax.devices()[:1])


def test_conditional_dae_pictures_use_the_labels():
  overrides = (
    ("objective.corruption", "mask"),
    ("objective.corruption_level", 0.5),
    ("model.conditional", True),
  )
  exp, params = _build("dae", overrides)
  grids = exp.family.pictures(params, _batch(binary=False), jax.random.key(0))
  assert {"reconstructions", "interpolations", "denoising"} <= set(grids)


def test_pictures_of_a_single_example_skip_interpolations():
  exp, params = _build("vae")
  grids = exp.family.pictures(params, _batch(n=1), jax.random.key(0))
  assert "interpolations" not in grids and "reconstructions" in grids
  assert all(np.isfinite(g).all() for g in grids.values())


def test_active_units_count_the_dimensions_whose_posterior_mean_varies():
  """Burda et al.'s count on an encoder built to use one of its three latent dimensions."""
  from genjax.run import evaluation

  exp, params = _build("vae")
  mean_head = params["encoder"]["heads"]["mean"]
  mean_head = {
    "kernel": mean_head["kernel"].at[:, 1:].set(0.0),
    "bias": mean_head["bias"].at[1:].set(0.25),  # Constant codes: inactive wherever they sit.
  }
  params = {
    **params,
    "encoder": {**params["encoder"], "heads": {**params["encoder"]["heads"], "mean": mean_head}},
  }
  metrics = evaluation.evaluate(exp, params, num_examples=0, num_samples=2)
  x = jnp.asarray(exp.dataset.test["image"], jnp.float32) / 255.0
  codes = np.asarray(exp.family.code(params, (x > 0.5).astype(jnp.float32)))
  assert np.var(codes[:, 0]) > 0.01 and np.allclose(codes[:, 1:], 0.25)
  assert metrics["eval/active_units"] == 1.0
  assert "eval/posterior_mean" not in metrics

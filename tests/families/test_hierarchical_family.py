"""The hierarchical VAE families (hvae, hiwae): bounds, evaluation, pictures, training, genjax.load.

Expected values come from the module's raw outputs recomputed by hand in
float64 (Bernoulli log-likelihood, Gaussian KLs), from identities of the
bounds (per-layer KLs sum to the KL; IWAE is tighter than the ELBO) and from
models built to have known active units.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import shrink
from family_runs import perturbed

import genjax
from genjax import config as config_lib
from genjax.core import random as genjax_random
from genjax.data import sources
from genjax.models.hierarchical import HierarchicalVAE
from genjax.objectives import hierarchical
from genjax.run import evaluation, experiment, loop

B = 16
ARCHS = ("mlp", "ladder", "conv_ladder")


def _config(family="hvae", architecture="ladder", **hvae):
  c = config_lib.defaults()
  c.family = family
  c.model.architecture = architecture
  c.model.conv_channels = (8,)
  c.hvae.update(**{"latent_dims": (6, 3), "hidden_sizes": (16, 8), "block_depth": 1, **hvae})
  c.train.batch_size = c.eval.batch_size = B
  if family == "hiwae":
    c.objective.num_samples = 5
  return c


@functools.lru_cache(maxsize=None)
def _build(family="hvae", architecture="ladder"):
  exp = experiment.build(_config(family, architecture), devices=jax.devices()[:1])
  return exp, perturbed(exp.init_state().params, 0.2)


def _batch(seed=0, n=B):
  rng = np.random.default_rng(seed)
  x = (rng.uniform(size=(n, 8, 8, 1)) < 0.4).astype(np.float32)
  return {"x": jnp.asarray(x), "label": jnp.zeros((n,), jnp.int32)}


def _keys(seed=0, n=B):
  return genjax_random.example_keys(jax.random.key(seed), jnp.arange(n))


def _np(a):
  return np.asarray(a, np.float64)


def _hand_terms(family, params, x, keys):
  """(log p(x|z), [KL_1, KL_2]) of draw 0 from the module's raw outputs, in float64."""
  noise = hierarchical.layer_noise(genjax_random.fold_in(keys, 0), family.latent_dims)
  apply = lambda method, *a: family.module.apply(  # noqa: E731
    {"params": params}, *a, method=getattr(HierarchicalVAE, method)
  )
  layers, out = apply("sample", apply("infer", x), noise)
  logits, xs = _np(out[..., 0]).reshape(len(x), -1), _np(x).reshape(len(x), -1)
  recon = (xs * logits - np.logaddexp(0.0, logits)).sum(1)
  kls = []
  for layer in layers:
    mq, lvq, mp, lvp = (_np(v) for v in layer[1:])
    kls.append((0.5 * (lvp - lvq + (np.exp(lvq) + (mq - mp) ** 2) / np.exp(lvp) - 1.0)).sum(1))
  return recon, kls


def test_ladder_loss_and_eval_are_the_hand_computed_elbo_with_layer_kls():
  exp, params = _build()
  family, batch, keys = exp.family, _batch(1), _keys(1)
  recon, (kl_1, kl_2) = _hand_terms(family, params, batch["x"], keys)
  assert np.all(kl_1 > 0) and np.all(kl_2 > 0)
  loss, metrics = family.loss_fn(params, batch, keys, jnp.int32(0))
  np.testing.assert_allclose(float(loss), np.mean(kl_1 + kl_2 - recon), rtol=1e-5)
  np.testing.assert_allclose(float(metrics["kl_1"]), kl_1.mean(), rtol=1e-5)
  np.testing.assert_allclose(float(metrics["kl_2"]), kl_2.mean(), rtol=1e-5)
  out = {k: _np(v) for k, v in family.eval_fn(params, batch, keys, 20).items()}
  np.testing.assert_allclose(out["elbo"], recon - kl_1 - kl_2, rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(out["kl_1"], kl_1, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("architecture", ARCHS)
def test_eval_metrics_fit_together(architecture):
  exp, params = _build("hvae", architecture)
  family = exp.family
  out = jax.jit(family.eval_fn, static_argnums=3)(params, _batch(2), _keys(2), 50)
  out = {k: _np(v) for k, v in out.items()}
  assert {"elbo", "recon", "kl", "kl_1", "kl_2", "nll", "bits_per_dim"} <= set(out)
  assert out["posterior_mean"].shape == (B, 9)
  assert all(np.all(np.isfinite(v)) for v in out.values())
  np.testing.assert_allclose(out["kl_1"] + out["kl_2"], out["kl"], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(out["elbo"], -(out["recon"] + out["kl"]), rtol=1e-5, atol=1e-4)
  assert out["nll"].mean() < -out["elbo"].mean()  # 50 joint samples: tighter than one
  np.testing.assert_allclose(out["bits_per_dim"], out["nll"] / (64 * np.log(2.0)), rtol=1e-5)
  means = {k: v.mean(0) for k, v in out.items()}
  summary = family.summarize_eval(means)
  assert summary["active_units"] == summary["active_units_1"] + summary["active_units_2"]
  assert "posterior_mean" not in summary


@pytest.mark.parametrize("architecture", ARCHS)
def test_three_layers_train_and_report_three_kls(architecture, train_steps):
  c = _config("hvae", architecture, latent_dims=(6, 4, 2), hidden_sizes=(16, 8, 8))
  exp = experiment.build(c, devices=jax.devices()[:1])
  state, history = train_steps(exp, 2)
  assert all(np.isfinite(float(m["loss"])) for m in history)
  out = exp.family.eval_fn(state.params, _batch(6), _keys(6), 4)
  kls = [_np(out[f"kl_{i}"]) for i in (1, 2, 3)]
  np.testing.assert_allclose(sum(kls), _np(out["kl"]), rtol=1e-5, atol=1e-5)
  assert out["posterior_mean"].shape == (B, 12) and np.all(np.isfinite(_np(out["nll"])))
  x = exp.family.sample(state.params, _keys(7, 3), None)
  assert x.shape == (3, 8, 8, 1)


def test_hiwae_trains_on_the_joint_bound_which_is_tighter_than_the_elbo():
  iwae_exp, params = _build("hiwae")
  vae_exp, _ = _build("hvae")
  assert iwae_exp.family.num_train_samples == 5  # the preset bound with the config's k
  batch, step = _batch(3, n=32), jnp.int32(10**6)
  iwae_loss, vae_loss = jax.jit(iwae_exp.family.loss_fn), jax.jit(vae_exp.family.loss_fn)
  iwae, vae = [], []
  for seed in range(4):
    loss, metrics = iwae_loss(params, batch, _keys(seed, 32), step)
    np.testing.assert_allclose(float(metrics["iwae_bound"]), -float(loss), rtol=1e-6)
    iwae.append(float(loss))
    vae.append(float(vae_loss(params, batch, _keys(seed, 32), step)[0]))
  assert np.mean(iwae) < np.mean(vae)
  grads = jax.grad(lambda p: iwae_exp.family.loss_fn(p, batch, _keys(0, 32), step)[0])(params)
  leaves = jax.tree.leaves(grads)
  assert all(np.all(np.isfinite(g)) for g in leaves) and all(np.any(g != 0) for g in leaves)


@pytest.mark.parametrize("architecture", ARCHS)
def test_pictures_and_ancestral_samples(architecture):
  exp, params = _build("hvae", architecture)
  family = exp.family
  pics = family.pictures(params, _batch(4), jax.random.key(0))
  assert {"reconstructions", "interpolations", "samples", "traversals"} <= set(pics)
  assert pics["traversals"].shape == (3 * 10 + 2, 11 * 10 + 2, 1)  # 3 top-layer units x 11
  assert all(np.all((g >= 0) & (g <= 1)) for g in pics.values())
  keys = _keys(5, 6)
  x = family.sample(params, keys, jnp.zeros(6, jnp.int32))
  assert x.shape == (6, 8, 8, 1) and np.all((x >= 0) & (x <= 1))
  np.testing.assert_allclose(family.sample(params, keys[:2], None), x[:2], atol=1e-6)
  assert np.abs(_np(x[0]) - _np(x[1])).max() > 1e-3


def test_active_units_per_layer_of_an_encoder_built_to_use_two_and_one():
  """Bottom-up net: q(z_1|x) uses dimensions 0 and 1 of 6, q(z_2|z_1) dimension 0 of 3."""
  exp, params = _build("hvae", "mlp")
  params = jax.tree.map(jnp.asarray, params)
  head_1, head_2 = params["q_heads_0"]["mean"], params["q_heads_1"]["mean"]
  params = dict(
    params,
    q_heads_0=dict(
      params["q_heads_0"],
      mean={"kernel": 5 * head_1["kernel"].at[:, 2:].set(0.0), "bias": head_1["bias"]},
    ),
    q_heads_1=dict(
      params["q_heads_1"],
      mean={"kernel": 20 * head_2["kernel"].at[:, 1:].set(0.0), "bias": head_2["bias"]},
    ),
  )
  metrics = evaluation.evaluate(exp, params, num_examples=0, num_samples=2)
  x = jnp.asarray(exp.dataset.test["image"], jnp.float32) / 255.0
  codes = np.asarray(exp.family.code(params, (x > 0.5).astype(jnp.float32)))
  assert np.var(codes[:, [0, 1, 6]], axis=0).min() > 0.05  # Clearly active...
  assert np.var(codes[:, [2, 3, 4, 5, 7, 8]], axis=0).max() < 1e-10  # ...and clearly not.
  assert (metrics["eval/active_units_1"], metrics["eval/active_units_2"]) == (2.0, 1.0)
  assert metrics["eval/active_units"] == 3.0


def test_training_lowers_the_loss(train_steps):
  c = _config("hvae", "ladder")
  c.optimizer.learning_rate = 3e-3
  exp = experiment.build(c, devices=jax.devices()[:1])
  _, history = train_steps(exp, 60)
  losses = np.array([float(m["loss"]) for m in history])
  assert np.all(np.isfinite(losses))
  assert losses[-10:].mean() < losses[:10].mean() - 3.0
  assert {"kl_1", "kl_2", "elbo", "recon"} <= set(history[-1])


def test_one_and_eight_devices_take_the_same_steps(train_steps):
  states = []
  for n in (1, 8):
    exp = experiment.build(_config("hvae", "ladder"), devices=jax.devices()[:n])
    states.append(train_steps(exp, 3)[0].params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), *states)


def test_genjax_load_samples_scores_and_codes(tmp_path):
  c = shrink(_config("hvae", "ladder"), num_steps=4)
  c.evals = ""
  loop.train_and_evaluate(c, tmp_path)
  model = genjax.load(tmp_path)
  x = model.sample(5, seed=1)
  assert x.shape == (5, 8, 8, 1) and 0 <= x.min() and x.max() <= 1
  np.testing.assert_allclose(model.sample(5, seed=1, batch_size=8), x, atol=1e-6)
  images = sources.load_dataset("digits").test["image"][:8]
  nll = model.nll(images, num_samples=4)
  scores = model.scores(images, num_samples=4)
  assert nll.shape == (8,) and np.all(nll > 0)
  np.testing.assert_array_equal(scores["nll"], nll)
  np.testing.assert_allclose(scores["kl_1"] + scores["kl_2"], scores["kl"], rtol=1e-5, atol=1e-5)
  z = model.encode(images)
  assert z.shape == (8, 9)
  np.testing.assert_allclose(model.reconstruct(images), model.decode(z), atol=1e-6)
  assert model.interpolate(images[:2], images[2:4], num=3).shape == (2, 3, 8, 8, 1)


@pytest.mark.parametrize(
  "field,value,message",
  [
    ("hvae.latent_dims", (8,), r"config\.hvae\.latent_dims=\(8,\): a hierarchy needs at least 2"),
    ("hvae.hidden_sizes", (16,), r"config\.hvae\.hidden_sizes=\(16,\): needs one width per"),
    ("model.conditional", True, r"config\.model\.conditional=True: family 'hvae' is uncond"),
    ("model.architecture", "conv", r"config\.model\.architecture='conv': .*conv_ladder"),
    ("hvae.block_depth", 0, r"config\.hvae\.block_depth=0: must be an integer >= 1"),
  ],
)
def test_config_errors_name_the_field(field, value, message):
  c = _config()
  section, name = field.split(".")
  c[section][name] = value
  with pytest.raises(config_lib.ConfigError, match=message):
    config_lib.validate(c)

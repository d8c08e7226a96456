"""The diffusion family: its bound, estimator, sampling contract, config errors and resume."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from family_runs import assert_resume_is_bit_identical, perturbed

from genjax import config as config_lib
from genjax.core import random as genjax_random
from genjax.objectives import diffusion as diffusion_lib
from genjax.objectives import sde as sdes
from genjax.run import experiment


def _config(**diffusion):
  c = config_lib.defaults()
  c.family = "ddpm"
  c.data.name, c.data.preprocess = "digits", "scale_pm1"
  c.unet.channels, c.unet.num_groups, c.unet.num_res_blocks = 8, 4, 1
  # One resolution, no attention: these tests are about the family, not the U-Net.
  c.unet.channel_mults, c.unet.attention_resolutions = (1,), ()
  c.diffusion.num_steps, c.diffusion.sample_steps = 10, 4
  c.train.batch_size = 16
  for k, v in diffusion.items():
    c.diffusion[k] = v
  return c


@pytest.fixture(scope="module", name="tiny")
def _tiny():
  """A 10-step diffusion model on 8×8 digits with random (non-zero) weights."""
  exp = experiment.build(_config(), jax.devices()[:1])
  params = perturbed(exp.init_state().params)
  x0 = jnp.asarray(exp.dataset.test["image"][:4], jnp.float32) / 127.5 - 1.0
  return exp, params, x0


DRAWS = 400  # Noise draws per image when comparing expectations.


def _repeated(x0):
  repeated = jnp.repeat(x0, DRAWS, axis=0)  # Each image DRAWS times, fresh noise each.
  return repeated, jax.random.split(jax.random.key(0), repeated.shape[0])


def _per_image(values, x0):
  return np.asarray(values).reshape(x0.shape[0], DRAWS).mean(axis=1)


def test_bound_with_all_timesteps_is_the_sum_of_every_term(tiny):
  exp, params, x0 = tiny
  family = exp.family
  repeated, keys = _repeated(x0)
  terms = jax.jit(lambda: family._bound(params, repeated, None, keys, family.num_steps))()
  nats = math.prod(family.data.shape) * math.log(2.0)
  prior = diffusion_lib.prior_kl(family.noise, repeated)
  np.testing.assert_allclose(terms["prior_bpd"], prior / nats, rtol=1e-6)
  np.testing.assert_allclose(terms["bits_per_dim"], terms["nll"] / nats, rtol=1e-6)
  # The same bound term by term in a Python loop over t, on other noise draws.
  term = jax.jit(lambda t, k: family._vlb_term(params, repeated, None, t, k))
  zero = jnp.zeros((repeated.shape[0],), jnp.int32)
  direct = prior + sum(
    term(zero + t, genjax_random.fold_in(keys, 1000 + t)) for t in range(family.num_steps)
  )
  np.testing.assert_allclose(_per_image(terms["nll"], x0), _per_image(direct, x0), rtol=0.02)
  assert np.all(np.asarray(terms["bits_per_dim"]) > 0)


def test_stratified_bound_is_unbiased(tiny):
  exp, params, x0 = tiny
  family = exp.family
  repeated, keys = _repeated(x0)

  @functools.partial(jax.jit, static_argnums=0)
  def mean_bound(num_samples):
    return family._bound(params, repeated, None, keys, num_samples)["nll"]

  # 2 strata over t = 1..9 against all 10 terms: the same expectation.
  np.testing.assert_allclose(
    _per_image(mean_bound(3), x0), _per_image(mean_bound(family.num_steps), x0), rtol=0.03
  )


def test_samples_depend_only_on_their_own_key(tiny):
  exp, params, _ = tiny
  family = exp.family
  keys = jax.random.split(jax.random.key(3), 6)
  labels = jnp.zeros((6,), jnp.int32)
  sample = jax.jit(family.sample)
  x = np.asarray(sample(params, keys, labels))
  perm = np.array([3, 0, 5, 1, 4, 2])
  np.testing.assert_allclose(np.asarray(sample(params, keys[perm], labels)), x[perm], atol=1e-5)
  assert x.shape == (6, 8, 8, 1) and x.min() >= -1.0 and x.max() <= 1.0
  assert np.std(x, axis=0).mean() > 1e-3  # Different keys, different samples.


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_both_samplers_run_from_the_family(tiny, sampler):
  exp, params, _ = tiny
  keys = jax.random.split(jax.random.key(4), 3)
  x, path = jax.jit(lambda p, k, y: exp.family.generate(p, k, y, sampler=sampler, trajectory=True))(
    params, keys, jnp.zeros((3,), jnp.int32)
  )
  assert np.all(np.isfinite(np.asarray(x))) and path.shape[1:] == (3, 8, 8, 1)


def test_evaluation_reports_name_the_sampler_and_its_settings():
  def described(conditional=False, **diffusion):
    c = _config(**diffusion)
    c.model.conditional = conditional
    return experiment.build(c, jax.devices()[:1]).family.sampler_description()

  assert described() == "DDIM, 4 trailing steps, eta 0, x0 clipped to [-1, 1]"
  assert described(sampler="ddpm", model_variance="posterior", clip_x0=False) == (
    "DDPM ancestral, 10 steps, sigma_t^2 = posterior beta tilde_t"
  )
  assert described(True, spacing="leading", eta=0.5, guidance_scale=3.0) == (
    "DDIM, 4 leading steps, eta 0.5, x0 clipped to [-1, 1], guidance scale 3"
  )


def _conditional(**diffusion):
  """A conditional family on one device and perturbed (non-trivial) parameters."""
  c = _config(**diffusion)
  c.model.conditional = True
  exp = experiment.build(c, jax.devices()[:1])
  return exp.family, perturbed(exp.init_state().params)


def test_guidance_scale_one_is_the_conditional_model():
  family, params = _conditional(guidance_scale=1.0)
  keys = jax.random.split(jax.random.key(5), 10)
  labels = jnp.arange(10, dtype=jnp.int32)
  run = lambda s: np.asarray(  # noqa: E731
    jax.jit(lambda p: family.generate(p, keys, labels, sampler="ddim", scale=s))(params)
  )
  plain, guided, unconditional = run(1.0), run(3.0), run(0.0)
  assert np.abs(guided - plain).max() > 1e-3
  assert np.abs(unconditional - plain).max() > 1e-3
  # Scale 1 through the guidance mixer (both passes) equals the conditional pass alone.
  model_fn = family._model_fn(params, labels, 1.0)
  from genjax.samplers import diffusion as samplers

  mixed = samplers.guided_model_fn(
    lambda x, t, y: family.denoise(params, x, t, y), labels, family.null_label, 1.0
  )
  x = jax.random.normal(jax.random.key(6), (10, 8, 8, 1))
  t = jnp.full((10,), 5, jnp.int32)
  np.testing.assert_allclose(mixed(x, t), model_fn(x, t), atol=1e-5)


def test_conditional_training_drops_labels_to_the_null_label():
  family, params = _conditional(p_uncond=1.0)
  batch = {"x": jax.random.normal(jax.random.key(0), (4, 8, 8, 1)), "label": jnp.arange(4)}
  keys = jax.random.split(jax.random.key(1), 4)
  loss = jax.jit(lambda batch: family.loss_fn(params, batch, keys, 0)[0])
  loss_dropped = loss(batch)
  # Every label dropped: the loss is that of the null label, whatever the labels were.
  other = dict(batch, label=jnp.arange(4) + 5)
  np.testing.assert_allclose(loss(other), loss_dropped, rtol=1e-6)
  family.config.diffusion.p_uncond = 0.0
  kept = jax.jit(lambda batch: family.loss_fn(params, batch, keys, 0)[0])(other)
  assert abs(float(kept) - float(loss_dropped)) > 1e-6


@pytest.mark.parametrize(
  "overrides, message",
  [
    (dict(schedule="quadratic"), "config.diffusion.schedule='quadratic': allowed: linear, cosine"),
    (dict(parameterization="score"), "config.diffusion.parameterization='score'"),
    (dict(sampler="euler"), "config.diffusion.sampler='euler': did you mean 'ode_euler'"),
    (dict(sample_steps=11), "config.diffusion.sample_steps=11: must be an integer in"),
    (dict(spacing="uniform"), "config.diffusion.spacing='uniform'"),
    (dict(p_uncond=1.5), "config.diffusion.p_uncond=1.5"),
    (dict(beta_start=0.05), "need 0 < beta_start < beta_end < 1"),
  ],
)
def test_invalid_diffusion_configs_name_the_field(overrides, message):
  with pytest.raises(config_lib.ConfigError, match=message.replace("(", r"\(")):
    config_lib.validate(_config(**overrides), num_devices=1)


def test_points_and_images_get_their_own_errors():
  c = _config(clip_x0=True, weighting="vlb")
  c.data.name = "ring8"
  with pytest.raises(config_lib.ConfigError) as err:
    config_lib.validate(c, num_devices=1)
  assert "config.diffusion.clip_x0=True" in str(err.value)
  assert "config.diffusion.weighting='vlb'" in str(err.value)
  c = _config()
  c.data.preprocess = "scale_01"
  with pytest.raises(config_lib.ConfigError, match="config.data.preprocess='scale_01'"):
    config_lib.validate(c, num_devices=1)
  c = _config()
  c.unet.channel_mults = (1, 2, 2, 2)
  c.data.name = "mnist"  # 28 -> 14 -> 7 cannot halve a third time
  with pytest.raises(config_lib.ConfigError, match="config.unet.channel_mults"):
    experiment.build(c, jax.devices()[:1])


def test_resumed_diffusion_run_matches_an_uninterrupted_one(tmp_path, shrink):
  def config(num_steps):
    c = shrink(_config(), num_steps=num_steps)
    c.unet.channel_mults, c.unet.attention_resolutions = (1,), ()
    c.train.ema_decay, c.train.checkpoint_every, c.train.eval_every = 0.9, 2, 0
    c.eval.num_images, c.evals = 0, ""
    return c

  assert_resume_is_bit_identical(config, tmp_path)


@pytest.mark.parametrize("sampler", ["ddim", "ddpm", "ode_heun"])
def test_trajectory_caption_names_the_time_of_each_column(sampler):
  # With ε̂ = 0 (all-zero weights) the deterministic samplers only rescale x: DDIM takes
  # x_t to sqrt(ᾱ_t' / ᾱ_t) x_t and the probability-flow ODE follows m(t), so each
  # column over the final sample is sqrt(ᾱ) (or m) at that column's t.
  c = _config(sampler=sampler, num_steps=40, sample_steps=20, clip_x0=False, eta=0.0)
  exp = experiment.build(c, jax.devices()[:1])
  family = exp.family
  times = [float(t) for t in family.trajectory_times()]
  assert len(times) == 10 and times[-1] == 0.0
  caption = family.captions()["trajectory"]
  assert "x_t at t = " + ", ".join(family.trajectory_times()) in caption
  if sampler == "ddpm":  # Ancestral noise hides the scale; the 10 states are after every 4 steps.
    assert times == [36, 32, 28, 24, 20, 16, 12, 8, 4, 0]
    return
  params = jax.tree.map(jnp.zeros_like, exp.init_state().params)
  keys = jax.random.split(jax.random.key(5), 4)
  x, path = family.generate(
    params, keys, jnp.zeros((4,), jnp.int32), sampler=sampler, trajectory=True
  )
  frames = np.asarray(path)[np.linspace(0, path.shape[0] - 1, 10).round().astype(int)]
  final = np.asarray(x).ravel()
  scale = frames.reshape(10, -1) @ final / (final @ final)
  if sampler == "ddim":
    alpha_bar = np.append(1.0, np.asarray(family.noise.alphas_cumprod))  # Index t: the papers' x_t.
    expected = np.sqrt(alpha_bar[np.asarray(times, int)])
  else:
    expected = np.array(sdes.mean_coef(family.sde, jnp.asarray(times, jnp.float32)))
    expected[-1] = 1.0  # The last column is the denoised sample itself.
  np.testing.assert_allclose(scale, expected, rtol=1e-4)

"""The diffusion family in continuous time: SDE/ODE samplers and the exact likelihood.

Truth from outside the glue: the discrete schedule's ᾱ (objectives.diffusion) for
the time mapping, a Gaussian data set's closed-form posterior for the samplers, and
objectives.sde_likelihood called directly for the likelihood.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import REPO, shrink
from family_runs import perturbed

import genjax
from genjax import config as config_lib
from genjax.core import random as genjax_random
from genjax.evaluation import metrics as metrics_lib
from genjax.families import diffusion_sde
from genjax.objectives import diffusion as diffusion_lib
from genjax.objectives import sde as sdes
from genjax.objectives import sde_likelihood
from genjax.run import experiment, loop

CONTINUOUS = tuple(diffusion_sde.SAMPLERS)


def _config(**diffusion):
  """A 20-step MLP denoiser on the 8-Gaussian ring."""
  c = config_lib.defaults()
  c.update(family="ddpm")
  c.data.update(name="ring8")
  c.model.update(hidden_sizes=(32, 32))
  c.train.update(batch_size=16)
  c.diffusion.update(dict(clip_x0=False, num_steps=20, sample_steps=5) | diffusion)
  return c


@pytest.fixture(scope="module", name="tiny")
def _tiny():
  """The tiny model with random (non-zero) weights."""
  exp = experiment.build(_config(), jax.devices()[:1])
  return exp, perturbed(exp.init_state().params)


@pytest.mark.parametrize("sampler", CONTINUOUS)
def test_continuous_samplers_run_per_example(tiny, sampler):
  exp, params = tiny
  keys = jax.random.split(jax.random.key(3), 6)
  labels = jnp.zeros((6,), jnp.int32)
  run = jax.jit(lambda p, k: exp.family.generate(p, k, labels, sampler=sampler, return_nfe=True))
  x, nfe = run(params, keys)
  x = np.asarray(x)
  assert x.shape == (6, 2) and np.all(np.isfinite(x))
  np.testing.assert_array_equal(np.asarray(run(params, keys)[0]), x)  # Deterministic per key.
  perm = np.array([3, 0, 5, 1, 4, 2])
  np.testing.assert_allclose(np.asarray(run(params, keys[perm])[0]), x[perm], atol=1e-5)
  assert np.std(x, axis=0).mean() > 1e-3
  expected = diffusion_sde.nfe(sampler, 5)
  if expected is not None:
    assert np.all(np.asarray(nfe) == expected)
  else:
    assert np.all(np.asarray(nfe) > 6)


def test_trajectories_end_at_the_sample(tiny):
  exp, params = tiny
  keys = jax.random.split(jax.random.key(4), 3)
  labels = jnp.zeros((3,), jnp.int32)
  for sampler, frames in (("ode_heun", 5), ("ode_adaptive", 10)):
    x, path = jax.jit(
      lambda p, s=sampler: exp.family.generate(p, keys, labels, sampler=s, trajectory=True)
    )(params)
    assert path.shape == (frames, 3, 2)
    np.testing.assert_array_equal(np.asarray(path[-1]), np.asarray(x))


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_vp_marginals_match_the_discrete_chain_at_the_mapped_times(schedule):
  c = _config(schedule=schedule, num_steps=1000)
  family = experiment.build(c, jax.devices()[:1]).family
  t_steps = np.arange(1000)
  alpha_bar = np.asarray(
    diffusion_lib.make_schedule(diffusion_lib.make_betas(schedule, 1000)).alphas_cumprod
  )
  # Step k <-> t = (k + 1) / T: the inverse of the network's t T - 1.
  t = jnp.asarray((t_steps + 1) / 1000, jnp.float32)
  np.testing.assert_allclose(np.asarray(sdes.mean_coef(family.sde, t)) ** 2, alpha_bar, atol=1e-3)
  np.testing.assert_allclose(np.asarray(sdes.std(family.sde, t)) ** 2, 1 - alpha_bar, atol=1e-3)
  assert diffusion_sde.t_min(1000) == pytest.approx(float(t[0]))
  # The network's fractional step at those times is about k while 1 - ᾱ is small;
  # late steps drift by a few, where ᾱ differs by 10⁻⁴ but log ᾱ by 0.1.
  steps = np.asarray(diffusion_sde.network_step(family.sde, alpha_bar, t))
  assert np.abs(steps - t_steps)[:500].max() < 1.0
  assert np.all(np.diff(steps) > 0) and steps.min() >= 0 and steps.max() <= 999


MU, S = np.array([1.5, -0.5], np.float32), 0.6  # Gaussian data N(MU, S² I).
T = 1000
ALPHA_BAR = np.cumprod(1.0 - diffusion_lib.linear_betas(T))


def _posterior_model(parameterization):
  """The exact E[ε | x_k] (or E[x_0 | x_k], E[v | x_k]) of the discrete chain on N(MU, S²)."""
  log_ac = np.log(
    np.asarray(
      diffusion_lib.make_schedule(diffusion_lib.linear_betas(T)).alphas_cumprod, np.float64
    )
  )

  def model_fn(x, step):  # Fractional steps: ᾱ interpolated geometrically.
    ac = jnp.exp(
      jnp.interp(step, jnp.arange(T, dtype=jnp.float32), jnp.asarray(log_ac, jnp.float32))
    )[:, None]
    m, s = jnp.sqrt(ac), jnp.sqrt(1 - ac)
    eps = s * (x - m * MU) / (ac * S**2 + 1 - ac)
    x0 = (x - s * eps) / m
    return {"eps": eps, "x0": x0, "v": m * eps - s * x0}[parameterization]

  return model_fn


@pytest.mark.parametrize("parameterization", ["eps", "x0", "v"])
def test_posterior_model_gives_the_gaussian_score(parameterization):
  sde = diffusion_sde.continuous_sde("linear", T, 1e-4, 0.02)
  score = diffusion_sde.score_fn(
    sde, _posterior_model(parameterization), parameterization, ALPHA_BAR
  )
  x = jax.random.normal(jax.random.key(0), (64, 2))
  t = jnp.linspace(0.01, 1.0, 64)
  m, s = sdes.mean_coef(sde, t)[:, None], sdes.std(sde, t)[:, None]
  truth = -(x - m * MU) / (m**2 * S**2 + s**2)  # Score of the VP marginal N(m MU, m² S² + s²).
  np.testing.assert_allclose(np.asarray(score(x, t)), np.asarray(truth), rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("sampler, steps", [("ode_heun", 50), ("ode_adaptive", 0), ("sde", 200)])
def test_samplers_reproduce_gaussian_moments(sampler, steps):
  c = _config(num_steps=T, sampler=sampler, sample_steps=steps or 50)
  sde = diffusion_sde.continuous_sde("linear", T, 1e-4, 0.02)
  score = diffusion_sde.score_fn(sde, _posterior_model("eps"), "eps", ALPHA_BAR)
  n = 4000
  keys = jax.random.split(jax.random.key(1), n)
  x_T = genjax_random.normal(jax.random.split(jax.random.key(2), n), (2,))
  x = np.asarray(jax.jit(lambda k: diffusion_sde.generate(score, sde, x_T, k, c, sampler))(keys))
  se = S / math.sqrt(n)
  np.testing.assert_allclose(x.mean(axis=0), MU, atol=4 * se)
  # Var of a sample variance: 2 S⁴ / n.
  np.testing.assert_allclose(x.var(axis=0), S**2, atol=4 * S**2 * math.sqrt(2 / n))


def test_ode_likelihood_on_points_is_the_exact_trace_likelihood(tiny):
  exp, params = tiny
  c = _config(ode_likelihood=True)
  family = experiment.build(c, jax.devices()[:1]).family
  x0 = jnp.asarray(exp.dataset.test["points"][:5], jnp.float32)
  batch = {"x": x0, "label": jnp.zeros((5,), jnp.int32)}
  keys = jax.random.split(jax.random.key(5), 5)
  out = jax.jit(lambda p: family.eval_fn(p, batch, keys, 1))(params)
  plain = jax.jit(lambda p: exp.family.eval_fn(p, batch, keys, 1))(params)
  np.testing.assert_array_equal(out["mse"], plain["mse"])  # The other metrics keep their noise.
  alpha_bar = np.cumprod(1.0 - diffusion_lib.make_betas("linear", 20, 1e-4, 0.02))
  score = diffusion_sde.score_fn(
    family.sde, lambda x, t: family.denoise(params, x, t), "eps", alpha_bar
  )
  log_p = sde_likelihood.log_likelihood(
    score, family.sde, x0, keys, trace="exact", t_min=1 / family.num_steps
  )
  np.testing.assert_allclose(out["ode_nll"], -log_p, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(out["ode_bits_per_dim"], -log_p / (2 * math.log(2)), rtol=1e-4)
  assert np.all(np.asarray(out["ode_nfe"]) > 6)


@pytest.mark.parametrize(
  "overrides, message",
  [
    (
      dict(sampler="langevin"),
      "config.diffusion.sampler='langevin': .*allowed: ddpm, ddim, sde, pc",
    ),
    (dict(sampler="pc", snr=0.0), "config.diffusion.snr=0.0: must be > 0"),
    (
      dict(snr=0.2),
      "config.diffusion.snr=0.2: has no effect unless config.diffusion.sampler is pc",
    ),
    (dict(ode_rtol=1e-3), "config.diffusion.ode_rtol=0.001: has no effect unless"),
    (dict(sampler="ode_adaptive", ode_atol=-1.0), "config.diffusion.ode_atol=-1.0"),
    (dict(ode_likelihood=True, hutchinson_probes=0), "config.diffusion.hutchinson_probes=0"),
    (dict(hutchinson_probes=2), "config.diffusion.hutchinson_probes=2: has no effect unless"),
    (
      dict(sampler="sde", sample_steps=0),
      "config.diffusion.sample_steps=0: must be an integer >= 1",
    ),
  ],
)
def test_invalid_continuous_configs_name_the_field(overrides, message):
  with pytest.raises(config_lib.ConfigError, match=message):
    config_lib.validate(_config(**overrides), num_devices=1)


def test_continuous_steps_may_exceed_the_training_steps():
  config_lib.validate(_config(sampler="ode_heun", sample_steps=500), num_devices=1)
  config_lib.validate(
    _config(sampler="ode_adaptive", ode_likelihood=True, ode_rtol=1e-3), num_devices=1
  )


def test_sampler_descriptions_count_evaluations():
  def described(**diffusion):
    return experiment.build(_config(**diffusion), jax.devices()[:1]).family.sampler_description()

  assert described(sampler="ode_heun").startswith("probability-flow ODE, Heun, 5 steps (11 score")
  assert "snr 0.2" in described(sampler="pc", snr=0.2)
  assert "(11 score evaluations)" in described(sampler="pc")
  assert "rtol 0.001" in described(sampler="ode_adaptive", ode_rtol=1e-3)


def test_a_trained_ddpm_run_samples_with_the_ode(tmp_path):
  c = shrink(config_lib.load_config(REPO / "experiments/configs/ddpm_ring8.py"))
  c.evals = ""
  loop.train_and_evaluate(c, tmp_path)
  model = genjax.load(tmp_path)
  x = model.sample(8, sampler="ode_heun", sample_steps=20)
  assert x.shape == (8, 2) and np.all(np.isfinite(x))
  np.testing.assert_array_equal(model.sample(8, sampler="ode_heun", sample_steps=20), x)
  assert (
    "Heun, 20 steps"
    in model._family({"sampler": "ode_heun", "sample_steps": 20}).sampler_description()
  )


def test_images_get_pictures_and_a_dequantized_likelihood():
  c = _config(
    sampler="ode_euler", sample_steps=3, ode_likelihood=True, ode_rtol=1e-3, ode_atol=1e-3
  )
  c.diffusion.update(clip_x0=True, num_steps=10)
  c.data.update(name="digits", preprocess="scale_pm1")
  c.unet.update(
    channels=8, num_groups=4, num_res_blocks=1, channel_mults=(1,), attention_resolutions=()
  )
  exp = experiment.build(c, jax.devices()[:1])
  family, params = exp.family, perturbed(exp.init_state().params)
  x0 = jnp.asarray(exp.dataset.test["image"][:2], jnp.float32) / 127.5 - 1.0
  pictures = family.pictures(
    params, {"x": x0, "label": jnp.zeros((2,), jnp.int32)}, jax.random.key(0)
  )
  assert {"samples", "trajectory", "forward", "samplers"} <= set(pictures)
  keys = jax.random.split(jax.random.key(5), 2)
  out = jax.jit(lambda p: family._ode_likelihood(p, x0, None, keys))(params)
  # By hand: the same dequantization noise and probes, then 7 bits for the 256 levels.
  deq_keys, probe_keys = genjax_random.split(keys, 2)
  x = sde_likelihood.dequantize(deq_keys, x0)
  assert np.all(np.abs(np.asarray(x - x0)) < 1 / 127)
  alpha_bar = np.cumprod(1.0 - diffusion_lib.make_betas("linear", 10, 1e-4, 0.02))
  score = diffusion_sde.score_fn(
    family.sde, lambda x, t: family.denoise(params, x, t), "eps", alpha_bar
  )
  log_p = sde_likelihood.log_likelihood(
    score, family.sde, x, probe_keys, t_min=0.1, rtol=1e-3, atol=1e-3
  )
  np.testing.assert_allclose(
    out["ode_bits_per_dim"], sde_likelihood.bits_per_dim_8bit(log_p, 64), rtol=1e-4
  )


def _moons(**diffusion):
  c = _config(training_time="continuous", num_steps=100, sample_steps=20, **diffusion)
  c.data.update(name="moons")
  c.model.update(hidden_sizes=(64, 64))
  c.optimizer.update(learning_rate=3e-3)
  c.train.update(batch_size=128)
  return c


def test_continuous_training_learns_moons_for_every_sampler(train_steps):
  # Score matching on t ~ U(1/T, 1); the trained network then serves the continuous
  # samplers and, at integer steps, DDPM and DDIM.
  exp = experiment.build(_moons(), jax.devices()[:2])
  state, history = train_steps(exp, 400)
  losses = np.array([float(m["loss"]) for m in history])
  assert np.all(np.isfinite(losses)) and losses[-50:].mean() < 0.8 * losses[:20].mean()
  test = exp.dataset.test["points"][:1000]
  keys = jax.random.split(jax.random.key(0), 1000)
  labels = jnp.zeros((1000,), jnp.int32)

  def energy(params, sampler):
    x = jax.jit(lambda p: exp.family.generate(p, keys, labels, sampler=sampler))(params)
    return metrics_lib.energy_distance(np.asarray(x), test)

  untrained = energy(exp.init_state().params, "ode_euler")
  for sampler in ("ode_euler", "ddim", "ddpm"):
    assert energy(state.params, sampler) < 0.2 * untrained, sampler


def test_continuous_step_is_the_same_on_one_and_two_devices(train_steps):
  runs = [train_steps(experiment.build(_moons(), jax.devices()[:n]), 2)[1] for n in (1, 2)]
  for a, b in zip(*runs):
    assert float(a["loss"]) == pytest.approx(float(b["loss"]), rel=1e-5)


def test_weighting_must_belong_to_the_training_time():
  with pytest.raises(config_lib.ConfigError, match="weighting='likelihood': not a weighting"):
    config_lib.validate(_config(weighting="likelihood"), 1)
  with pytest.raises(config_lib.ConfigError, match="weighting='min_snr': not a weighting"):
    config_lib.validate(_config(training_time="continuous", weighting="min_snr"), 1)
  config_lib.validate(_config(training_time="continuous", weighting="likelihood"), 1)


def test_an_override_of_the_sampler_resets_the_other_samplers_settings():
  # A run tuned for one sampler is evaluated with another: its tolerance becomes inert
  # and goes back to the default; an inert setting the user asks for is still refused.
  c = _config(sampler="ode_adaptive", ode_rtol=1e-3, ode_atol=1e-3)
  config_lib.apply_overrides(c, ["diffusion.sampler=ddpm"])
  config_lib.validate(c, num_devices=1)
  assert c.diffusion.ode_rtol == c.diffusion.ode_atol == 1e-5
  c = _config(sampler="ode_adaptive", ode_rtol=1e-3)
  config_lib.apply_overrides(c, ["diffusion.sampler=ddpm", "diffusion.ode_rtol=1e-2"])
  with pytest.raises(config_lib.ConfigError, match="ode_rtol=0.01: has no effect unless"):
    config_lib.validate(c, num_devices=1)

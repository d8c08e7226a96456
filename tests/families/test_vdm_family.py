"""The vdm family: training lowers the bound, times and noise do not depend on the layout,
evaluation adds up its terms, and a saved run samples and scores through genjax.load."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import REPO, shrink
from family_runs import perturbed

import genjax
from genjax import config as config_lib
from genjax.run import experiment, loop


def _config(**vdm):
  """A one-level U-Net on 8x8 digits."""
  c = config_lib.defaults()
  c.family = "vdm"
  c.data.update(name="digits", preprocess="scale_pm1")
  c.unet.update(channels=8, channel_mults=(1,), num_res_blocks=1, attention_resolutions=())
  c.unet.update(num_groups=4, dropout=0.0)
  c.vdm.update(dict(schedule_features=64, sample_steps=5) | vdm)
  c.optimizer.update(learning_rate=3e-3, warmup_steps=0)
  c.train.update(batch_size=16)
  return c


def test_training_lowers_the_bound_and_moves_the_schedule(train_steps):
  exp = experiment.build(_config(), jax.devices()[:2])
  state, history = train_steps(exp, 40)
  bpd = np.array([float(m["bits_per_dim"]) for m in history])
  assert np.all(np.isfinite(bpd))
  assert bpd[-8:].mean() < 0.75 * bpd[:4].mean()
  for m in history:  # The loss is the bound and the bound is its three terms.
    terms = m["prior_bpd"] + m["recon_bpd"] + m["diffusion_bpd"]
    assert float(m["loss"]) == pytest.approx(float(terms), rel=1e-5)
  shape = state.params["schedule"]["shape"]
  init = exp.init_state().params["schedule"]["shape"]
  assert float(jnp.abs(shape["l2_bias"] - init["l2_bias"]).max()) > 0
  assert float(history[-1]["gamma_0"]) != pytest.approx(-13.3, abs=1e-4)


@pytest.mark.parametrize("time_sampling", ["low_discrepancy", "uniform"])
def test_a_step_is_the_same_on_one_and_two_devices(train_steps, time_sampling):
  metrics = []
  for n in (1, 2):
    exp = experiment.build(_config(time_sampling=time_sampling), jax.devices()[:n])
    metrics.append(train_steps(exp, 2)[1])
  for a, b in zip(*metrics):
    assert float(a["loss"]) == pytest.approx(float(b["loss"]), rel=1e-5)


def test_eval_terms_add_up_and_samples_are_levels():
  exp = experiment.build(_config(schedule="fixed"), jax.devices()[:1])
  params = perturbed(exp.init_state().params)
  x = jnp.asarray(exp.dataset.test["image"][:6], jnp.float32) / 127.5 - 1.0
  keys = jax.random.split(jax.random.key(0), 6)
  out = jax.jit(lambda p: exp.family.eval_fn(p, {"x": x}, keys, 4))(params)
  total = out["prior_bpd"] + out["recon_bpd"] + out["diffusion_bpd"]
  np.testing.assert_allclose(np.asarray(out["bits_per_dim"]), np.asarray(total), rtol=1e-6)
  dims = math.prod(exp.family.data.shape)
  np.testing.assert_allclose(
    np.asarray(out["nll"]), np.asarray(total) * dims * math.log(2), rtol=1e-5
  )
  samples = np.asarray(jax.jit(exp.family.generate)(params, keys))
  assert samples.shape == (6, *exp.family.data.shape)
  levels = (samples + 1.0) * 127.5
  np.testing.assert_allclose(levels, np.round(levels), atol=1e-3)
  assert levels.min() >= 0 and levels.max() <= 255
  # Sample i depends on key i only (same batch size: rounding is identical too).
  other = keys.at[:2].set(jax.random.split(jax.random.key(1), 2))
  changed = np.asarray(jax.jit(exp.family.generate)(params, other))
  np.testing.assert_array_equal(changed[2:], samples[2:])
  assert np.abs(changed[:2] - samples[:2]).max() > 0


def test_a_saved_run_samples_and_scores_through_load(tmp_path):
  c = shrink(config_lib.load_config(REPO / "experiments/configs/vdm_mnist.py"))
  c.data.name, c.evals = "digits", ""
  c.unet.channel_mults, c.unet.attention_resolutions = (1,), ()
  loop.train_and_evaluate(c, tmp_path)
  model = genjax.load(tmp_path)
  x = model.sample(4, seed=1)
  assert x.shape == (4, 8, 8, 1) and 0 <= x.min() and x.max() <= 1
  np.testing.assert_array_equal(model.sample(4, seed=1), x)
  assert np.abs(model.sample(4, seed=1, sample_steps=3) - x).max() > 0
  nll = model.nll((x * 255).round().astype(np.uint8), num_samples=2)
  assert nll.shape == (4,) and np.all(np.isfinite(nll)) and np.all(nll > 0)

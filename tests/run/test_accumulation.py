"""Gradient accumulation: k micro-batches per step give the full batch's update.

The reference is the plain step on the whole batch (``grad_accum_steps=1``),
which runs no scan at all. Equality to float tolerance also shows that each
example keeps its noise (binarisation, latent draws, InfoGAN codes, penalty
interpolations): a different draw would move the parameters by far more.
"""

import pathlib

import chex
import jax
import numpy as np
import pytest

from genjax import config as config_lib
from genjax.run import experiment

CONFIGS = pathlib.Path(__file__).resolve().parents[2] / "experiments" / "configs"
NUM_STEPS = 3
BATCH = 32  # Divides into 4 micro-batches on each of 8 devices.


def _config(family: str, accum: int):
  c = config_lib.defaults()
  c.data.name, c.model.hidden_sizes, c.model.latent_dim = "digits", (32,), 4
  c.train.batch_size, c.train.ema_decay, c.train.grad_accum_steps = BATCH, 0.9, accum
  if family == "gan":  # Two D updates per step, each accumulated, then G's; per-example R1.
    c.family, c.data.name, c.model.architecture = "gan", "ring8", "mlp"
    c.gan.update(d_steps=2, loss="hinge", r1_weight=1.0, code_classes=8)
    c.gan.g_learning_rate = c.gan.d_learning_rate = 1e-3
  return c


@pytest.mark.parametrize("num_devices", [1, 8])
@pytest.mark.parametrize("family", ["vae", "gan"])
def test_micro_batches_give_the_full_batch_update(family, num_devices, train_steps):
  devices = jax.devices()[:num_devices]

  def _train(accum):
    state, history = train_steps(experiment.build(_config(family, accum), devices), NUM_STEPS)
    return state, [float(metrics["loss"]) for metrics in history]

  full, full_losses = _train(1)
  init = jax.device_get(experiment.build(_config(family, 1), devices).init_state())
  moved = jax.tree.map(lambda a, b: np.abs(a - b).max(), full.params, init.params)
  assert max(jax.tree.leaves(moved)) > 1e-3  # Agreement is not agreement at init.
  for accum in (2, 4):
    accumulated, losses = _train(accum)
    assert int(accumulated.step) == NUM_STEPS
    np.testing.assert_allclose(losses, full_losses, rtol=1e-5)
    for name in ("params", "ema_params", "opt_state"):
      chex.assert_trees_all_close(
        getattr(accumulated, name), getattr(full, name), rtol=1e-5, atol=2e-6
      )


def test_micro_batches_shrink_the_step_memory():
  def temp_bytes(accum):
    c = config_lib.load_config(CONFIGS / "vae_digits.py")
    c.train.batch_size, c.train.grad_accum_steps = 512, accum
    exp = experiment.build(c, jax.devices()[:1])
    state = exp.parallel.put_replicated(exp.init_state())
    batch = exp.parallel.put_batch(next(exp.train_iterator()))
    compiled = exp.compile_train_step().lower(state, batch).compile()
    return compiled.memory_analysis().temp_size_in_bytes

  # Activations of 512 examples dominate; a quarter of them at a time needs under half.
  assert temp_bytes(4) < 0.5 * temp_bytes(1)


@pytest.mark.parametrize(
  "overrides, expected",
  [
    (
      {"batch_size": 48, "grad_accum_steps": 4},
      "config.train.batch_size=48: must be a positive multiple of "
      "config.train.grad_accum_steps=4 times the 8 devices (32)",
    ),
    ({"grad_accum_steps": 0}, "config.train.grad_accum_steps=0: must be an integer >= 1"),
  ],
)
def test_a_batch_that_does_not_split_is_refused_naming_both_fields(overrides, expected):
  c = _config("vae", 1)
  c.train.update(**overrides)
  with pytest.raises(config_lib.ConfigError) as info:
    config_lib.validate(c, num_devices=8)
  assert expected in str(info.value)


@pytest.mark.parametrize(
  "family, fields, why",
  [
    ("gan", {"model.architecture": "dcgan", "data.name": "mnist"}, "BatchNorm"),
    ("gan", {"gan.d_norm": "batch"}, "BatchNorm"),
    ("vqvae", {"vq.ema": True, "data.name": "mnist"}, "EMA codebook"),
  ],
)
def test_a_step_that_couples_examples_refuses_micro_batches(family, fields, why):
  c = _config(family, 2)
  c.family = family
  for field, value in fields.items():
    section, name = field.split(".")
    c[section][name] = value
  c.data.preprocess = "scale_pm1" if family == "gan" else "scale_01"
  with pytest.raises(config_lib.ConfigError) as info:
    config_lib.validate(c, num_devices=8)
  line = next(x for x in str(info.value).splitlines() if "grad_accum_steps" in x)
  assert line.strip().startswith("config.train.grad_accum_steps=2: ") and why in line
  c.train.grad_accum_steps = 1
  config_lib.validate(c, num_devices=8)

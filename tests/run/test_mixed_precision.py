"""bfloat16 compute (``model.dtype``) against float32: one step of every reference network, a run.

Tolerances. bfloat16 keeps 8 significant bits (relative rounding 2**-9, about
0.2%); each layer rounds its inputs, weights and outputs once, and the errors of a
few layers add up like a random walk to a percent or so. So one step's loss is
compared at a relative 2e-2, and its gradient, the direction that training follows,
by cosine similarity > 0.99 (random rounding of every entry by 1% leaves a cosine of
about 0.9999; errors that are not rounding show up far below: bias gradients summed
in bfloat16 gave 0.72 for the PixelCNN and 0.86 for the conv VAE). Measured here:
loss differences 3e-6 to 5e-4 relative, cosines 0.9997 to 1.0 but the DCGAN's (see
MIN_COSINE_GENERATOR). Gradients are read off one plain-SGD update,
``(before - after) / lr``, from a state that has trained two float32 steps of the
experiment's own recipe, so the U-Net's zero-initialised output layer lets the
gradient through to every layer.
"""

import pathlib

import jax
import numpy as np
import pytest

from genjax import config as config_lib
from genjax.run import experiment

CONFIGS = pathlib.Path(__file__).resolve().parents[2] / "experiments" / "configs"
LR = 1e-3
DTYPES = ("float32", "bfloat16")
LOSS_RTOL = 2e-2
MIN_COSINE = 0.99
# A generator's gradient crosses the discriminator first (its input gradient), then the
# generator: twice the layers, twice the rounding. Measured 0.990 (the discriminator's
# 0.9988, every other network's >= 0.9996).
MIN_COSINE_GENERATOR = 0.98

# The reference network of each family, as its experiment file builds it (shrunk).
REFERENCES = {
  "vae_mlp": "vae_mnist.py",
  "vae_conv": "vae_conv_fashion_mnist.py",
  "dcgan": "dcgan_mnist.py",
  "ddpm_unet": "ddpm_mnist.py",
  "pixelcnn": "pixelcnn_mnist.py",
  "vqvae": "vqvae_mnist.py",
}


def _config(shrink, file: str, dtype: str, sgd: bool):
  c = shrink(config_lib.load_config(CONFIGS / file))
  c.train.num_devices, c.model.dtype = 1, dtype
  c.optimizer.grad_clip_norm = 0.0
  if c.family in ("gan", "cgan"):
    c.gan.d_steps = 1
  if sgd:
    c.optimizer = config_lib.defaults().optimizer
    c.optimizer.update(name="sgd", learning_rate=LR)
    if c.family in ("gan", "cgan"):
      c.gan.update(g_learning_rate=LR, d_learning_rate=LR)
  return c


def _start(shrink, file: str, exp):
  """``exp``'s state after two steps of the experiment's own float32 recipe (host arrays)."""
  warm = experiment.build(_config(shrink, file, "float32", sgd=False))
  step, it = warm.compile_train_step(), warm.train_iterator()
  state = warm.parallel.put_replicated(warm.init_state())
  for _ in range(2):
    state, _ = step(state, warm.parallel.put_batch(next(it)))
  state = jax.device_get(warm.parallel.get_replicated(state))
  start = jax.device_get(exp.init_state()).replace(
    params=state.params, ema_params=state.params, model_state=state.model_state
  )
  return start, next(it)


def _players(params, family):
  # The GAN's players each get their own comparison: their gradients differ in scale.
  return dict(params) if family in ("gan", "cgan") else {"all": params}


def _flat(tree):
  return np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in jax.tree.leaves(tree)])


def _cosine(a, b):
  return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _floating_dtypes(tree):
  return {x.dtype for x in jax.tree.leaves(tree) if np.issubdtype(x.dtype, np.floating)}


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_a_bfloat16_step_follows_the_float32_step(name, shrink):
  file = REFERENCES[name]
  builds = {d: experiment.build(_config(shrink, file, d, sgd=True)) for d in DTYPES}
  start, batch = _start(shrink, file, builds["float32"])
  after, loss = {}, {}
  for dtype, exp in builds.items():
    # The step donates its state: each dtype starts from its own copy.
    state, batch_d = exp.parallel.put_replicated(start), exp.parallel.put_batch(batch)
    new, metrics = exp.compile_train_step()(state, batch_d)
    after[dtype] = jax.device_get(exp.parallel.get_replicated(new))
    loss[dtype] = float(jax.device_get(exp.parallel.get_replicated(metrics))["loss"])

  low = after["bfloat16"]
  assert _floating_dtypes(low.params) == {np.dtype("float32")}
  assert _floating_dtypes(low.opt_state) <= {np.dtype("float32")}
  assert _floating_dtypes(low.model_state) <= {np.dtype("float32")}
  assert np.isfinite(loss["bfloat16"])
  np.testing.assert_allclose(loss["bfloat16"], loss["float32"], rtol=LOSS_RTOL)
  family = builds["float32"].config.family
  before = _players(start.params, family)
  for player, params in before.items():
    grads = {
      d: (_flat(params) - _flat(_players(after[d].params, family)[player])) / LR for d in after
    }
    assert np.linalg.norm(grads["float32"]) > 0
    cosine = _cosine(grads["bfloat16"], grads["float32"])
    least = MIN_COSINE_GENERATOR if player == "generator" else MIN_COSINE
    assert cosine > least, f"{name} {player}: gradient cosine {cosine:.4f}"


def test_a_short_bfloat16_run_trains_like_float32(train_steps):
  def run(dtype):
    c = config_lib.load_config(CONFIGS / "vae_digits.py")
    c.model.dtype, c.train.num_devices = dtype, 1
    _, history = train_steps(experiment.build(c), 200)
    losses = np.array([float(m["loss"]) for m in history])
    return losses[:20].mean(), losses[-20:].mean()

  first32, last32 = run("float32")
  first16, last16 = run("bfloat16")
  np.testing.assert_allclose(first16, first32, rtol=LOSS_RTOL)
  # Both fall by the same amount: bfloat16 rounding costs no visible progress here.
  assert last16 < first16 - 0.5 * (first32 - last32)
  np.testing.assert_allclose(last16, last32, rtol=3e-2)


@pytest.mark.parametrize("value", ["float16", "bf16"])
def test_an_unknown_compute_dtype_is_refused_in_one_line(value):
  c = config_lib.defaults()
  c.model.dtype = value
  with pytest.raises(config_lib.ConfigError) as info:
    config_lib.validate(c, num_devices=1)
  line = next(x for x in str(info.value).splitlines() if "model.dtype" in x)
  assert line.strip().startswith(f"config.model.dtype={value!r}: ")
  assert "bfloat16" in line and "float32" in line

"""1 device, 8 devices with shard_map and 8 with pmap train to the same parameters.

The GAN cases add what the autoencoders lack: two optimizers, several
discriminator minibatches per step, and BatchNorm statistics that must be
synchronized across devices (``model_state`` is compared too). The diffusion
case draws timesteps, noise, dropout masks and dropped labels per example. The
VQ-VAE case keeps an EMA codebook in ``model_state`` (statistics summed over
devices) and restarts dead codes at encoder outputs gathered from all devices.
"""

import jax
import numpy as np
import pytest

from genjax import config as config_lib
from genjax.run import experiment

NUM_STEPS = 4


def _tiny_config(parallel: str, family: str = "vae"):
  c = config_lib.defaults()
  # "sngan": the 2-D GAN with a spectrally normalised D (power-iteration state);
  # "infogan": the 2-D GAN with a categorical code drawn per example, read back by D.
  c.family = "gan" if family in ("sngan", "infogan") else family
  c.data.name = "digits"
  c.model.hidden_sizes = (32,)
  c.model.latent_dim = 4
  c.train.batch_size = 64
  c.train.parallel = parallel
  c.train.ema_decay = 0.9
  if family == "dae":  # Per-example corruption noise must not depend on the layout.
    c.objective.corruption, c.objective.corruption_level = "salt_pepper", 0.3
  if family == "gan":  # 2-D, BatchNorm in D, 2 discriminator minibatches per step.
    c.data.name, c.model.architecture = "ring8", "mlp"
    c.gan.d_norm, c.gan.d_steps = "batch", 2
  if family == "sngan":
    c.data.name, c.model.architecture, c.gan.d_norm = "ring8", "mlp", "spectral"
  if family == "infogan":
    c.data.name, c.model.architecture, c.gan.code_classes = "ring8", "mlp", 8
  if family == "cgan":  # DCGAN with BatchNorm in both players, projection D.
    c.data.name, c.data.preprocess, c.model.architecture = "mnist", "scale_pm1", "dcgan"
    c.gan.base_channels, c.train.batch_size = 4, 32
  if family == "ddpm":  # Conditional U-Net: dropout, label dropout and timesteps per example.
    c.data.preprocess, c.model.conditional = "scale_pm1", True
    c.unet.channels, c.unet.num_groups, c.unet.num_res_blocks = 8, 4, 1
    c.unet.channel_mults, c.unet.attention_resolutions = (1,), ()  # compiles 3x faster
    c.diffusion.num_steps, c.diffusion.sample_steps, c.diffusion.p_uncond = 10, 5, 0.5
  if family == "vqvae":  # EMA codebook statistics summed over devices; restarts from all of them.
    c.data.preprocess = "scale_01"
    c.vq.num_embeddings, c.vq.embedding_dim, c.vq.channels = 16, 4, (4, 8)
    c.vq.res_channels, c.vq.num_res_blocks = 4, 1
    c.vq.restart_threshold = 2.0  # 64 images x 4 positions over 16 codes: some fall below
    c.train.ema_decay = 0.0
  c.gan.g_learning_rate = c.gan.d_learning_rate = 1e-3  # moves params measurably in 4 steps
  return c


def _train(train_steps, parallel: str, devices, family: str = "vae"):
  exp = experiment.build(_tiny_config(parallel, family), devices=devices)
  state, history = train_steps(exp, NUM_STEPS)
  if family == "vqvae":  # The restart path runs, so its cross-device agreement is checked.
    assert all(float(metrics["codes_restarted"]) > 0 for metrics in history)
  return state, [float(metrics["loss"]) for metrics in history]


@pytest.mark.parametrize(
  "family", ["vae", "dae", "gan", "sngan", "infogan", "cgan", "ddpm", "vqvae"]
)
def test_one_device_shard_map_and_pmap_agree(family, train_steps):
  assert jax.device_count() == 8, "run with XLA_FLAGS=--xla_force_host_platform_device_count=8"
  one, one_losses = _train(train_steps, "shard_map", jax.devices()[:1], family)
  sharded, sharded_losses = _train(train_steps, "shard_map", jax.devices(), family)
  pmapped, pmapped_losses = _train(train_steps, "pmap", jax.devices(), family)
  assert int(one.step) == int(sharded.step) == int(pmapped.step) == NUM_STEPS
  np.testing.assert_allclose(one_losses, sharded_losses, rtol=1e-5)
  np.testing.assert_allclose(one_losses, pmapped_losses, rtol=1e-5)
  # Training moved the parameters, so agreement is not agreement at init.
  init = jax.device_get(experiment.build(_tiny_config("shard_map", family)).init_state())
  moved = jax.tree.leaves(jax.tree.map(lambda a, b: np.abs(a - b).max(), one.params, init.params))
  assert max(moved) > 1e-3
  # Adam divides each gradient by its own running scale, so round-off from a
  # different summation order can grow to ~1e-2 of a step for elements whose
  # gradients are tiny; a DCGAN has such elements, 4 steps move params ~4e-3
  # and the largest disagreement seen is 6.5e-5.
  atol = 1e-4 if family == "cgan" else 2e-6
  for other in (sharded, pmapped):
    for name in ("params", "ema_params", "opt_state", "model_state"):
      jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=atol),
        getattr(one, name),
        getattr(other, name),
      )

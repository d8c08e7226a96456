"""Tests for the VQ-VAE encoder, decoder and VectorQuantizer layer."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P
from model_params import host_params

from genjax.models import vqvae
from genjax.objectives import vae, vq

_random_params = functools.partial(host_params, kernel_scale=1.5, bias_scale=0.3)


_ENCODER = vqvae.VQEncoder(channels=(8, 16), num_res_blocks=2, res_channels=8, embedding_dim=4)
_DECODER = vqvae.VQDecoder(channels=(8, 16), num_res_blocks=2, res_channels=8, out_channels=1)


def test_encoder_decoder_shapes_for_28x28():
  x = jax.ShapeDtypeStruct((3, 28, 28, 1), jnp.float32)
  z = jax.eval_shape(_ENCODER.apply, jax.eval_shape(_ENCODER.init, jax.random.key(0), x), x)
  assert z.shape == (3, 7, 7, 4)
  out = jax.eval_shape(_DECODER.apply, jax.eval_shape(_DECODER.init, jax.random.key(0), z), z)
  assert out.shape == (3, 28, 28, 1)
  with pytest.raises(ValueError, match="divisible"):
    jax.eval_shape(_ENCODER.init, jax.random.key(0), jnp.zeros((1, 30, 30, 1)))


def test_vqvae_loss_has_finite_gradients_for_all_parts():
  x = jnp.asarray(np.random.default_rng(0).integers(0, 2, (2, 28, 28, 1)), jnp.float32)
  # One residual block each: the gradient program compiles noticeably faster.
  encoder = _ENCODER.clone(num_res_blocks=1)
  decoder = _DECODER.clone(num_res_blocks=1)
  quantizer = vqvae.VectorQuantizer(num_embeddings=8, embedding_dim=4)
  enc_params = _random_params(encoder, x)
  z_e = jax.eval_shape(encoder.apply, enc_params, x)
  params = {
    "enc": enc_params,
    "vq": _random_params(quantizer, z_e, seed=1),
    "dec": _random_params(decoder, z_e, seed=2),
  }

  def loss(p):
    z_e = encoder.apply(p["enc"], x)
    z_q, idx, cb_loss, commit = quantizer.apply(p["vq"], z_e)
    logits = decoder.apply(p["dec"], z_q)
    recon = -vae.bernoulli_log_likelihood(x, logits)
    return jnp.mean(recon + cb_loss + commit), idx

  (value, idx), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
  assert np.isfinite(value) and idx.shape == (2, 7, 7)
  for part in ("enc", "vq", "dec"):
    leaves = jax.tree.leaves(grads[part])
    assert all(np.all(np.isfinite(g)) for g in leaves)
    assert sum(float(jnp.abs(g).sum()) for g in leaves) > 0, part


def test_vector_quantizer_matches_pure_functions():
  quantizer = vqvae.VectorQuantizer(num_embeddings=8, embedding_dim=3, beta=0.4)
  z_e = jnp.asarray(np.random.default_rng(1).normal(size=(2, 4, 4, 3)), jnp.float32)
  variables = quantizer.init(jax.random.key(0), z_e)
  codebook = variables["params"]["codebook"]
  assert codebook.shape == (8, 3)
  assert np.all(np.abs(codebook) <= math.sqrt(3.0 / 3)) and np.std(codebook) > 0.1
  z_q_st, idx, cb_loss, commit = quantizer.apply(variables, z_e)
  want_q, want_idx, _ = vq.quantize(z_e, codebook)
  want_cb, want_commit = vq.vq_losses(z_e, want_q, 0.4)
  np.testing.assert_array_equal(idx, want_idx)
  np.testing.assert_allclose(z_q_st, want_q, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(cb_loss, want_cb, rtol=1e-6)
  np.testing.assert_allclose(commit, want_commit, rtol=1e-6)
  looked_up = quantizer.apply(variables, idx, method=vqvae.VectorQuantizer.lookup)
  np.testing.assert_array_equal(looked_up, want_q)


def test_ema_quantizer_collection_and_update_contract():
  k, d = 6, 3
  quantizer = vqvae.VectorQuantizer(num_embeddings=k, embedding_dim=d, ema=True, decay=0.9)
  z_e = jnp.asarray(np.random.default_rng(2).normal(size=(2, 3, 3, d)), jnp.float32)
  variables = quantizer.init(jax.random.key(0), z_e)
  assert "params" not in variables  # the EMA codebook gets no gradients
  ema = variables["vq_ema"]
  assert set(ema) == {"codebook", "cluster_size", "embed_sum"}
  np.testing.assert_array_equal(ema["cluster_size"], np.ones(k))
  np.testing.assert_array_equal(ema["embed_sum"], ema["codebook"])

  (z_q, idx, _, _), updated = quantizer.apply(variables, z_e, update_ema=True, mutable=["vq_ema"])
  want_q, want_idx, _ = vq.quantize(z_e, ema["codebook"])  # quantized with the old codebook
  np.testing.assert_array_equal(idx, want_idx)
  np.testing.assert_allclose(z_q, want_q, rtol=1e-6, atol=1e-6)
  state = vq.EMAState(ema["cluster_size"], ema["embed_sum"])
  want_state, want_codebook = vq.ema_update(
    state, z_e.reshape(-1, d), want_idx.reshape(-1), decay=0.9
  )
  new = updated["vq_ema"]
  np.testing.assert_allclose(new["codebook"], want_codebook, rtol=1e-6)
  np.testing.assert_allclose(new["cluster_size"], want_state.cluster_size, rtol=1e-6)
  np.testing.assert_allclose(new["embed_sum"], want_state.embed_sum, rtol=1e-6)
  # Without update_ema nothing changes; updating without a mutable collection is an error.
  _, same = quantizer.apply(variables, z_e, mutable=["vq_ema"])
  np.testing.assert_array_equal(same["vq_ema"]["codebook"], ema["codebook"])
  with pytest.raises(ValueError, match="mutable"):
    quantizer.apply(variables, z_e, update_ema=True)


def test_ema_quantizer_psums_statistics_over_devices():
  mesh = Mesh(np.asarray(jax.devices()[:2]), ("data",))
  d = 2
  z_e = jnp.asarray(np.random.default_rng(3).normal(size=(4, 2, 2, d)), jnp.float32)
  local = vqvae.VectorQuantizer(num_embeddings=5, embedding_dim=d, ema=True)
  variables = local.init(jax.random.key(0), z_e)
  _, want = local.apply(variables, z_e, update_ema=True, mutable=["vq_ema"])
  sharded_vq = vqvae.VectorQuantizer(num_embeddings=5, embedding_dim=d, ema=True, axis_name="data")

  @functools.partial(jax.shard_map, mesh=mesh, in_specs=(P(), P("data")), out_specs=P())
  def step(variables, z):
    return sharded_vq.apply(variables, z, update_ema=True, mutable=["vq_ema"])[1]

  got = jax.jit(step)(variables, z_e)
  np.testing.assert_allclose(got["vq_ema"]["codebook"], want["vq_ema"]["codebook"], rtol=1e-5)

"""VQ-VAE-2 modules: shapes, both levels reach the decoder, and the two priors' causality."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from model_params import host_params

from genjax.models import pixelcnn, vqvae2

_random_params = functools.partial(host_params, kernel_scale=1.5, bias_scale=0.3)
TOP_CODES, BOTTOM_CODES, CLASSES = 5, 7, 3
TOP, BOTTOM = (4, 4), (7, 7)


def _first_stage():
  return vqvae2.VQVAE2(
    channels=(8, 16),
    num_res_blocks=1,
    res_channels=8,
    num_embeddings=BOTTOM_CODES,
    top_num_embeddings=TOP_CODES,
    embedding_dim=4,
    ema=True,
  )


@pytest.mark.parametrize("side,bottom,top", [(28, 7, 4), (32, 8, 4)])
def test_first_stage_shapes(side, bottom, top):
  model = _first_stage()
  x = jax.ShapeDtypeStruct((2, side, side, 1), jnp.float32)
  variables = jax.eval_shape(model.init, jax.random.key(0), x)
  out = jax.eval_shape(model.apply, variables, x)
  assert out["output"].shape == (2, side, side, 1)
  assert out["indices_top"].shape == (2, top, top)
  assert out["indices_bottom"].shape == (2, bottom, bottom)
  assert out["z_q_top"].shape == (2, top, top, 4)
  assert out["commitment_loss"].shape == (2,)
  assert vqvae2.top_grid((bottom, bottom)) == (top, top)
  assert set(variables["vq_ema"]) == {"quantizer_top", "quantizer_bottom"}


def test_decoder_reads_both_levels_and_losses_add_up():
  model = _first_stage()
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.uniform(size=(2, 28, 28, 1)), jnp.float32)
  params = _random_params(model, x)
  out = model.apply(params, x)
  for loss in ("codebook_loss", "commitment_loss"):
    np.testing.assert_allclose(out[loss], out[loss + "_top"] + out[loss + "_bottom"], rtol=1e-6)
  top, bottom = model.apply(params, x, method=vqvae2.VQVAE2.encode)
  np.testing.assert_array_equal(top, out["indices_top"])
  decode = jax.jit(functools.partial(model.apply, params, method=vqvae2.VQVAE2.decode))
  base = np.asarray(decode(top, bottom))
  np.testing.assert_allclose(base, out["output"], atol=1e-5)
  assert np.all(np.isfinite(base))
  # Changing one code of either map changes the pixels its receptive field covers.
  other_top = np.asarray(decode(top.at[:, 1, 2].set((top[:, 1, 2] + 1) % TOP_CODES), bottom))
  other_bottom = np.asarray(
    decode(top, bottom.at[:, 3, 3].set((bottom[:, 3, 3] + 1) % BOTTOM_CODES))
  )
  assert np.abs(other_top - base).max() > 1e-4
  assert np.abs(other_bottom - base).max() > 1e-4


def _codes(seed, shape, num):
  return jnp.asarray(np.random.default_rng(seed).integers(0, num, (1,) + shape), jnp.int32)


def _bump(grid, j, num):
  r, c = divmod(j, grid.shape[2])
  return grid.at[0, r, c].set((grid[0, r, c] + 1) % num)


def test_top_prior_position_sees_only_earlier_top_codes():
  model = pixelcnn.GatedPixelCNN(
    num_layers=3,
    features=8,
    num_outputs=TOP_CODES,
    num_classes=CLASSES,
    input_kind="categorical",
    num_embeddings=TOP_CODES,
  )
  top, labels = _codes(1, TOP, TOP_CODES), jnp.array([2])
  params = _random_params(model, top, labels)
  apply = jax.jit(model.apply)
  base = np.asarray(apply(params, top, labels)).reshape(-1, TOP_CODES)
  for j in range(top[0].size):
    diff = np.abs(
      np.asarray(apply(params, _bump(top, j, TOP_CODES), labels)).reshape(-1, TOP_CODES) - base
    )
    np.testing.assert_array_equal(diff[: j + 1], 0.0)  # positions <= j: unchanged
    assert np.all(diff[j + 1 :].max(axis=-1) > 0.0)  # later positions: all see it


@pytest.fixture(scope="module")
def bottom_prior():
  model = vqvae2.BottomPrior(
    bottom_shape=BOTTOM,
    num_embeddings=BOTTOM_CODES,
    top_num_embeddings=TOP_CODES,
    num_layers=3,
    features=8,
    num_classes=CLASSES,
  )
  top, bottom, labels = _codes(2, TOP, TOP_CODES), _codes(3, BOTTOM, BOTTOM_CODES), jnp.array([1])
  params = _random_params(model, bottom, top, labels)
  return model, params, top, bottom, labels


def test_bottom_prior_position_sees_only_earlier_bottom_codes(bottom_prior):
  model, params, top, bottom, labels = bottom_prior
  apply = jax.jit(model.apply)
  base = np.asarray(apply(params, bottom, top, labels)).reshape(-1, BOTTOM_CODES)
  for j in range(bottom[0].size):
    changed = apply(params, _bump(bottom, j, BOTTOM_CODES), top, labels)
    diff = np.abs(np.asarray(changed).reshape(-1, BOTTOM_CODES) - base)
    np.testing.assert_array_equal(diff[: j + 1], 0.0)
    if j + 1 < len(diff):  # Three layers do not reach every later position of a 7x7 map.
      assert diff[j + 1 :].max() > 0.0


def test_bottom_prior_sees_the_whole_top_map_and_the_class(bottom_prior):
  model, params, top, bottom, labels = bottom_prior
  apply = jax.jit(model.apply)
  base = np.asarray(apply(params, bottom, top, labels)).reshape(-1, BOTTOM_CODES)
  for j in range(top[0].size):
    changed = apply(params, bottom, _bump(top, j, TOP_CODES), labels)
    diff = np.abs(np.asarray(changed).reshape(-1, BOTTOM_CODES) - base)
    assert np.all(diff.max(axis=-1) > 0.0), (j, np.argwhere(diff.max(axis=-1) == 0.0))
  other = np.asarray(apply(params, bottom, top, jnp.array([2]))).reshape(-1, BOTTOM_CODES)
  assert np.all(np.abs(other - base).max(axis=-1) > 0.0)
  # The conditioning map computed once equals the one inside the full call.
  cond = model.apply(params, top, method=vqvae2.BottomPrior.condition)
  logits = model.apply(params, bottom, cond, labels, method=vqvae2.BottomPrior.logits)
  np.testing.assert_allclose(np.asarray(logits).reshape(base.shape), base, rtol=1e-5, atol=1e-5)


def test_spatial_conditioning_must_cover_the_grid():
  model = pixelcnn.GatedPixelCNN(num_layers=1, features=4, num_outputs=2)
  x = jnp.zeros((1, 5, 5), jnp.int32)
  with pytest.raises(ValueError, match="cond must be"):
    jax.eval_shape(model.init, jax.random.key(0), x, None, jnp.zeros((1, 4, 5, 3)))

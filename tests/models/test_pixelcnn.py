"""Causality, blind spot, likelihood and sampling tests for genjax.models.pixelcnn."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from model_params import host_params

from genjax.models import pixelcnn
from genjax.objectives import autoregressive
from genjax.samplers import autoregressive as ar_sampler

_SIZE = 5


_random_params = functools.partial(host_params, kernel_scale=1.5, bias_scale=0.3)


def _influence(model, params, x, labels=None):
  """``[i, j]`` = max over images and categories of |d logits[i] / d x[j]|.

  ``x`` holds several images ``[N, H, W]``: a ReLU in the output head can be
  inactive at a position for one input by chance, but not for all of them.
  """
  n = _SIZE * _SIZE

  def f(img, label):
    label = None if labels is None else label[None]
    return model.apply(params, img[None], label)[0]  # [H, W, V]

  label_axis = None if labels is None else 0
  jac = jax.jit(jax.vmap(jax.jacrev(f), in_axes=(0, label_axis)))(x, labels)  # [N, H, W, V, H, W]
  jac = jnp.moveaxis(jac, 3, -1).reshape(x.shape[0], n, n, -1)
  return np.asarray(jnp.max(jnp.abs(jac), axis=(0, -1)))


def _check_causal(influence):
  upper = np.triu(np.ones_like(influence, dtype=bool))  # j >= i
  np.testing.assert_array_equal(influence[upper], 0.0)


def _images(seed=0, num=4):
  shape = (num, _SIZE, _SIZE)
  return jnp.asarray(np.random.default_rng(seed).integers(0, 2, shape), jnp.float32)


def test_causal_masks():
  np.testing.assert_array_equal(pixelcnn.causal_mask(5, "B")[2], [1, 1, 1, 0, 0])
  np.testing.assert_array_equal(pixelcnn.causal_mask(5, "A")[2], [1, 1, 0, 0, 0])
  np.testing.assert_array_equal(pixelcnn.causal_mask(5, "A")[3:], 0)
  assert pixelcnn.causal_mask(5, "A")[:2].all()
  with pytest.raises(ValueError):
    pixelcnn.causal_mask(4, "A")


def test_plain_pixelcnn_is_causal_and_has_a_blind_spot():
  model = pixelcnn.PixelCNN(num_layers=6, features=8, num_outputs=2, kernel_size=3)
  x = _images(1)
  influence = _influence(model, _random_params(model, x), x)
  _check_causal(influence)
  # Pixel (0, 2) lies up-right of the receptive cone of position (1, 0): the blind spot.
  assert influence[1 * _SIZE + 0, 0 * _SIZE + 2] == 0.0
  assert influence[1 * _SIZE + 0, 0 * _SIZE + 1] > 0.0


@pytest.mark.parametrize("kernel_size,num_layers", [(3, 4), (5, 2)])
def test_gated_pixelcnn_is_causal_without_blind_spot(kernel_size, num_layers):
  model = pixelcnn.GatedPixelCNN(
    num_layers=num_layers, features=8, num_outputs=2, kernel_size=kernel_size, num_classes=3
  )
  x = _images(2)
  labels = jnp.array([1, 0, 2, 1])
  influence = _influence(model, _random_params(model, x, labels), x, labels)
  _check_causal(influence)
  lower = np.tril(np.ones_like(influence, dtype=bool), k=-1)  # j < i
  assert np.all(influence[lower] > 0.0), np.argwhere(lower & (influence == 0.0))


def test_gated_pixelcnn_categorical_inputs_are_causal_and_conditional():
  num_codes = 6
  model = pixelcnn.GatedPixelCNN(
    num_layers=4,
    features=8,
    num_outputs=num_codes,
    num_classes=4,
    input_kind="categorical",
    num_embeddings=num_codes,
  )
  rng = np.random.default_rng(3)
  x = jnp.asarray(rng.integers(0, num_codes, (1, _SIZE, _SIZE)))
  labels = jnp.array([2])
  params = _random_params(model, x, labels)
  apply = jax.jit(model.apply)
  base = apply(params, x, labels).reshape(-1, num_codes)
  for j in range(_SIZE * _SIZE):
    r, c = divmod(j, _SIZE)
    changed = x.at[0, r, c].set((x[0, r, c] + 1) % num_codes)
    diff = np.abs(np.asarray(apply(params, changed, labels).reshape(-1, num_codes) - base))
    np.testing.assert_array_equal(diff[: j + 1], 0.0)
    assert np.all(diff[j + 1 :].max(axis=-1) > 0.0)
  other = apply(params, x, jnp.array([3]))
  assert np.all(np.abs(np.asarray(other) - np.asarray(base.reshape(other.shape))) > 0)


def test_uniform_logits_give_d_log2_nll():
  model = pixelcnn.GatedPixelCNN(num_layers=2, features=8, num_outputs=2)
  x = jnp.asarray(np.random.default_rng(4).integers(0, 2, (3, 28, 28)))
  params = _random_params(model, x)
  head = params["params"]["head"]["logits"]
  head = jax.tree.map(jnp.zeros_like, head)
  params["params"]["head"]["logits"] = head
  nll = autoregressive.categorical_nll(jax.jit(model.apply)(params, x), x)
  np.testing.assert_allclose(nll, np.full(3, 784 * math.log(2.0)), rtol=1e-6)
  np.testing.assert_allclose(autoregressive.bits_per_dim(nll, 784), np.ones(3), rtol=1e-6)


def test_conditional_code_prior_shapes_and_finite_gradients():
  model = pixelcnn.GatedPixelCNN(
    num_layers=1,
    features=8,
    num_outputs=16,
    num_classes=10,
    input_kind="categorical",
    num_embeddings=16,
  )
  x = jnp.asarray(np.random.default_rng(5).integers(0, 16, (4, 7, 7, 1)))
  labels = jnp.arange(4)
  params = _random_params(model, x, labels)
  logits = model.apply(params, x, labels)
  assert logits.shape == (4, 7, 7, 16)

  def loss(p):
    return autoregressive.categorical_nll(model.apply(p, x, labels), x[..., 0]).mean()

  grads = jax.jit(jax.grad(loss))(params)
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
  with pytest.raises(ValueError, match="labels"):
    model.apply(params, x)


def test_completion_with_a_gated_pixelcnn_keeps_the_visible_half():
  model = pixelcnn.GatedPixelCNN(num_layers=2, features=8, num_outputs=2, num_classes=2)
  init = jnp.asarray(np.random.default_rng(6).integers(0, 2, (3, 6, 6)))
  labels = jnp.array([0, 1, 1])
  params = _random_params(model, init, labels)
  keys = jax.random.split(jax.random.key(1), 3)
  out = jax.jit(
    lambda keys: ar_sampler.sample(
      lambda x, y: model.apply(params, x, y), (6, 6), keys, labels=labels, init=init, start=18
    )
  )(keys)
  assert out.shape == (3, 6, 6) and out.dtype == jnp.int32
  np.testing.assert_array_equal(out[:, :3], init[:, :3])
  assert set(np.unique(np.asarray(out))) <= {0, 1}


@pytest.mark.parametrize("kernel_size, num_layers", [(3, 2), (5, 1)])
def test_context_rows_bound_the_receptive_field_and_windowed_sampling_is_exact(
  kernel_size, num_layers
):
  model = pixelcnn.GatedPixelCNN(
    num_layers=num_layers,
    features=8,
    num_outputs=3,
    kernel_size=kernel_size,
    input_kind="categorical",
    num_embeddings=3,
  )
  height = width = 12
  x = jnp.asarray(np.random.default_rng(7).integers(0, 3, (2, height, width)))
  params = _random_params(model, x, None)
  context = model.context_rows()
  # Logits at row r are those of the crop of rows r - context .. r: nothing above matters.
  row = height - 1
  full = model.apply(params, x)
  for top in range(height - context):
    crop = model.apply(params, x[:, top : top + context + 1])
    np.testing.assert_allclose(crop[:, -1], full[:, top + context], rtol=1e-5, atol=1e-5)
  # One row less of context changes the logits: the bound is tight.
  short = model.apply(params, x[:, row - context + 1 :])
  assert np.abs(np.asarray(short[:, -1] - full[:, row])).max() > 1e-4
  keys = jax.random.split(jax.random.key(3), 2)
  logits_fn = lambda g, y: model.apply(params, g)  # noqa: E731
  whole = ar_sampler.sample(logits_fn, (height, width), keys)
  windowed = ar_sampler.sample(logits_fn, (height, width), keys, context_rows=context)
  np.testing.assert_array_equal(whole, windowed)

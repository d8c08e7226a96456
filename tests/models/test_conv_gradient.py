"""`layers.conv_general_dilated`: XLA's convolution with a per-tap kernel gradient.

The truth is `lax.conv_general_dilated` itself: values, first-order gradients
(input and kernel) and the second-order gradients of a gradient penalty must
match it, and `layers.Conv` must have `nn.Conv`'s parameters.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from genjax.models import layers
from genjax.models.pixelcnn import GatedPixelCNN

# (kernel, strides, padding, input spatial size): SAME/VALID, odd and even kernels,
# strides 1 and 2 on odd and even sides, and the PixelCNN's asymmetric causal pads.
CASES = [
  ((3, 3), (1, 1), "SAME", (9, 8)),
  ((1, 1), (1, 1), "SAME", (6, 6)),
  ((2, 3), (1, 1), ((1, 0), (1, 1)), (7, 7)),
  ((1, 2), (1, 1), ((0, 0), (1, 0)), (7, 7)),
  ((4, 4), (2, 2), "SAME", (8, 8)),
  ((3, 3), (2, 2), "SAME", (9, 7)),
  ((3, 3), (2, 2), "VALID", (9, 8)),
]


def _pair(kernel, strides, padding):
  kw = dict(strides=strides, padding=padding)
  return nn.Conv(5, kernel, **kw), layers.Conv(5, kernel, **kw)


def _uses_tap_gradient(fn, *args) -> bool:
  return "custom_vjp" in str(jax.make_jaxpr(fn)(*args))


@pytest.fixture(name="every_kernel")
def _every_kernel(monkeypatch):
  """The per-tap gradient for every kernel, not just where it is the faster one."""
  monkeypatch.setattr(layers, "TAP_KERNEL_GRADIENT_MAX_TAPS", 10**6)


@pytest.mark.parametrize("kernel,strides,padding,hw", CASES)
def test_matches_lax_values_and_gradients(kernel, strides, padding, hw, every_kernel):
  x = jax.random.normal(jax.random.key(0), (3, *hw, 4))
  ref, fast = _pair(kernel, strides, padding)
  params = ref.init(jax.random.key(1), x)
  chex.assert_trees_all_equal_shapes_and_dtypes(params, fast.init(jax.random.key(1), x))

  def loss(module):
    return lambda p, x: jnp.sum(jnp.sin(module.apply(p, x)))

  assert _uses_tap_gradient(loss(fast), params, x)
  np.testing.assert_array_equal(ref.apply(params, x), fast.apply(params, x))
  g_ref = jax.grad(loss(ref), argnums=(0, 1))(params, x)
  g_fast = jax.grad(loss(fast), argnums=(0, 1))(params, x)
  chex.assert_trees_all_close(g_fast, g_ref, rtol=1e-5, atol=1e-5)

  # A gradient penalty differentiates the input gradient again (WGAN-GP, R1).
  def penalty(module):
    return lambda p: jnp.sum(jax.grad(lambda x: loss(module)(p, x))(x) ** 2)

  chex.assert_trees_all_close(
    jax.grad(penalty(fast))(params), jax.grad(penalty(ref))(params), rtol=1e-4, atol=1e-4
  )


def test_jit_and_masked_kernel(every_kernel):
  """A masked kernel (PixelCNN's mask A) gets the masked gradient under jit."""
  x = jax.random.normal(jax.random.key(2), (2, 5, 5, 3))
  mask = np.broadcast_to(
    np.array([[1, 1, 1], [1, 0, 0], [0, 0, 0]], np.float32)[:, :, None, None], (3, 3, 3, 4)
  )
  ref = nn.Conv(4, (3, 3), padding="SAME", mask=jnp.asarray(mask))
  fast = layers.Conv(4, (3, 3), padding="SAME", mask=jnp.asarray(mask))
  params = ref.init(jax.random.key(3), x)
  g = [jax.jit(jax.grad(lambda p, m=m: jnp.sum(m.apply(p, x) ** 2)))(params) for m in (ref, fast)]
  chex.assert_trees_all_close(g[1], g[0], rtol=1e-5, atol=1e-5)
  kernel_grad = np.asarray(g[1]["params"]["kernel"])
  np.testing.assert_array_equal(kernel_grad[mask == 0], 0.0)


def test_falls_back_to_lax_where_not_covered(monkeypatch):
  x = jax.random.normal(jax.random.key(4), (2, 9, 9, 3))
  dilated = layers.Conv(4, (3, 3), kernel_dilation=(2, 2), padding="SAME")
  grouped = layers.Conv(6, (3, 3), feature_group_count=3, padding="SAME")
  for module in (dilated, grouped):
    params = module.init(jax.random.key(5), x)
    assert not _uses_tap_gradient(lambda p, m=module: m.apply(p, x).sum(), params)
  plain = layers.Conv(4, (3, 3), padding="SAME")
  params = plain.init(jax.random.key(5), x)
  monkeypatch.setattr(layers, "TAP_KERNEL_GRADIENT", False)
  assert not _uses_tap_gradient(lambda p: plain.apply(p, x).sum(), params)


@pytest.mark.parametrize(
  "kernel,strides,expected",
  [((1, 1), (1, 1), True), ((4, 4), (2, 2), True), ((3, 3), (2, 2), True)]
  + [((3, 3), (1, 1), False), ((1, 3), (1, 1), False), ((3, 5), (1, 1), False)],
)
def test_per_tap_gradient_only_where_it_is_faster(kernel, strides, expected):
  """1x1 kernels and strided convolutions: per tap; stride-1 kernels of several taps: XLA's."""
  x = jax.random.normal(jax.random.key(8), (2, 8, 8, 3))
  module = layers.Conv(4, kernel, strides=strides, padding="SAME")
  params = module.init(jax.random.key(9), x)
  assert _uses_tap_gradient(lambda p: module.apply(p, x).sum(), params) == expected


def test_gated_pixelcnn_gradients_match_xla(monkeypatch, every_kernel):
  """The whole PixelCNN (every conv on the per-tap path) against XLA's gradients."""
  model = GatedPixelCNN(num_layers=3, features=8, num_outputs=2, num_classes=3)
  x = (jax.random.uniform(jax.random.key(6), (2, 7, 7)) > 0.5).astype(jnp.int32)
  y = jnp.array([0, 2])
  params = model.init(jax.random.key(7), x, y)

  def loss(p):
    logits = model.apply(p, x, y)
    return -jnp.sum(jnp.take_along_axis(jax.nn.log_softmax(logits), x[..., None], -1))

  fast = jax.grad(loss)(params)
  monkeypatch.setattr(layers, "TAP_KERNEL_GRADIENT", False)
  chex.assert_trees_all_close(fast, jax.grad(loss)(params), rtol=1e-5, atol=1e-5)

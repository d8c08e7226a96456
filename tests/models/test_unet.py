"""Shape, initialisation, conditioning and structure tests for genjax.models.unet."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from model_params import host_params as _host_params

from genjax.models.unet import (
  UNET_CONDITIONINGS,
  AttentionBlock,
  MLPDenoiser,
  UNet,
  Upsample,
  count_params,
  timestep_embedding,
)

BATCH = 3
CLASSES = 4
SIDE = 8  # numeric tests: 8x8 -> 4x4, compile time rather than capacity matters here
# Tiny U-Net: 2 levels, attention at the 4x4 level (and in the middle), dropout on.
TINY = dict(
  channels=8, channel_mults=(1, 2), num_res_blocks=1, attention_resolutions=(4,), num_groups=4
)
# Every test program is tiny and runs a few times: XLA-CPU's optimising backend would
# dominate the test time (~2x the compile time at the default level), so skip it.
_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


def _key(seed):
  """An RBG key: XLA-CPU compiles threefry (in initializers, dropout) far more slowly."""
  return jax.random.key(seed, impl="rbg")


def _normal(shape, seed=0):
  return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _inputs(shape=(SIDE, SIDE, 1), n=BATCH, seed=0):
  rng = np.random.default_rng(seed)
  t = rng.integers(0, 1000, n).astype(np.int32)
  labels = rng.integers(0, CLASSES, n).astype(np.int32)
  return _normal((n, *shape), seed), t, labels


def _max_diff(a, b):
  return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


def _tiny_unet(conditioning="scale_shift", num_classes=CLASSES, dropout=0.5):
  return UNet(**TINY, dropout=dropout, num_classes=num_classes, conditioning=conditioning)


def _real_init(module, *args):
  """`(output, variables)` of a real eval-mode init, compiled as one program."""
  init = _jit(functools.partial(module.init_with_output, train=False))
  return init(_key(0), *args)


@functools.lru_cache(maxsize=None)
def _train_apply_and_grad(module):
  """jit of (variables, x, t, labels, key) -> (train-mode output, grads of sum(output^2))."""

  def loss(variables, x, t, labels, key):
    out = module.apply(variables, x, t, labels, train=True, rngs={"dropout": key})
    return jnp.sum(out**2), out

  def run(variables, x, t, labels, key):
    grads, out = jax.grad(loss, has_aux=True)(variables, x, t, labels, key)
    return out, grads

  return _jit(run)


@functools.lru_cache(maxsize=None)
def _eval_apply(module):
  return _jit(lambda v, x, t, y: module.apply(v, x, t, y, train=False))


def test_timestep_embedding_matches_numpy_formula():
  t = np.array([0, 1, 17, 999], np.int32)
  for dim in (16, 7):
    half = dim // 2
    freqs = np.exp(-np.log(10000.0) * np.arange(half) / (half - 1))
    args = t[:, None].astype(np.float64) * freqs[None, :]
    expected = np.concatenate([np.sin(args), np.cos(args)], axis=1)
    if dim % 2:
      expected = np.concatenate([expected, np.zeros((len(t), 1))], axis=1)
    got = timestep_embedding(jnp.asarray(t), dim)
    assert got.shape == (4, dim) and got.dtype == jnp.float32
    np.testing.assert_allclose(got, expected, atol=2e-4)  # sin of ~1e3 in float32
  # Integer and float timesteps embed identically; t = 0 is [0...0, 1...1].
  np.testing.assert_array_equal(
    timestep_embedding(jnp.asarray(t), 16), timestep_embedding(jnp.asarray(t, jnp.float32), 16)
  )
  np.testing.assert_array_equal(timestep_embedding(jnp.zeros(1), 8), [[0] * 4 + [1] * 4])


@pytest.mark.parametrize(
  "shape,mults", [((28, 28, 1), (1, 2, 2)), ((32, 32, 3), (1, 2, 2, 2))], ids=["28", "32"]
)
@pytest.mark.parametrize("num_classes,conditioning", [(0, "scale_shift"), (10, "add")])
def test_unet_output_shape_and_dtype(shape, mults, num_classes, conditioning):
  model = UNet(
    channels=16,
    channel_mults=mults,
    attention_resolutions=(7, 8),
    num_groups=8,
    num_classes=num_classes,
    conditioning=conditioning,
  )
  x = jax.ShapeDtypeStruct((2, *shape), jnp.float32)
  t = jax.ShapeDtypeStruct((2,), jnp.int32)
  labels = t if num_classes else None
  rngs = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
  init = functools.partial(model.init_with_output, train=True)
  out, variables = jax.eval_shape(init, rngs, x, t, labels)
  assert out.shape == (2, *shape) and out.dtype == jnp.float32
  # The null-label row exists only for conditional models.
  params = variables["params"]
  if num_classes:
    assert params["label_embed"]["embedding"].shape == (num_classes + 1, 64)
  else:
    assert "label_embed" not in params
  # Explicit out_channels (e.g. mean and variance heads).
  wide = UNet(channels=16, channel_mults=mults, num_groups=8, out_channels=2 * shape[-1])
  wide_vars = jax.eval_shape(functools.partial(wide.init, train=False), jax.random.key(0), x, t)
  out = jax.eval_shape(functools.partial(wide.apply, train=False), wide_vars, x, t)
  assert out.shape == (2, *shape[:2], 2 * shape[-1])


def _init_shapes(model, shape):
  x = jax.ShapeDtypeStruct((2, *shape), jnp.float32)
  t = jax.ShapeDtypeStruct((2,), jnp.int32)
  return jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0), x, t)


def test_unet_config_errors():
  with pytest.raises(ValueError, match="num_groups=5.*channels=16"):
    _init_shapes(UNet(channels=16, num_groups=5), (32, 32, 3))
  with pytest.raises(ValueError, match="28x28.*channel_mults=\\(1, 2, 2, 2\\)"):
    _init_shapes(UNet(channels=16, num_groups=8), (28, 28, 1))
  with pytest.raises(ValueError, match="conditioning"):
    _init_shapes(UNet(channels=16, num_groups=8, conditioning="film"), (32, 32, 3))
  with pytest.raises(ValueError, match="labels is None"):
    _init_shapes(UNet(channels=16, num_groups=8, num_classes=10), (32, 32, 3))


def test_cifar10_parameter_count_matches_ddpm():
  model = UNet(
    channels=128,
    channel_mults=(1, 2, 2, 2),
    num_res_blocks=2,
    attention_resolutions=(16,),
    dropout=0.1,
    conditioning="add",
  )
  count = count_params(model, (1, 32, 32, 3))
  print(f"DDPM CIFAR-10 U-Net parameters: {count:,}")
  assert abs(count - 35.7e6) / 35.7e6 < 0.005
  # The official TF model (and its PyTorch ports) have exactly this many.
  assert count == 35_746_307


def test_no_transposed_convolution():
  model = _tiny_unet()
  x, t, labels = _inputs()
  variables = _host_params(model, x, t, labels, train=False)
  jaxpr = jax.make_jaxpr(lambda v: model.apply(v, x, t, labels, train=False))(variables)
  convs = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "conv_general_dilated"]
  # A transposed conv lowers to a conv with input (lhs) dilation; there must be none.
  assert convs and all(set(e.params["lhs_dilation"]) == {1} for e in convs)


def test_upsample_is_nearest_neighbour():
  x = _normal((2, 3, 4, 5))
  out = Upsample(with_conv=False).apply({}, x)
  np.testing.assert_array_equal(out, np.repeat(np.repeat(x, 2, axis=1), 2, axis=2))


def test_untrained_unet_outputs_exactly_zero():
  model = _tiny_unet()
  x, t, labels = _inputs()
  # The zero-initialised output conv makes the output exactly zero, whatever the input.
  out, variables = _real_init(model, x, t, labels)
  assert out.shape == x.shape and out.dtype == jnp.float32
  np.testing.assert_array_equal(out, np.zeros(x.shape))
  # Glorot-initialised layers are not zero: the invariant comes from the last layers only.
  assert float(np.std(variables["params"]["conv_in"]["kernel"])) > 0.1


@pytest.mark.parametrize("conditioning", UNET_CONDITIONINGS)
def test_unet_depends_on_t_and_labels(conditioning):
  model = _tiny_unet(conditioning)
  x, t, labels = _inputs()
  apply = _eval_apply(model)
  variables = _host_params(model, x, t, labels, train=False)
  out = apply(variables, x, t, labels)
  assert np.all(np.isfinite(out)) and float(np.std(out)) > 1e-3
  assert _max_diff(apply(variables, x, t + 1, labels), out) > 1e-4
  assert _max_diff(apply(variables, x, t, (labels + 1) % CLASSES), out) > 1e-4
  # Label `num_classes` is the null label of classifier-free guidance: a distinct row.
  null = np.full_like(labels, CLASSES)
  assert _max_diff(apply(variables, x, t, null), out) > 1e-4


def test_unet_eval_is_per_example():
  model = _tiny_unet()
  x, t, labels = _inputs()
  variables = _host_params(model, x, t, labels, train=False)
  apply = _eval_apply(model)
  out = apply(variables, x, t, labels)
  # Change every example except 0 (input, timestep and label): example 0 is untouched.
  x2, t2, labels2 = x.copy(), t.copy(), labels.copy()
  x2[1:], t2[1:], labels2[1:] = 3.0 * _normal(x[1:].shape, seed=9), t[1:] + 7, CLASSES
  out2 = apply(variables, x2, t2, labels2)
  np.testing.assert_allclose(out2[0], out[0], rtol=1e-5, atol=1e-6)
  assert _max_diff(out2[1:], out[1:]) > 1e-3


def test_unet_dropout():
  model = _tiny_unet()
  x, t, labels = _inputs()
  variables = _host_params(model, x, t, labels, train=False)
  run = _train_apply_and_grad(model)

  def train_apply(seed):
    return run(variables, x, t, labels, _key(seed))[0]

  a, b = train_apply(1), train_apply(2)
  assert _max_diff(a, b) > 1e-4
  np.testing.assert_array_equal(train_apply(1), a)
  apply = _eval_apply(model)
  eval_out = apply(variables, x, t, labels)
  np.testing.assert_array_equal(apply(variables, x, t, labels), eval_out)
  assert _max_diff(eval_out, a) > 1e-4


def test_attention_is_permutation_equivariant():
  block = AttentionBlock(num_groups=4)
  x = _normal((2, 4, 4, 8))
  variables = _host_params(block, x)
  apply = _jit(block.apply)
  perm = np.random.default_rng(0).permutation(16)

  def permute(a):
    return a.reshape(2, 16, 8)[:, perm].reshape(a.shape)

  out = np.asarray(apply(variables, x))
  assert _max_diff(out, x) > 1e-2  # the random output projection makes attention visible
  np.testing.assert_allclose(apply(variables, permute(x)), permute(out), atol=1e-5)
  # And it mixes positions: changing one position changes the output at others.
  x2 = x.copy()
  x2[:, 0, 0] += 1.0
  out2 = apply(variables, x2)
  assert _max_diff(out2[:, 1:], out[:, 1:]) > 1e-4


def test_unet_gradient_reaches_every_parameter():
  model = _tiny_unet()
  x, t, labels = _inputs()
  variables = _host_params(model, x, t, labels, train=False)
  _, grads = _train_apply_and_grad(model)(variables, x, t, labels, _key(0))
  grads = jax.tree_util.tree_leaves_with_path(grads["params"])
  assert len(grads) == len(jax.tree.leaves(variables["params"]))
  for path, g in grads:
    g = np.asarray(g)
    assert np.all(np.isfinite(g)) and np.max(np.abs(g)) > 0.0, jax.tree_util.keystr(path)


@pytest.mark.parametrize("num_classes", [0, CLASSES])
def test_mlp_denoiser(num_classes):
  model = MLPDenoiser(hidden_size=32, num_layers=2, num_classes=num_classes, time_embed_dim=16)
  _, t, labels = _inputs()
  x = _normal((BATCH, 2), seed=5)
  y = labels if num_classes else None
  out, variables = _real_init(model, x, t, y)
  assert out.shape == (BATCH, 2) and out.dtype == jnp.float32
  np.testing.assert_array_equal(out, np.zeros(out.shape))  # zero-initialised head
  assert count_params(model, x.shape) == sum(v.size for v in jax.tree.leaves(variables))

  apply = _eval_apply(model)
  variables = _host_params(model, x, t, y, train=False)
  out = apply(variables, x, t, y)
  assert np.all(np.isfinite(out))
  assert _max_diff(apply(variables, x, t + 1, y), out) > 1e-4
  x2 = x.copy()
  x2[1:] *= -2.0
  out2 = apply(variables, x2, t, y)
  np.testing.assert_allclose(out2[0], out[0], rtol=1e-5, atol=1e-6)  # per example
  if num_classes:
    assert _max_diff(apply(variables, x, t, (labels + 1) % num_classes), out) > 1e-4
    assert _max_diff(apply(variables, x, t, np.full_like(labels, num_classes)), out) > 1e-4
    assert variables["params"]["label_embed"]["embedding"].shape == (num_classes + 1, 32)

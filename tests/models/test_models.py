"""Shape and behaviour tests for genjax.models."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.models import (
  ACTIVATIONS,
  Autoencoder,
  ConvDecoder,
  ConvEncoder,
  MLPDecoder,
  MLPEncoder,
  SubPixelUpsample,
  build_autoencoder,
  depth_to_space,
  one_hot_concat,
)
from genjax.models import autoencoder as autoencoder_mod
from genjax.models import conv as conv_mod
from genjax.models import layers as layers_mod
from genjax.models import mlp as mlp_mod

SHAPES = [(28, 28, 1), (8, 8, 1), (32, 32, 3)]
LATENT = 3
BATCH = 4


def _inputs(shape, seed=0):
  kx, ky = jax.random.split(jax.random.key(seed))
  x = jax.random.uniform(kx, (BATCH, *shape), minval=0.05, maxval=1.0)
  labels = jax.random.randint(ky, (BATCH,), 0, 10)
  return x, labels


def _build(arch, shape, num_classes, num_params, stochastic=True):
  return build_autoencoder(
    arch,
    data_shape=shape,
    latent_dim=LATENT,
    hidden_sizes=(16,),
    conv_channels=(4, 8),
    activation="relu",
    num_params=num_params,
    num_classes=num_classes,
    stochastic=stochastic,
  )


def _assert_finite(*arrays):
  for a in arrays:
    assert bool(jnp.all(jnp.isfinite(a)))


def _random_params(module, *args):
  """Params with `module.init`'s structure/dtypes, filled from a host RNG.

  XLA-CPU compiles the threefry initializers of a whole model slowly (seconds per
  model), so shape tests trace `init` abstractly and only compile `apply`.
  """
  shapes = jax.eval_shape(module.init, jax.random.key(0), *args)
  rng = np.random.default_rng(0)
  return jax.tree_util.tree_map(
    lambda s: jnp.asarray(0.2 * rng.standard_normal(s.shape), s.dtype), shapes
  ), shapes


def _forward_all(model, params, x, y, z):
  # One jit per model: eager op-by-op dispatch compiles every op separately.
  @jax.jit
  def run(params, x, y, z):
    mean, log_var = model.apply(params, x, y, method=Autoencoder.encode)
    out = model.apply(params, z, y, method=Autoencoder.decode)
    return mean, log_var, out, model.apply(params, x, y)

  return run(params, x, y, z)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("arch", ["mlp", "conv"])
@pytest.mark.parametrize("num_classes", [0, 10])
def test_autoencoder_shapes(arch, shape, num_classes):
  num_params = 2 if num_classes else 1
  model = _build(arch, shape, num_classes, num_params)
  x, labels = _inputs(shape)
  y = labels if num_classes else None
  z = jax.random.normal(jax.random.key(2), (BATCH, LATENT))
  params, shapes = _random_params(model, x, y)
  assert set(shapes["params"]) == {"encoder", "decoder"}
  assert all(s.dtype == jnp.float32 for s in jax.tree_util.tree_leaves(shapes))
  mean, log_var, out, recon = _forward_all(model, params, x, y, z)
  assert mean.shape == log_var.shape == (BATCH, LATENT)
  assert out.shape == recon.shape == (BATCH, *shape, num_params)
  _assert_finite(mean, log_var, out, recon)


def test_real_init_is_finite_float32():
  model = _build("mlp", (8, 8, 1), 10, 2)
  x, labels = _inputs((8, 8, 1))
  params = jax.jit(model.init)(jax.random.key(0), x, labels)
  leaves = jax.tree_util.tree_leaves(params)
  assert all(p.dtype == jnp.float32 for p in leaves)
  _assert_finite(*leaves)
  # Zero-initialised log-variance bias: the initial posterior variance is ~1.
  np.testing.assert_array_equal(params["params"]["encoder"]["heads"]["log_var"]["bias"], 0.0)


@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_deterministic_encoder(arch):
  shape = (8, 8, 1)
  model = _build(arch, shape, 0, num_params=1, stochastic=False)
  x, _ = _inputs(shape)
  params, _ = _random_params(model, x)
  code = jax.jit(lambda p, x: model.apply(p, x, method=Autoencoder.encode))(params, x)
  assert code.shape == (BATCH, LATENT)
  assert jax.jit(model.apply)(params, x).shape == (BATCH, *shape, 1)
  _assert_finite(code)


@pytest.mark.parametrize(
  "encoder,decoder",
  [
    (MLPEncoder((8,), LATENT, num_classes=10), MLPDecoder((8,), (8, 8, 1), 2, num_classes=10)),
    (
      ConvEncoder((4,), LATENT, 8, num_classes=10),
      ConvDecoder((4,), (8, 8, 1), 2, 8, num_classes=10),
    ),
  ],
)
def test_modules_directly_and_label_dependence(encoder, decoder):
  x, labels = _inputs((8, 8, 1))
  enc_params, _ = _random_params(encoder, x, labels)
  enc_apply = jax.jit(encoder.apply)
  mean, log_var = enc_apply(enc_params, x, labels)
  assert mean.shape == log_var.shape == (BATCH, LATENT)
  # The encoder must see the label too.
  mean_other, _ = enc_apply(enc_params, x, (labels + 1) % 10)
  assert not np.allclose(mean, mean_other)

  z = jax.random.normal(jax.random.key(1), (BATCH, LATENT))
  dec_params, _ = _random_params(decoder, z, labels)
  dec_apply = jax.jit(decoder.apply)
  out_a = dec_apply(dec_params, z, jnp.zeros(BATCH, jnp.int32))
  out_b = dec_apply(dec_params, z, jnp.full(BATCH, 7, jnp.int32))
  assert out_a.shape == (BATCH, 8, 8, 1, 2)
  _assert_finite(out_a, out_b)
  assert float(jnp.max(jnp.abs(out_a - out_b))) > 1e-4


def test_conditional_requires_labels():
  dec = MLPDecoder((8,), (8, 8, 1), num_classes=10)
  with pytest.raises(ValueError, match="labels"):
    dec.init(jax.random.key(0), jnp.ones((2, LATENT)))


def _numpy_depth_to_space(x, r):
  b, h, w, d = x.shape
  c = d // (r * r)
  out = np.empty((b, h * r, w * r, c), x.dtype)
  for i in range(h):
    for j in range(w):
      for di in range(r):
        for dj in range(r):
          start = (di * r + dj) * c
          out[:, i * r + di, j * r + dj, :] = x[:, i, j, start : start + c]
  return out


def _space_to_depth(y, r):
  b, hh, ww, c = y.shape
  y = y.reshape(b, hh // r, r, ww // r, r, c).transpose(0, 1, 3, 2, 4, 5)
  return y.reshape(b, hh // r, ww // r, r * r * c)


@pytest.mark.parametrize("r", [2, 3])
def test_depth_to_space_reference_and_inverse(r):
  x = np.random.default_rng(0).normal(size=(2, 3, 4, 5 * r * r)).astype(np.float32)
  y = np.asarray(depth_to_space(jnp.asarray(x), r))
  np.testing.assert_array_equal(y, _numpy_depth_to_space(x, r))
  np.testing.assert_array_equal(_space_to_depth(y, r), x)


def test_subpixel_upsample_shape():
  x = jax.random.normal(jax.random.key(0), (2, 7, 5, 3))
  layer = SubPixelUpsample(6)
  params, _ = _random_params(layer, x)
  y = jax.jit(layer.apply)(params, x)
  assert y.shape == (2, 14, 10, 6)
  _assert_finite(y)


def test_one_hot_concat():
  x = jax.random.normal(jax.random.key(0), (3, 4))
  out = one_hot_concat(x, jnp.array([0, 2, 1]), 3)
  np.testing.assert_array_equal(out[:, :4], x)
  np.testing.assert_array_equal(out[:, 4:], np.eye(3)[[0, 2, 1]])


def test_indivisible_shape_raises():
  with pytest.raises(ValueError, match=r"\(30, 30, 1\)"):
    ConvDecoder(channels=(8, 4), output_shape=(30, 30, 1))
  with pytest.raises(ValueError, match=r"\(30, 30, 1\)"):
    _build("conv", (30, 30, 1), 0, 1)


def test_unknown_architecture_and_activation():
  with pytest.raises(ValueError, match="architecture.*'mlp'"):
    _build("resnet", (8, 8, 1), 0, 1)
  with pytest.raises(ValueError, match="activation.*relu"):
    build_autoencoder("mlp", data_shape=(8, 8, 1), latent_dim=2, activation="swish9")
  assert set(ACTIVATIONS) == {"relu", "gelu", "tanh", "silu", "leaky_relu", "softplus"}


def _conv_eqns(jaxpr):
  """Yields every conv_general_dilated equation, recursing into sub-jaxprs."""
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "conv_general_dilated":
      yield eqn
    for value in eqn.params.values():
      inner = getattr(value, "jaxpr", None)  # ClosedJaxpr -> Jaxpr
      if inner is not None:
        yield from _conv_eqns(getattr(inner, "jaxpr", inner))


def test_no_conv_transpose():
  for mod in (layers_mod, mlp_mod, conv_mod, autoencoder_mod):
    assert "nn.ConvTranspose" not in inspect.getsource(mod)
  model = _build("conv", (28, 28, 1), 0, 1)
  x, _ = _inputs((28, 28, 1))
  params = jax.eval_shape(model.init, jax.random.key(0), x)
  paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(params)]
  assert paths and not any("ConvTranspose" in p for p in paths)
  # A transposed conv lowers to a conv with input (lhs) dilation: none allowed.
  convs = list(_conv_eqns(jax.make_jaxpr(model.apply)(params, x).jaxpr))
  assert convs
  for eqn in convs:
    assert all(d == 1 for d in eqn.params["lhs_dilation"])

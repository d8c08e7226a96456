"""Shape, normalisation, sharding and conditioning tests for genjax.models.gan."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P
from model_params import host_params as _host_params

from genjax.models import SubPixelUpsample
from genjax.models.gan import (
  GAN_ARCHITECTURES,
  DCGANDiscriminator,
  DCGANGenerator,
  MLPDiscriminator,
  MLPGenerator,
  build_gan,
  dcgan_geometry,
)

BATCH = 4
LATENT = 8
CLASSES = 10
WIDTH = 8  # DCGAN base_channels in tests: compile time, not capacity, matters here.


def _latents(n=BATCH, seed=0):
  kz, ky = jax.random.split(jax.random.key(seed))
  return jax.random.normal(kz, (n, LATENT)), jax.random.randint(ky, (n,), 0, CLASSES)


def _images(shape, n=BATCH, seed=1):
  return jax.random.uniform(jax.random.key(seed), (n, *shape), minval=-1.0, maxval=1.0)


def _count(variables):
  return sum(math.prod(p.shape) for p in jax.tree_util.tree_leaves(variables["params"]))


def _assert_finite(*arrays):
  for a in arrays:
    assert bool(jnp.all(jnp.isfinite(a)))


def _eval_apply(module):
  return jax.jit(lambda v, x, y: module.apply(v, x, y, train=False))


def _assert_label_dependence(apply, variables, inputs):
  out_a = apply(variables, inputs, jnp.zeros(inputs.shape[0], jnp.int32))
  out_b = apply(variables, inputs, jnp.full(inputs.shape[0], 7, jnp.int32))
  _assert_finite(out_a, out_b)
  assert float(jnp.max(jnp.abs(out_a - out_b))) > 1e-4


def _check_pair(gen, disc, num_classes):
  """G's samples and D's logits: shapes, finite values, label dependence; returns the samples."""
  z, labels = _latents()
  y = labels if num_classes else None
  g_vars = _host_params(gen, z, y)
  x = _eval_apply(gen)(g_vars, z, y)
  d_vars = _host_params(disc, x, y)
  logits = _eval_apply(disc)(d_vars, x, y)
  assert logits.shape == (BATCH,)
  _assert_finite(x, logits)
  if num_classes:
    _assert_label_dependence(_eval_apply(gen), g_vars, z)
    _assert_label_dependence(_eval_apply(disc), d_vars, x)
  return x


@pytest.mark.parametrize(
  "num_classes,conditioning", [(0, "projection"), (10, "projection"), (10, "concat")]
)
def test_mlp_shapes_and_conditioning(num_classes, conditioning):
  gen = MLPGenerator(2, (16, 16), num_classes=num_classes)
  disc = MLPDiscriminator((16, 16), num_classes=num_classes, conditioning=conditioning)
  x = _check_pair(gen, disc, num_classes)
  assert x.shape == (BATCH, 2)


@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 3)])
@pytest.mark.parametrize(
  "num_classes,conditioning,embed_dim",
  [(0, "projection", 50), (10, "projection", 50), (10, "concat", 0)],
)
def test_dcgan_shapes_range_and_conditioning(shape, num_classes, conditioning, embed_dim):
  gen = DCGANGenerator(shape, WIDTH, num_classes, label_embed_dim=embed_dim)
  disc = DCGANDiscriminator(WIDTH, num_classes, conditioning)
  x = _check_pair(gen, disc, num_classes)
  assert x.shape == (BATCH, *shape)
  # tanh output; not saturated to a constant either.
  assert float(jnp.max(jnp.abs(x))) <= 1.0 and float(jnp.std(x)) > 1e-3


@pytest.mark.parametrize("shape,sides", [((28, 28, 1), [14, 28]), ((32, 32, 3), [8, 16, 32])])
def test_no_conv_transpose_and_resolution_doubles(shape, sides):
  gen = DCGANGenerator(shape, WIDTH)
  z, _ = _latents()
  g_vars = _host_params(gen, z)
  paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(g_vars)]
  assert paths and not any("ConvTranspose" in p for p in paths)
  # A transposed conv lowers to a conv with input (lhs) dilation; there must be none.
  jaxpr = jax.make_jaxpr(lambda v, z: gen.apply(v, z, train=False))(g_vars, z)
  convs = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "conv_general_dilated"]
  assert convs and all(set(e.params["lhs_dilation"]) == {1} for e in convs)

  def is_upsample(module, _):
    return isinstance(module, SubPixelUpsample)

  _, state = gen.apply(
    g_vars, z, train=False, capture_intermediates=is_upsample, mutable=["intermediates"]
  )
  stages = state["intermediates"]
  outs = [stages[f"up{i}"]["__call__"][0] for i in range(len(sides))]
  assert [o.shape[1:3] for o in outs] == [(s, s) for s in sides]
  assert dcgan_geometry(shape) == (sides[0] // 2, len(sides))


def _models_with_batchnorm(axis_name=None):
  """(module, inputs) pairs of every GAN module that uses BatchNorm."""
  z, _ = _latents(32, seed=3)
  return [
    (DCGANGenerator((28, 28, 1), WIDTH, axis_name=axis_name), z),
    (DCGANDiscriminator(WIDTH, axis_name=axis_name), _images((28, 28, 1), 32)),
    (MLPGenerator(2, (16, 16), batch_norm=True, axis_name=axis_name), z),
    (MLPDiscriminator((16, 16), norm="batch", axis_name=axis_name), _images((2,), 32)),
  ]


@pytest.mark.parametrize("index", range(4))
def test_batchnorm_train_updates_stats_and_eval_is_per_example(index):
  module, inputs = _models_with_batchnorm()[index]
  inputs = inputs[:BATCH]
  variables = _host_params(module, inputs)

  @jax.jit
  def run(variables, inputs):
    train_out, state = module.apply(variables, inputs, train=True, mutable=["batch_stats"])
    return train_out, state, module.apply(variables, inputs, train=False)

  train_out, state, eval_out = run(variables, inputs)
  assert jax.tree.structure(state["batch_stats"]) == jax.tree.structure(variables["batch_stats"])
  moved = jax.tree.map(
    lambda a, b: float(jnp.max(jnp.abs(a - b))), state["batch_stats"], variables["batch_stats"]
  )
  assert all(m > 1e-6 for m in jax.tree.leaves(moved))
  assert not np.allclose(train_out, eval_out)
  # Perturb example 1 only: eval mode leaves example 0 alone, train mode does not.
  perturbed = inputs.at[1].multiply(-3.0)
  train_p, _, eval_p = run(variables, perturbed)
  np.testing.assert_allclose(eval_p[0], eval_out[0], rtol=1e-5, atol=1e-6)
  assert float(jnp.max(jnp.abs(train_p[0] - train_out[0]))) > 1e-4


def _sharded_vs_whole(index, mapper):
  """Runs model `index` on 4 shards of 8 (synced over "data") and on one batch of 32."""
  synced, inputs = _models_with_batchnorm("data")[index]
  whole, _ = _models_with_batchnorm(None)[index]
  variables = _host_params(whole, inputs)

  def per_shard(shard):
    return synced.apply(variables, shard, train=True, mutable=["batch_stats"])

  shards = inputs.reshape(4, 8, *inputs.shape[1:])
  out, state = mapper(per_shard)(shards)
  ref_out, ref_state = jax.jit(lambda v, x: whole.apply(v, x, train=True, mutable=["batch_stats"]))(
    variables, inputs
  )
  np.testing.assert_allclose(out.reshape(ref_out.shape), ref_out, rtol=1e-4, atol=1e-5)
  return state, ref_state


@pytest.mark.parametrize("index", range(4))
def test_batch_stats_synced_over_vmapped_shards(index):
  state, ref_state = _sharded_vs_whole(index, lambda f: jax.jit(jax.vmap(f, axis_name="data")))
  for got, want in zip(jax.tree.leaves(state), jax.tree.leaves(ref_state)):
    for shard in got:  # every shard holds the same, global, statistics
      np.testing.assert_allclose(shard, want, rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(jax.device_count() < 4, reason="needs 4 (virtual) devices")
def test_batch_stats_synced_under_shard_map():
  mesh = Mesh(np.asarray(jax.devices()[:4]), ("data",))

  def mapper(per_shard):
    # Each device sees [1, 8, ...]; stats come back replicated (pmean'd inside BatchNorm).
    mapped = jax.shard_map(
      lambda s: per_shard(s[0]),
      mesh=mesh,
      in_specs=P("data"),
      out_specs=(P("data"), P()),
      check_vma=False,
    )
    return jax.jit(mapped)

  state, ref_state = _sharded_vs_whole(1, mapper)
  for got, want in zip(jax.tree.leaves(state), jax.tree.leaves(ref_state)):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("norm", ["none", "layer", "spectral", "batch"])
def test_discriminator_per_example_independence(norm):
  disc = DCGANDiscriminator(WIDTH, CLASSES, norm=norm)
  x = _images((28, 28, 1), 3)
  labels = jnp.arange(3)
  variables = _host_params(disc, x, labels)
  jac = jax.jit(jax.jacrev(lambda x: disc.apply(variables, x, labels, mutable=["batch_stats"])[0]))(
    x
  )
  assert jac.shape == (3, 3, 28, 28, 1)
  cross = jnp.abs(jac.reshape(3, 3, -1)).max(-1) * (1 - jnp.eye(3))
  own = jnp.abs(jac.reshape(3, 3, -1)).max(-1) * jnp.eye(3)
  assert float(own.min(where=jnp.eye(3, dtype=bool), initial=1.0)) > 0
  if norm == "batch":
    assert float(cross.max()) > 1e-6  # why WGAN-GP cannot use BatchNorm in D
  else:
    np.testing.assert_array_equal(cross, 0.0)


def _power_iterate(module, variables, *inputs, steps=300):
  """Training-mode calls on fixed weights: the stored power-iteration state converges."""
  apply = jax.jit(lambda v: module.apply(v, *inputs, train=True, mutable=["batch_stats"])[1])
  for _ in range(steps):
    variables = dict(variables, **apply(variables))
  return variables


def _spectral_state(variables):
  """``{kernel path: stored sigma}`` from SpectralNorm's ``.../<layer>/<param>/sigma`` entries."""
  flat = jax.tree_util.tree_flatten_with_path(variables["batch_stats"])[0]
  names = ["/".join(str(getattr(k, "key", k)) for k in path) for path, _ in flat]
  return {n.rsplit("/", 1)[0]: float(v) for n, (_, v) in zip(names, flat) if n.endswith("/sigma")}


def test_spectral_norm_sigma_is_the_largest_singular_value():
  """The stored sigma of every D weight is the top singular value numpy's SVD finds."""
  disc = DCGANDiscriminator(WIDTH, CLASSES, norm="spectral")
  x, labels = _images((28, 28, 1)), jnp.arange(BATCH)
  variables = _power_iterate(disc, _host_params(disc, x, labels, train=False), x, labels)
  sigmas = _spectral_state(variables)
  # conv0..conv2 kernels, the head's linear kernel and its class embedding.
  assert len(sigmas) == 5, sorted(sigmas)
  for path, sigma in sigmas.items():
    layer, param = path.split("/")[-2:]
    params = variables["params"]
    weight = params["head"][layer][param] if "head" in path else params[layer][param]
    matrix = np.asarray(weight).reshape(-1, weight.shape[-1])
    np.testing.assert_allclose(sigma, np.linalg.svd(matrix, compute_uv=False)[0], rtol=1e-3)


def test_spectral_norm_mlp_discriminator_is_1_lipschitz():
  """Every Dense has operator norm 1 and LeakyReLU is 1-Lipschitz, so |D(x) - D(y)| <= |x - y|."""
  disc = MLPDiscriminator((32, 32), norm="spectral")
  x = jax.random.normal(jax.random.key(0), (256, 2))
  variables = _power_iterate(disc, _host_params(disc, x, None, train=False, kernel_scale=3.0), x)
  y = x + 0.1 * jax.random.normal(jax.random.key(1), x.shape)

  def stretch(module):  # Largest |D(x) - D(y)| / |x - y| over the pairs.
    out = _eval_apply(module)(variables, jnp.concatenate([x, y]), None)
    return float(np.max(np.abs(out[:256] - out[256:]) / np.linalg.norm(x - y, axis=-1)))

  assert stretch(disc) <= 1.0 + 1e-3
  # Without the normalisation the same weights stretch far more than 1.
  assert stretch(MLPDiscriminator((32, 32), norm="none")) > 2.0
  # Eval mode leaves the power-iteration state alone.
  again = disc.apply(variables, x, None, train=False, mutable=["batch_stats"])[1]
  jax.tree.map(np.testing.assert_array_equal, again["batch_stats"], variables["batch_stats"])


def test_build_gan_and_param_counts():
  assert GAN_ARCHITECTURES == ("mlp", "dcgan")
  gen, disc = build_gan("mlp", data_shape=(2,), latent_dim=2, num_classes=3, axis_name="data")
  assert isinstance(gen, MLPGenerator) and isinstance(disc, MLPDiscriminator)
  assert disc.norm == "none" and disc.axis_name == gen.axis_name == "data"
  gen, disc = build_gan("dcgan", data_shape=(28, 28, 1), latent_dim=100, base_channels=64)
  assert isinstance(gen, DCGANGenerator) and disc.norm == "batch"
  g_count = _count(jax.eval_shape(gen.init, jax.random.key(0), jnp.zeros((2, 100))))
  d_count = _count(jax.eval_shape(disc.init, jax.random.key(0), jnp.zeros((2, 28, 28, 1))))
  # G: project 100 -> 7x7x256 (1.27M), 3x3 sub-pixel convs 256->4*128 (1.18M),
  # 128->4*64 (0.30M), 64->1; D: 4x4 convs 1->64->128->256 + linear on 4x4x256.
  assert g_count == 2_731_201  # no bias before BatchNorm
  assert d_count == 661_313


@pytest.mark.parametrize(
  "architecture,shape,match",
  [
    ("dcgan", (28, 32, 1), "H == W"),
    ("dcgan", (64, 64, 3), "H == W"),
    ("dcgan", (2,), "H == W"),
    ("mlp", (28, 28, 1), "1-D"),
    ("conv", (28, 28, 1), "architecture"),
  ],
)
def test_build_gan_rejects_bad_shapes(architecture, shape, match):
  with pytest.raises(ValueError, match=match):
    build_gan(architecture, data_shape=shape, latent_dim=LATENT)


@pytest.mark.parametrize("architecture,shape", [("mlp", (2,)), ("dcgan", (28, 28, 1))])
def test_infogan_code_head_and_code_input(architecture, shape):
  gen, disc = build_gan(
    architecture, data_shape=shape, latent_dim=LATENT, base_channels=WIDTH, code_classes=5
  )
  z, _ = _latents()
  codes = jnp.array([0, 1, 4, 2], jnp.int32)
  g_vars = gen.init(jax.random.key(0), z, codes, train=False)
  # The code is G's label input: changing it changes the sample.
  apply = _eval_apply(gen)
  out_a, out_b = apply(g_vars, z, codes), apply(g_vars, z, (codes + 1) % 5)
  _assert_finite(out_a, out_b)
  assert out_a.shape == (BATCH, *shape) and float(jnp.max(jnp.abs(out_a - out_b))) > 1e-4
  x = _images(shape)
  d_vars = disc.init(jax.random.key(1), x, None, train=False)
  logits, code_logits = _eval_apply(disc)(d_vars, x, None)
  assert logits.shape == (BATCH,) and code_logits.shape == (BATCH, 5)
  _assert_finite(logits, code_logits)
  # Q is one linear map of D's last features: D's own logit does not change
  # when the head is dropped from the same weights.
  plain = disc.clone(code_classes=0)
  params = {k: v for k, v in d_vars["params"].items() if k != "code_head"}
  np.testing.assert_allclose(_eval_apply(plain)(dict(d_vars, params=params), x, None), logits)
  with pytest.raises(ValueError, match="code_classes"):
    build_gan(architecture, data_shape=shape, latent_dim=LATENT, num_classes=3, code_classes=5)


def test_bad_options_and_missing_labels():
  with pytest.raises(ValueError, match="norm"):
    build_gan("dcgan", data_shape=(28, 28, 1), latent_dim=LATENT, d_norm="group")
  with pytest.raises(ValueError, match="conditioning"):
    MLPDiscriminator(conditioning="film")
  gen = MLPGenerator(num_classes=CLASSES)
  with pytest.raises(ValueError, match="labels is None"):
    jax.eval_shape(gen.init, jax.random.key(0), jnp.zeros((2, LATENT)))

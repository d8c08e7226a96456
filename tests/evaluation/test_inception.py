"""FID Inception-v3 port: architecture vs torch names/shapes, weight I/O, pooling, resize."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.evaluation import inception as inc


def _basic(name, cin, cout, kh, kw):
  """torch state_dict shapes of one BasicConv2d (bias-free conv + BatchNorm2d)."""
  return {
    f"{name}.conv.weight": (cout, cin, kh, kw),
    f"{name}.bn.weight": (cout,),
    f"{name}.bn.bias": (cout,),
    f"{name}.bn.running_mean": (cout,),
    f"{name}.bn.running_var": (cout,),
  }


def _torch_shapes():
  """pytorch-fid's fid_inception_v3() state_dict shapes, written out from torchvision's code."""
  layers = [
    ("Conv2d_1a_3x3", 3, 32, 3, 3),
    ("Conv2d_2a_3x3", 32, 32, 3, 3),
    ("Conv2d_2b_3x3", 32, 64, 3, 3),
    ("Conv2d_3b_1x1", 64, 80, 1, 1),
    ("Conv2d_4a_3x3", 80, 192, 3, 3),
  ]
  for name, cin, pool in (("Mixed_5b", 192, 32), ("Mixed_5c", 256, 64), ("Mixed_5d", 288, 64)):
    layers += [
      (f"{name}.branch1x1", cin, 64, 1, 1),
      (f"{name}.branch5x5_1", cin, 48, 1, 1),
      (f"{name}.branch5x5_2", 48, 64, 5, 5),
      (f"{name}.branch3x3dbl_1", cin, 64, 1, 1),
      (f"{name}.branch3x3dbl_2", 64, 96, 3, 3),
      (f"{name}.branch3x3dbl_3", 96, 96, 3, 3),
      (f"{name}.branch_pool", cin, pool, 1, 1),
    ]
  layers += [
    ("Mixed_6a.branch3x3", 288, 384, 3, 3),
    ("Mixed_6a.branch3x3dbl_1", 288, 64, 1, 1),
    ("Mixed_6a.branch3x3dbl_2", 64, 96, 3, 3),
    ("Mixed_6a.branch3x3dbl_3", 96, 96, 3, 3),
  ]
  for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
    layers += [
      (f"{name}.branch1x1", 768, 192, 1, 1),
      (f"{name}.branch7x7_1", 768, c7, 1, 1),
      (f"{name}.branch7x7_2", c7, c7, 1, 7),
      (f"{name}.branch7x7_3", c7, 192, 7, 1),
      (f"{name}.branch7x7dbl_1", 768, c7, 1, 1),
      (f"{name}.branch7x7dbl_2", c7, c7, 7, 1),
      (f"{name}.branch7x7dbl_3", c7, c7, 1, 7),
      (f"{name}.branch7x7dbl_4", c7, c7, 7, 1),
      (f"{name}.branch7x7dbl_5", c7, 192, 1, 7),
      (f"{name}.branch_pool", 768, 192, 1, 1),
    ]
  layers += [
    ("Mixed_7a.branch3x3_1", 768, 192, 1, 1),
    ("Mixed_7a.branch3x3_2", 192, 320, 3, 3),
    ("Mixed_7a.branch7x7x3_1", 768, 192, 1, 1),
    ("Mixed_7a.branch7x7x3_2", 192, 192, 1, 7),
    ("Mixed_7a.branch7x7x3_3", 192, 192, 7, 1),
    ("Mixed_7a.branch7x7x3_4", 192, 192, 3, 3),
  ]
  for name, cin in (("Mixed_7b", 1280), ("Mixed_7c", 2048)):
    layers += [
      (f"{name}.branch1x1", cin, 320, 1, 1),
      (f"{name}.branch3x3_1", cin, 384, 1, 1),
      (f"{name}.branch3x3_2a", 384, 384, 1, 3),
      (f"{name}.branch3x3_2b", 384, 384, 3, 1),
      (f"{name}.branch3x3dbl_1", cin, 448, 1, 1),
      (f"{name}.branch3x3dbl_2", 448, 384, 3, 3),
      (f"{name}.branch3x3dbl_3a", 384, 384, 1, 3),
      (f"{name}.branch3x3dbl_3b", 384, 384, 3, 1),
      (f"{name}.branch_pool", cin, 192, 1, 1),
    ]
  shapes = {}
  for layer in layers:
    shapes.update(_basic(*layer))
  shapes["fc.weight"] = (1008, 2048)
  shapes["fc.bias"] = (1008,)
  return shapes


def _shape_tree():
  x = jax.ShapeDtypeStruct((1, 299, 299, 3), jnp.float32)
  return jax.eval_shape(inc.FIDInceptionV3().init, jax.random.key(0), x)


def _random_state_dict(seed=0):
  """Random torch-layout weights that keep activations O(1) through all 94 conv blocks."""
  rng = np.random.default_rng(seed)
  state = {}
  for name, shape in _torch_shapes().items():
    if name.endswith("weight") and len(shape) > 1:
      # He init over fan-in (all dims but the output one) so relus don't vanish.
      fan_in = int(np.prod(shape[1:]))
      array = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
    elif name.endswith(("bn.weight", "running_var")):
      array = rng.uniform(0.5, 1.5, shape)
    else:
      array = rng.normal(0.0, 0.1, shape)
    state[name] = array.astype(np.float32)
  return state


@pytest.fixture(scope="module", name="state_dict")
def _state_dict_fixture():
  return _random_state_dict()


@pytest.fixture(scope="module", name="weights_file")
def _weights_file_fixture(state_dict, tmp_path_factory):
  path = tmp_path_factory.mktemp("inception") / "inception_fid.npz"
  variables = inc.torch_to_flax(state_dict)
  np.savez(path, **inc.flax_to_torch(variables))
  return path, variables


@pytest.fixture(scope="module", name="images")
def _images_fixture():
  return jax.random.uniform(jax.random.key(1), (2, 28, 28, 1))


def test_state_dict_names_and_shapes_match_pytorch_fid():
  got = {k: tuple(v.shape) for k, v in inc.flax_to_torch(_shape_tree()).items()}
  want = _torch_shapes()
  assert sorted(set(got) ^ set(want)) == []
  assert got == want
  assert got["Conv2d_1a_3x3.conv.weight"] == (32, 3, 3, 3)
  assert got["Mixed_6b.branch7x7_2.conv.weight"] == (128, 128, 1, 7)
  assert got["Mixed_7c.branch3x3dbl_3a.conv.weight"] == (384, 384, 1, 3)
  assert got["fc.weight"] == (1008, 2048)
  assert len([k for k in got if k.endswith(".conv.weight")]) == 94


def test_parameter_count():
  tree = _shape_tree()
  count = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(tree["params"]))
  # torchvision's inception_v3 has 27,161,264 parameters; without AuxLogits (3,326,696)
  # and with 1008 instead of 1000 classes (+8 * 2049) that is pytorch-fid's net.
  assert count == 27_161_264 - 3_326_696 + 8 * 2049 == 23_850_960
  stats = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(tree["batch_stats"]))
  assert stats == 2 * sum(v[0] for k, v in _torch_shapes().items() if k.endswith("bn.weight"))


def test_torch_flax_roundtrip_is_exact(state_dict):
  variables = inc.torch_to_flax(state_dict)
  # Layout: OIHW -> HWIO for convs, [out, in] -> [in, out] for fc.
  kernel = variables["params"]["Mixed_7c"]["branch3x3dbl_3a"]["conv"]["kernel"]
  assert kernel.shape == (1, 3, 384, 384)
  np.testing.assert_array_equal(
    kernel, np.transpose(state_dict["Mixed_7c.branch3x3dbl_3a.conv.weight"], (2, 3, 1, 0))
  )
  np.testing.assert_array_equal(variables["params"]["fc"]["kernel"], state_dict["fc.weight"].T)
  np.testing.assert_array_equal(
    variables["batch_stats"]["Mixed_5b"]["branch_pool"]["bn"]["var"],
    state_dict["Mixed_5b.branch_pool.bn.running_var"],
  )
  back = inc.flax_to_torch(variables)
  assert set(back) == set(state_dict)
  for name, array in state_dict.items():
    np.testing.assert_array_equal(back[name], array, err_msg=name)


def test_torch_to_flax_reports_bad_keys(state_dict):
  bad = dict(state_dict)
  del bad["Mixed_6a.branch3x3.bn.running_mean"]
  bad["AuxLogits.fc.weight"] = np.zeros((1008, 768), np.float32)
  bad["fc.weight"] = np.zeros((1000, 2048), np.float32)
  bad["Conv2d_1a_3x3.bn.num_batches_tracked"] = np.array(0)  # Torch buffer, ignored.
  with pytest.raises(ValueError) as err:
    inc.torch_to_flax(bad)
  message = str(err.value)
  assert "missing 1 keys: Mixed_6a.branch3x3.bn.running_mean" in message
  assert "unexpected 1 keys: AuxLogits.fc.weight" in message
  assert "fc.weight: got (1000, 2048), expected (1008, 2048)" in message
  assert "num_batches_tracked" not in message


def test_load_missing_file_explains_how_to_get_weights(tmp_path):
  path = tmp_path / "nope" / "inception_fid.npz"
  with pytest.raises(FileNotFoundError) as err:
    inc.load(path)
  message = str(err.value)
  assert str(path) in message
  assert inc.WEIGHTS_URL in message
  assert (
    "python -m genjax.evaluation.inception --convert "
    "pt_inception-2015-12-05-6726825d.pth --out inception_fid.npz" in message
  )
  assert "config.eval.inception_weights" in message and "GENJAX_INCEPTION_WEIGHTS" in message
  with pytest.raises(FileNotFoundError, match="not configured"):
    inc.load(None)


def test_weights_path(monkeypatch, tmp_path):
  monkeypatch.delenv("GENJAX_INCEPTION_WEIGHTS", raising=False)
  assert inc.weights_path("") is None
  assert inc.weights_path(None) is None
  monkeypatch.setenv("GENJAX_INCEPTION_WEIGHTS", str(tmp_path / "env.npz"))
  assert inc.weights_path("") == tmp_path / "env.npz"
  # An explicit config value wins over the environment.
  assert inc.weights_path(str(tmp_path / "cfg.npz")) == tmp_path / "cfg.npz"


def test_loaded_features_match_module(weights_file, images):
  path, variables = weights_file
  net = inc.load(path)
  assert net.name == "inception" and net.feature_dim == 2048
  assert net.info["path"] == str(path) and len(net.info["sha256"]) == 64
  assert net.key == "inception-" + net.info["sha256"][:8]
  features, logits = net.apply(images)
  assert features.shape == (2, 2048) and logits.shape == (2, 1008)
  assert np.all(np.isfinite(features)) and np.all(np.isfinite(logits))
  # Random weights should still give non-degenerate, input-dependent features.
  assert float(jnp.std(features)) > 1e-3
  assert not np.allclose(features[0], features[1])
  want_features, want_logits = jax.jit(inc.FIDInceptionV3().apply)(variables, images)
  np.testing.assert_allclose(features, want_features, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(logits, want_logits, rtol=1e-5, atol=1e-6)
  # Grey input is the same image repeated to RGB.
  rgb_features, rgb_logits = net.apply(jnp.repeat(images, 3, axis=-1))
  np.testing.assert_allclose(rgb_features, features, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(rgb_logits, logits, rtol=1e-5, atol=1e-6)


def test_save_npz_checks_before_writing(state_dict, tmp_path):
  with pytest.raises(ValueError, match="missing 1 keys: fc.bias"):
    inc.save_npz({k: v for k, v in state_dict.items() if k != "fc.bias"}, tmp_path / "bad.npz")
  assert not (tmp_path / "bad.npz").exists()
  with_counter = {**state_dict, "Conv2d_1a_3x3.bn.num_batches_tracked": np.array(7)}
  out = inc.save_npz(with_counter, tmp_path / "good")
  assert out == tmp_path / "good.npz"
  with np.load(out) as data:
    assert set(data.files) == set(state_dict)


def test_cli_needs_torch(tmp_path):
  try:
    import torch  # noqa: F401
  except ImportError:
    pass
  else:
    pytest.skip("torch is installed")
  src = tmp_path / inc.PTH_NAME
  src.write_bytes(b"")
  with pytest.raises(SystemExit, match="pip install torch"):
    inc.main(["--convert", str(src), "--out", str(tmp_path / "out.npz")])
  assert not (tmp_path / "out.npz").exists()


def test_avg_pool_excludes_padding():
  x = np.random.default_rng(0).normal(size=(2, 4, 5, 3)).astype(np.float32)
  want = np.zeros_like(x)
  for i in range(4):
    for j in range(5):
      window = x[:, max(i - 1, 0) : i + 2, max(j - 1, 0) : j + 2, :]
      want[:, i, j, :] = window.mean(axis=(1, 2))
  np.testing.assert_allclose(inc.avg_pool_exclude_pad(jnp.asarray(x)), want, rtol=1e-6)


def test_max_pool_pads_with_minus_infinity():
  x = -1.0 - np.arange(2 * 3 * 3 * 1, dtype=np.float32).reshape(2, 3, 3, 1)
  got = np.asarray(inc._max_pool_3x3(jnp.asarray(x), stride=1, padding=1))
  # With zero padding every border output would be 0; torch pads with -inf.
  assert got.shape == x.shape and np.all(got < 0)
  assert got[0, 0, 0, 0] == max(x[0, :2, :2, 0].ravel())


def _torch_bilinear_1d(n_in, n_out):
  """Interpolation matrix of torch's bilinear resize (align_corners=False) along one axis."""
  matrix = np.zeros((n_out, n_in))
  scale = n_in / n_out
  for o in range(n_out):
    src = max((o + 0.5) * scale - 0.5, 0.0)
    lo = min(int(np.floor(src)), n_in - 1)
    hi = min(lo + 1, n_in - 1)
    frac = src - lo
    matrix[o, lo] += 1.0 - frac
    matrix[o, hi] += frac
  return matrix


@pytest.mark.parametrize("size", [(5, 7), (13, 9)])
def test_resize_matches_torch_bilinear(size):
  x = np.random.default_rng(0).uniform(size=(1, *size, 3)).astype(np.float32)
  got = np.asarray(inc.preprocess(jnp.asarray(x), size=11, normalize=False))
  rows, cols = _torch_bilinear_1d(size[0], 11), _torch_bilinear_1d(size[1], 11)
  want = np.einsum("oh,bhwc,pw->bopc", rows, x, cols)
  np.testing.assert_allclose(got, want, atol=1e-5)
  normalized = np.asarray(inc.preprocess(jnp.asarray(x), size=11))
  np.testing.assert_allclose(normalized, 2.0 * want - 1.0, atol=1e-5)


def test_basic_conv_matches_torch_semantics():
  """An asymmetric-kernel BasicConv2d vs a brute-force NCHW cross-correlation with torch weights."""
  rng = np.random.default_rng(0)
  cin, cout, (kh, kw), (ph, pw) = 3, 4, (1, 3), (0, 1)
  weight = rng.normal(size=(cout, cin, kh, kw)).astype(np.float32)
  gamma, beta = rng.uniform(0.5, 1.5, cout), rng.normal(size=cout)
  mean, var = rng.normal(size=cout), rng.uniform(0.5, 1.5, cout)
  x = rng.normal(size=(2, 5, 6, cin)).astype(np.float32)
  block = inc.BasicConv2d(cout, (kh, kw), padding=(ph, pw))
  variables = {
    "params": {
      "conv": {"kernel": inc._to_flax_layout("kernel", weight)},
      "bn": {"scale": gamma, "bias": beta},
    },
    "batch_stats": {"bn": {"mean": mean, "var": var}},
  }
  got = np.asarray(block.apply(variables, jnp.asarray(x)))
  nchw = np.pad(np.transpose(x, (0, 3, 1, 2)), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
  out = np.zeros((2, cout, 5, 6))
  for i in range(5):
    for j in range(6):
      out[:, :, i, j] = np.einsum("bchw,ochw->bo", nchw[:, :, i : i + kh, j : j + kw], weight)
  out = (out - mean[:, None, None]) / np.sqrt(var[:, None, None] + 1e-3)
  out = np.maximum(out * gamma[:, None, None] + beta[:, None, None], 0.0)
  np.testing.assert_allclose(got, np.transpose(out, (0, 2, 3, 1)), rtol=1e-4, atol=1e-4)

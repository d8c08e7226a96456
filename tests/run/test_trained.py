"""genjax.load / Model / export / genjax.sample: trained models used outside the loop."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from conftest import REPO, shrink

import genjax
from genjax import config as config_lib
from genjax.core import random as genjax_random
from genjax.data import sources
from genjax.run import loop, trained, writers


def _vae_config():
  c = shrink(config_lib.load_config(REPO / "experiments/configs/vae_digits.py"), num_steps=30)
  c.evals = ""
  c.eval.periodic_examples = 64
  c.eval.periodic_nll_samples = 4
  return c


@pytest.fixture(scope="module", name="vae_run")
def _vae_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("vae")
  loop.train_and_evaluate(_vae_config(), workdir)
  return workdir


@pytest.fixture(scope="module", name="ddpm_run")
def _ddpm_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("ddpm")
  c = shrink(config_lib.load_config(REPO / "experiments/configs/ddpm_mnist.py"))
  c.data.name, c.evals = "digits", ""
  c.unet.channel_mults, c.unet.attention_resolutions = (1,), ()
  loop.train_and_evaluate(c, workdir)
  return workdir


def _run(module, *flags):
  return subprocess.run(
    [sys.executable, "-m", module, *flags], capture_output=True, text=True, timeout=600
  )


def test_two_lines_from_a_run_to_samples(vae_run):
  model = genjax.load(vae_run)
  x = model.sample(20, seed=3)
  assert x.shape == (20, 8, 8, 1) and x.dtype == np.float32
  assert 0.0 <= x.min() and x.max() <= 1.0
  assert model.step == 30 and "vae on digits, step 30" in repr(model)


def test_sample_i_depends_only_on_seed_and_i(vae_run):
  model = genjax.load(vae_run)
  x = model.sample(21, seed=5)
  np.testing.assert_array_equal(model.sample(21, seed=5), x)
  # Other batch shapes round matrix products differently: equal to float precision.
  np.testing.assert_allclose(model.sample(21, seed=5, batch_size=8), x, atol=1e-6)
  np.testing.assert_allclose(model.sample(7, seed=5), x[:7], atol=1e-6)
  assert np.abs(model.sample(21, seed=6) - x).max() > 0.1
  # The rule itself, on one device without the batching: keys from (seed, i).
  key = genjax_random.stream_key(5, genjax_random.SAMPLE_STREAM)
  keys = genjax_random.example_keys(key, jax.numpy.arange(21))
  labels = jax.numpy.arange(21) % 10
  direct = model.family.to_unit(model.family.sample(model.params, keys, labels))
  np.testing.assert_allclose(x, np.asarray(direct), atol=1e-6)


def test_scores_are_the_evaluation_numbers(vae_run):
  """The logged final evaluation: the first 64 test digits, seed 0, 4 importance samples."""
  model = genjax.load(vae_run)
  test = sources.load_dataset("digits").test
  scores = model.scores(test["image"][:64], test["label"][:64], num_samples=4, seed=0)
  logged = writers.records_at(vae_run / "metrics.jsonl", 30)
  for name in ("nll", "elbo", "kl"):
    assert scores[name].shape == (64,)
    assert scores[name].mean() == pytest.approx(logged[f"eval/{name}"], rel=1e-5)
  np.testing.assert_array_equal(model.log_prob(test["image"][:64], num_samples=4), -scores["nll"])


def test_encode_decode_reconstruct_interpolate(vae_run):
  model = genjax.load(vae_run)
  images = sources.load_dataset("digits").test["image"][:6]
  z = model.encode(images)
  assert z.shape == (6, 8)
  np.testing.assert_allclose(model.encode(images / 255.0), z)  # [0, 1] floats read as uint8.
  r = model.reconstruct(images)
  np.testing.assert_allclose(r, model.decode(z), atol=1e-6)
  assert r.shape == (6, 8, 8, 1) and 0 <= r.min() and r.max() <= 1
  path = model.interpolate(images[:3], images[3:], num=5)
  assert path.shape == (3, 5, 8, 8, 1)
  np.testing.assert_allclose(path[:, 0], r[:3], atol=1e-5)
  # Dynamic binarization draws per position: images[3:] first in their own batch.
  np.testing.assert_allclose(path[:, -1], model.reconstruct(images[3:]), atol=1e-5)


def test_export_loads_in_a_fresh_process_and_samples_identically(vae_run, tmp_path):
  model = genjax.load(vae_run)
  bundle = model.export(tmp_path / "bundle")
  assert not (bundle / "checkpoints").exists()
  meta = json.loads((bundle / "bundle.json").read_text())
  assert meta["step"] == 30 and meta["metrics"]["eval/nll"] > 0
  assert "genjax.load(" in (bundle / "README.md").read_text()
  script = (
    "import sys, numpy as np, genjax;"
    "m = genjax.load(sys.argv[1]); np.save(sys.argv[2], m.sample(16, seed=2))"
  )
  out = tmp_path / "fresh.npy"
  result = subprocess.run(
    [sys.executable, "-c", script, str(bundle), str(out)],
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 0, result.stderr[-2000:]
  np.testing.assert_array_equal(np.load(out), model.sample(16, seed=2))
  # Parameters only: the bundle is smaller than a checkpoint with Adam's two moments.
  saved = sum(
    os.path.getsize(f) for f in (vae_run / "checkpoints" / "30").rglob("*") if f.is_file()
  )
  assert os.path.getsize(bundle / "params.msgpack") < saved / 2


def test_diffusion_sampler_options(ddpm_run):
  model = genjax.load(ddpm_run)
  ddim = model.sample(8, seed=1)
  assert ddim.shape == (8, 8, 8, 1)
  np.testing.assert_array_equal(model.sample(8, seed=1, sampler="ddim"), ddim)
  assert np.abs(model.sample(8, seed=1, sampler="ddpm") - ddim).max() > 0
  assert np.abs(model.sample(8, seed=1, sample_steps=3) - ddim).max() > 0
  with pytest.raises(ValueError, match="unknown option 'temperature'.*'sampler'"):
    model.sample(2, temperature=0.5)
  with pytest.raises(ValueError, match="config.diffusion.sampler='euler'"):
    model.sample(2, sampler="euler")
  with pytest.raises(ValueError, match="no encoder"):
    model.encode(np.zeros((1, 8, 8, 1), np.uint8))


@pytest.mark.parametrize("run", ["vae_run", "ddpm_run"])
def test_sample_cli_writes_a_thousand_pngs_the_same_for_a_seed(run, request, tmp_path):
  workdir = request.getfixturevalue(run)
  first = _run("genjax.sample", f"--workdir={workdir}", "--num=1000", f"--out={tmp_path / 'a'}")
  assert first.returncode == 0, first.stderr[-2000:]
  pngs = sorted((tmp_path / "a").glob("0*.png"))
  assert len(pngs) == 1000 and (tmp_path / "a" / "grid.png").exists()
  # The same seed and batch shapes: the first 100 again, byte for byte.
  again = _run("genjax.sample", f"--workdir={workdir}", "--num=100", f"--out={tmp_path / 'b'}")
  assert again.returncode == 0, again.stderr[-2000:]
  for png in pngs[:100]:
    assert png.read_bytes() == (tmp_path / "b" / png.name).read_bytes()
  npz = _run(
    "genjax.sample", f"--workdir={workdir}", "--num=10", "--format=npz", f"--out={tmp_path / 'c'}"
  )
  assert npz.returncode == 0, npz.stderr[-2000:]
  images = np.load(tmp_path / "c" / "samples.npz")["images"]
  assert images.shape == (10, 8, 8, 1) and images.dtype == np.uint8


def test_sample_and_export_errors_are_one_line(vae_run, tmp_path):
  cases = [
    ("genjax.sample", [f"--workdir={tmp_path / 'nope'}", f"--out={tmp_path}"], "neither a run"),
    (
      "genjax.sample",
      [f"--workdir={vae_run}", f"--out={tmp_path}", "--set=foo=1"],
      "unknown option 'foo'",
    ),
    (
      "genjax.sample",
      [f"--workdir={vae_run}", f"--out={tmp_path}", "--label=12"],
      "labels must lie in [0, 10)",
    ),
    ("genjax.export", [f"--workdir={vae_run}", f"--out={vae_run}"], "is a run directory"),
  ]
  for module, flags, message in cases:
    result = _run(module, *flags)
    assert result.returncode == 2, (flags, result.stderr[-2000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr, lines


def test_load_names_what_is_wrong(tmp_path, vae_run):
  with pytest.raises(FileNotFoundError, match="neither a run directory"):
    trained.load(tmp_path)
  with pytest.raises(FileNotFoundError, match="checkpoint 7 .* cannot be read"):
    trained.load(vae_run, step=7)

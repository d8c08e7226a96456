"""A 2-step end-to-end run of every experiment config, and the evaluation CLI."""

import json
import math
import pathlib
import subprocess
import sys

import pytest

from genjax import config as config_lib
from genjax.evaluation import suite
from genjax.run import loop

REPO = pathlib.Path(__file__).resolve().parents[1]
# CIFAR-10 cannot be downloaded here: tests/test_cifar10_mock.py runs that config on mock data.
MOCK_ONLY_CONFIGS = ("wgan_gp_cifar10", "ddpm_cifar10")
CONFIGS = sorted(
  p for p in (REPO / "experiments" / "configs").glob("*.py") if p.stem not in MOCK_ONLY_CONFIGS
)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_runs_two_steps_end_to_end(path, tmp_path, shrink):
  config = shrink(config_lib.load_config(path))
  first_stages = {"vqvae_prior": "vqvae_mnist.py", "vqvae2_prior": "vqvae2_mnist.py"}
  if config.family in first_stages:  # A second stage needs a first-stage run to point at.
    first = shrink(config_lib.load_config(path.with_name(first_stages[config.family])))
    loop.train_and_evaluate(first, tmp_path / "first_stage")
    config.prior.vqvae_workdir = str(tmp_path / "first_stage")
    tmp_path = tmp_path / "second_stage"
  summary = loop.train_and_evaluate(config, tmp_path)
  assert math.isfinite(summary["train/loss"])
  records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in records if "train/loss" in r] == [1, 2]
  evals = [r for r in records if any(k.startswith("eval/") for k in r)]
  assert evals and evals[-1]["eval/num_examples"] == 16
  assert all(v is not None for v in evals[-1].values())  # finite
  for name in suite.parse_evals(config.evals):
    if name in ("fid_lenet", "label_accuracy"):
      assert {f"eval/{name}", f"eval/{name}_floor"} <= set(evals[-1])
  if config.evals:
    assert evals[-1]["eval/num_generated"] == 160
  assert (tmp_path / "checkpoints" / "2").is_dir()
  assert any((tmp_path / "tensorboard").iterdir())
  pictures = sorted(p.name for p in (tmp_path / "images").glob("*.png"))
  if config.family in ("gan", "cgan"):
    expected = {"samples.png", "discriminator.png", "samples_over_modes.png"}
    if config.data.name not in ("ring8", "grid25"):
      expected = {"samples_by_class.png" if config.family == "cgan" else "samples.png"}
      expected.add("interpolations.png")
      if config.gan.code_classes:
        expected.add("samples_by_code.png")
    assert expected <= set(pictures)
    return
  if config.family == "ddpm":
    expected = {"samples.png", "trajectory.png"}
    if config.data.name not in ("ring8", "grid25", "moons"):
      expected = {"trajectory.png", "forward.png", "samplers.png"}
      expected |= (
        {"samples_by_class.png", "guidance.png"} if config.model.conditional else {"samples.png"}
      )
    assert expected <= set(pictures)
    return
  if config.family == "vdm":
    assert "samples.png" in pictures
    terms = ("prior_bpd", "recon_bpd", "diffusion_bpd")
    assert {"eval/bits_per_dim", *(f"eval/{k}" for k in terms)} <= set(evals[-1])
    return
  if config.family == "vqvae":
    assert {"reconstructions.png", "codebook_usage.png"} <= set(pictures)
    assert {"eval/perplexity", "eval/codes_used", "eval/mse"} <= set(evals[-1])
    return
  if config.family == "vqvae2":
    assert {"reconstructions.png", "codebook_usage_top.png", "codebook_usage_bottom.png"} <= set(
      pictures
    )
    assert {"eval/perplexity_top", "eval/codes_used_bottom", "eval/mse"} <= set(evals[-1])
    return
  if config.family == "vqvae2_prior":
    assert {"samples_by_class.png", "bottom_resamples.png"} <= set(pictures)
    assert {"eval/nll", "eval/nll_top", "eval/nll_bottom"} <= set(evals[-1])
    return
  if config.family in ("pixelcnn", "vqvae_prior"):
    expected = {"samples_by_class.png" if config.model.conditional else "samples.png"}
    expected.add("completions.png")
    if config.family == "vqvae_prior":
      expected.add("samples_uniform_prior.png")
    assert expected <= set(pictures)
    assert "eval/nll" in evals[-1]
    return
  assert "reconstructions.png" in pictures and "interpolations.png" in pictures
  if config.family in ("vae", "iwae", "hvae", "hiwae"):
    assert {"samples.png", "traversals.png"} <= set(pictures)
  if config.family in ("hvae", "hiwae"):
    assert {"eval/kl_1", "eval/kl_2", "eval/active_units_1", "eval/active_units_2"} <= set(
      evals[-1]
    )
  if config.family == "cvae":
    assert "samples_by_class.png" in pictures
  if config.family == "dae":
    assert "denoising.png" in pictures


@pytest.fixture(scope="module")
def trained_digits_vae(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("vae_digits")
  c = config_lib.load_config(REPO / "experiments/configs/vae_digits.py")
  c.train.num_steps = 300
  c.train.eval_every = 0
  c.train.progress_bar = False
  c.train.num_devices = 2  # As in `shrink`; the evaluation CLI reads it from the saved config.
  loop.train_and_evaluate(c, workdir)
  return workdir


@pytest.mark.xdist_group("trained_digits_vae")  # One worker trains the shared run.
def test_evaluate_cli_prints_test_metrics(trained_digits_vae):
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "genjax.evaluate",
      f"--workdir={trained_digits_vae}",
      "--num_samples=200",
      "--num_examples=128",
      "--num_generated=200",
    ],
    capture_output=True,
    text=True,
    cwd=REPO,
    timeout=300,
    check=True,
  )
  metrics = json.loads(result.stdout)
  assert metrics["step"] == 300 and metrics["eval/num_examples"] == 128
  assert metrics["eval/num_samples"] == 200
  # Independent truths: elbo = -(recon + kl); the IWAE estimate of the NLL is
  # a tighter bound than the ELBO, so NLL <= -ELBO.
  assert metrics["eval/elbo"] == pytest.approx(
    -(metrics["eval/recon"] + metrics["eval/kl"]), rel=1e-5
  )
  assert metrics["eval/kl"] > 0
  assert metrics["eval/nll"] < -metrics["eval/elbo"]
  assert json.loads((trained_digits_vae / "eval.json").read_text()) == metrics
  # Sample metrics, each beside its floor, with the counts and the feature net stated.
  report = metrics["report"]
  assert metrics["eval/num_generated"] == 200 and report["num_generated"] == 200
  assert report["reference"] == "digits test split, first 200 examples"
  assert report["feature_nets"]["lenet"]["test_accuracy"] > 0.95
  # 300 steps of a VAE give blurry digits: measurably worse than real ones.
  assert metrics["eval/fid_lenet"] > metrics["eval/fid_lenet_floor"] > 0
  assert metrics["eval/precision_lenet"] < metrics["eval/precision_lenet_floor"]
  records = [json.loads(x) for x in (trained_digits_vae / "metrics.jsonl").read_text().splitlines()]
  assert records[-1]["step"] == 300 and records[-1]["eval/fid_lenet"] == metrics["eval/fid_lenet"]


@pytest.mark.xdist_group("trained_digits_vae")  # One worker trains the shared run.
def test_nll_estimate_tightens_with_more_samples(trained_digits_vae):
  from genjax.run.evaluation import evaluate_workdir

  nll = [
    evaluate_workdir(trained_digits_vae, num_samples=k, num_examples=128, evals="")["eval/nll"]
    for k in (1, 10, 100)
  ]
  assert nll[0] > nll[1] > nll[2]


def test_evaluate_without_checkpoint_is_a_clear_error(tmp_path):
  result = subprocess.run(
    [sys.executable, "-m", "genjax.evaluate", f"--workdir={tmp_path}"],
    capture_output=True,
    text=True,
    cwd=REPO,
    timeout=120,
  )
  assert result.returncode != 0
  assert "no checkpoint in" in result.stderr

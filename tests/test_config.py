"""Config validation: every bad field is named with its allowed values, before compiling."""

import os
import pathlib
import subprocess
import sys

import jax
import pytest

from genjax import config as config_lib

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "experiments" / "configs").glob("*.py"))


def _base():
  return config_lib.load_config(REPO / "experiments/configs/vae_digits.py")


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_shipped_config_is_valid(path):
  config_lib.validate(config_lib.load_config(path), num_devices=8)


@pytest.mark.parametrize(
  "field, value, expected",
  [
    (
      "family",
      "vea",
      "allowed: ae, cgan, cvae, dae, ddpm, gan, hiwae, hvae, iwae, pixelcnn, vae, vdm, vqvae, "
      "vqvae2, vqvae2_prior, vqvae_prior",
    ),
    ("data.name", "no_such_dataset", "shipped dataset (digits, ring8"),
    ("data.preprocess", "binarise", "allowed:"),
    ("optimizer.name", "adamax2", "allowed: adam, adamw, sgd, rmsprop"),
    ("optimizer.schedule", "step", "allowed: constant, cosine"),
    ("optimizer.learning_rate", 0.0, "must be > 0"),
    ("optimizer.learning_rate", -1e-3, "must be > 0"),
    ("train.batch_size", 0, "must be > 0"),
    ("train.batch_size", 12, "multiple of the 8 devices"),
    ("train.parallel", "dp", "allowed: shard_map, pmap"),
    ("train.num_devices", -1, "must be >= 0"),
    ("train.num_devices", 9, "only 8 devices are available"),
    ("train.ema_decay", 1.0, "must be in [0, 1)"),
    ("model.latent_dim", 0, "must be an integer >= 1"),
    ("model.architecture", "resnet", "allowed: mlp, conv"),
    ("model.likelihood", "poisson", "allowed: bernoulli, discretized_logistic"),
    ("model.activation", "swish2", "allowed:"),
    ("model.hidden_sizes", (64, -1), "positive integers"),
    ("objective.beta", -1.0, "must be >= 0"),
    ("objective.num_samples", 0, "integer >= 1"),
    ("eval.batch_size", 100, "multiple of the 8 devices"),
  ],
)
def test_bad_field_is_named_with_allowed_values(field, value, expected):
  c = _base()
  section, _, name = field.rpartition(".")
  (c[section] if section else c)[name] = value
  with pytest.raises(config_lib.ConfigError) as info:
    config_lib.validate(c, num_devices=8)
  message = str(info.value)
  assert f"config.{field}=" in message
  assert expected in message


def test_num_devices_picks_the_first_devices_and_sets_the_batch_divisor():
  assert jax.device_count() == 8, "run with XLA_FLAGS=--xla_force_host_platform_device_count=8"
  c = _base()
  assert config_lib.select_devices(c) == jax.devices()
  c.train.num_devices, c.train.batch_size, c.eval.batch_size = 2, 6, 10
  assert config_lib.select_devices(c) == jax.devices()[:2]
  config_lib.validate(c)  # 6 and 10 split over 2 devices, not over all 8.
  c.train.num_devices = 0
  with pytest.raises(config_lib.ConfigError, match="multiple of the 8 devices"):
    config_lib.validate(c)
  c.train.num_devices, c.train.distributed = 2, True  # A subset would leave hosts out.
  with pytest.raises(config_lib.ConfigError, match="must be 0 .every device of every host"):
    config_lib.validate(c)
  c.train.num_devices, c.train.distributed = 9, False
  with pytest.raises(
    config_lib.ConfigError, match=r"config.train.num_devices=9: must be 0 \(all\)"
  ):
    config_lib.select_devices(c)


def test_all_errors_reported_at_once():
  c = _base()
  c.family, c.train.batch_size, c.optimizer.learning_rate = "nope", -4, 0.0
  with pytest.raises(config_lib.ConfigError) as info:
    config_lib.validate(c, num_devices=1)
  for field in ("config.family=", "config.train.batch_size=", "config.optimizer.learning_rate="):
    assert field in str(info.value)


def test_likelihood_must_match_data_range():
  c = _base()
  c.data.preprocess = "scale_pm1"  # [-1, 1] data under a Bernoulli decoder.
  with pytest.raises(config_lib.ConfigError, match="config.model.likelihood='bernoulli'"):
    config_lib.validate(c, num_devices=1)


def test_dae_needs_a_corruption():
  c = config_lib.load_config(REPO / "experiments/configs/dae_mnist.py")
  c.objective.corruption = "none"
  with pytest.raises(config_lib.ConfigError, match="family 'dae' needs a corruption"):
    config_lib.validate(c, num_devices=1)


def _launch(*args, tmp_path):
  return subprocess.run(
    [
      sys.executable,
      "-m",
      "genjax.main",
      f"--config={REPO / 'experiments/configs/vae_digits.py'}",
      f"--workdir={tmp_path / 'run'}",
      *args,
    ],
    capture_output=True,
    text=True,
    cwd=REPO,
    timeout=300,
  )


def test_launcher_exits_nonzero_naming_the_field(tmp_path):
  result = _launch("--config.model.latent_dim=0", tmp_path=tmp_path)
  assert result.returncode != 0
  assert "config.model.latent_dim=0: must be an integer >= 1" in result.stderr
  assert not (tmp_path / "run" / "checkpoints").exists()  # Failed before any work.


def test_launcher_rejects_a_misspelt_override(tmp_path):
  result = _launch("--config.train.batchsize=32", tmp_path=tmp_path)
  assert result.returncode != 0
  assert "batchsize" in result.stderr


def test_launcher_reports_a_missing_dataset_with_instructions(tmp_path, monkeypatch):
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "empty_tfds"))
  result = _launch(
    "--config.data.name=fashion_mnist",
    f"--config.data.manual_dir={tmp_path / 'no_raw_files_here'}",
    tmp_path=tmp_path,
  )
  assert result.returncode == 2
  assert "fashion_mnist" in result.stderr and "GENJAX_MANUAL_DIR" in result.stderr
  assert "Traceback" not in result.stderr


def test_conv_model_on_an_incompatible_image_size_is_a_config_error(tmp_path):
  # digits are 8x8: three stride-2 stages need sizes divisible by 8 -> fine; four do not.
  result = _launch(
    "--config.model.architecture=conv", "--config.model.conv_channels=(8,8,8,8)", tmp_path=tmp_path
  )
  assert result.returncode == 2
  assert "(8, 8, 1)" in result.stderr and "Traceback" not in result.stderr


def test_overrides_parse_with_the_fields_type():
  c = config_lib.defaults()
  applied = config_lib.apply_overrides(
    c,
    [
      "diffusion.sampler=ddpm",
      "diffusion.guidance_scale=3",
      "diffusion.sample_steps=20",
      "diffusion.clip_x0=false",
      "diffusion.guidance_scales=0,1.5",
    ],
  )
  assert c.diffusion.sampler == "ddpm" and c.diffusion.sample_steps == 20
  assert c.diffusion.guidance_scale == 3.0 and isinstance(c.diffusion.guidance_scale, float)
  assert c.diffusion.clip_x0 is False and c.diffusion.guidance_scales == (0.0, 1.5)
  assert applied["diffusion.sample_steps"] == 20 and len(applied) == 5


@pytest.mark.parametrize(
  "item, message",
  [
    ("diffusion.nope=1", "diffusion.nope=1"),
    ("diffusion", "field=value"),
    ("diffusion=3", "existing config field"),
    ("diffusion.sample_steps=many", "sample_steps=many"),
    ("diffusion.clip_x0=maybe", "not a boolean"),
  ],
)
def test_bad_overrides_name_the_field(item, message):
  with pytest.raises(config_lib.ConfigError, match=message):
    config_lib.apply_overrides(config_lib.defaults(), [item])


def test_a_setting_the_chosen_optimizer_ignores_is_refused():
  c = _base()
  c.optimizer.name, c.optimizer.weight_decay = "adam", 1e-4
  with pytest.raises(
    config_lib.ConfigError,
    match=r"config.optimizer.weight_decay=0.0001: has no effect unless config.optimizer.name is adamw",
  ):
    config_lib.validate(c, num_devices=1)
  c.optimizer.name = "adamw"  # Where it applies, it is taken.
  config_lib.validate(c, num_devices=1)
  c.optimizer.name, c.optimizer.weight_decay, c.optimizer.nesterov = "adam", 0.0, True
  with pytest.raises(config_lib.ConfigError, match="config.optimizer.nesterov=True: has no effect"):
    config_lib.validate(c, num_devices=1)


def test_an_old_saved_config_with_an_ignored_setting_still_loads():
  saved = _base().to_dict()
  saved["optimizer"]["weight_decay"] = 1e-4  # What every adam run saved before it was refused.
  c = config_lib.complete(saved)
  assert c.optimizer.weight_decay == 0.0
  config_lib.validate(c, num_devices=1)
  saved["optimizer"]["name"] = "adamw"  # Where it had an effect it is kept.
  assert config_lib.complete(saved).optimizer.weight_decay == 1e-4


def test_each_family_owns_its_sections_and_their_rules():
  from genjax.families import FAMILIES

  c = config_lib.defaults()
  owners = {name: cls for cls in FAMILIES.values() for name in cls.sections}
  assert set(owners) == {
    "objective",
    "hvae",
    "gan",
    "diffusion",
    "unet",
    "vdm",
    "vq",
    "vq2",
    "pixelcnn",
    "prior",
  }
  for name, cls in owners.items():
    assert set(c[name]) == set(cls.sections[name]), name
  # A section's rule is checked only when its family is chosen.
  c = _base()
  c.gan.d_steps = 0
  config_lib.validate(c, num_devices=1)
  c.family, c.data.name, c.model.architecture = "gan", "ring8", "mlp"
  c.data.preprocess, c.model.hidden_sizes = "none", (16,)
  with pytest.raises(
    config_lib.ConfigError, match=r"config.gan.d_steps=0: must be an integer >= 1"
  ):
    config_lib.validate(c, num_devices=1)


def test_a_family_narrows_a_common_field():
  c = _base()
  c.model.architecture = "dcgan"  # A GAN architecture: not one an autoencoder builds.
  with pytest.raises(
    config_lib.ConfigError, match=r"config.model.architecture='dcgan': allowed: mlp, conv"
  ):
    config_lib.validate(c, num_devices=1)
  c.seed = -1
  with pytest.raises(config_lib.ConfigError, match=r"config.seed=-1: must be an integer >= 0"):
    config_lib.validate(c, num_devices=1)


def test_a_family_is_built_from_its_own_sections_and_the_common_fields(shrink):
  from genjax.run import experiment

  c = shrink(_base())
  family = experiment.build(c, jax.devices()[:2]).family
  assert set(family.config) == {
    "family",
    "seed",
    "model",
    "optimizer",
    "train",
    "eval",
    "objective",
  }
  assert family.config.objective.to_dict() == c.objective.to_dict()
  c.family = "cvae"  # A variant's preset reaches the family as a field.
  assert config_lib.for_family(config_lib.resolve(c)).model.conditional is True


@pytest.mark.parametrize(
  "args, expected",
  [
    (
      ["--config.train.batchsize=3"],
      '--config.train.batchsize=3: no such config field; did you mean "batch_size"',
    ),
    (["--config.train.batch_size=abc"], "invalid literal for int()"),
    ("missing", "No such file or directory"),
    ("syntax", "invalid syntax"),
    ("no_get_config", "defines no get_config()"),
  ],
)
def test_launcher_reports_a_bad_command_line_in_one_line(args, expected, tmp_path):
  files = {"syntax": "def get_config(:\n", "no_get_config": "x = 1\n"}
  if isinstance(args, str):
    path = tmp_path / f"{args}.py"
    if args in files:
      path.write_text(files[args])
    command = [
      sys.executable,
      "-m",
      "genjax.main",
      f"--config={path}",
      f"--workdir={tmp_path / 'run'}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300)
  else:
    result = _launch(*args, tmp_path=tmp_path)
  assert result.returncode == 2
  assert "Traceback" not in result.stderr
  ours = [line for line in result.stderr.splitlines() if line.startswith("genjax:")]
  assert len(ours) == 1 and expected in ours[0], result.stderr[-2000:]


@pytest.mark.parametrize(
  "overrides, expected",
  [
    (
      ["--config.model.hidden_sizes=()"],
      "config.model.hidden_sizes=(): must be a non-empty sequence",
    ),
    (["--config.optimizer.b1=1.5"], "config.optimizer.b1=1.5: must be in [0, 1)"),
    (
      ["--config.optimizer.warmup_steps=100", "--config.train.num_steps=50"],
      "the warm-up would never end",
    ),
    (["--config.eval.num_images=301"], "the test split of 'digits' has 300 examples"),
    (["--config.seed=-1"], "config.seed=-1: must be an integer >= 0"),
    (["--config.optimizer.eps=-1e-8"], "config.optimizer.eps=-1e-08: must be > 0"),
  ],
)
def test_meaningless_values_are_refused_in_one_line(overrides, expected, tmp_path):
  result = _launch(*overrides, tmp_path=tmp_path)
  assert result.returncode == 2 and "Traceback" not in result.stderr
  assert expected in result.stderr, result.stderr[-2000:]


def test_a_workdir_that_is_a_file_is_refused(tmp_path):
  (tmp_path / "run").write_text("not a directory")
  result = _launch(tmp_path=tmp_path)
  assert result.returncode == 2 and "is a file; give a directory" in result.stderr
  assert "Traceback" not in result.stderr


def test_a_workdir_that_cannot_be_written_is_refused(tmp_path):
  # sysfs refuses new directories even to root, unlike a chmod-ed one.
  workdir = pathlib.Path("/sys/genjax_cannot_write_here")
  try:
    workdir.mkdir()
  except OSError:
    pass
  else:
    workdir.rmdir()
    pytest.skip("/sys accepted a directory here; no read-only place to test with")
  command = [
    sys.executable,
    "-m",
    "genjax.main",
    f"--config={REPO / 'experiments/configs/vae_digits.py'}",
  ]
  result = subprocess.run(
    command + [f"--workdir={workdir}"], capture_output=True, text=True, cwd=REPO, timeout=300
  )
  assert result.returncode == 2 and "Traceback" not in result.stderr
  assert f"--workdir={workdir}: cannot write there" in result.stderr, result.stderr[-2000:]


def _verbosely(how, *args):
  """Runs ``python -m args``, verbose as ``how`` says: None, "--verbose" or "GENJAX_VERBOSE=1"."""
  env = {k: v for k, v in os.environ.items() if k != "GENJAX_VERBOSE"}
  if how == "GENJAX_VERBOSE=1":
    env["GENJAX_VERBOSE"] = "1"
  flags = ["--verbose"] if how == "--verbose" else []
  command = [sys.executable, "-m", *args, *flags]
  result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
  assert result.returncode == 2
  assert ("Traceback" in result.stderr) == (how is not None), result.stderr[-2000:]
  lines = result.stderr.splitlines()
  prefix = {"genjax.main": "genjax: "}.get(args[0], f"{args[0]}: ")
  start = max(i for i, line in enumerate(lines) if line.startswith(prefix))
  return "\n".join(lines[start:])  # The report comes last, after any traceback.


@pytest.mark.parametrize(
  "override, how",
  [
    ("--config.train.batchsize=3", None),
    ("--config.train.batchsize=3", "--verbose"),  # Reported while the flags are parsed,
    ("--config.train.batchsize=3", "GENJAX_VERBOSE=1"),
    ("--config.model.latent_dim=0", "--verbose"),  # and after.
  ],
)
def test_verbose_adds_the_traceback_before_the_one_line(override, how, tmp_path):
  config = f"--config={REPO / 'experiments/configs/vae_digits.py'}"
  workdir = f"--workdir={tmp_path / 'run'}"
  assert override[2:].split("=")[0] in _verbosely(how, "genjax.main", config, workdir, override)


def test_evaluate_is_verbose_too(tmp_path):
  # Its plain one line: tests/run/test_engine.py.
  report = _verbosely("GENJAX_VERBOSE=1", "genjax.evaluate", f"--workdir={tmp_path / 'nowhere'}")
  assert report.startswith("genjax.evaluate: no checkpoint in")


def test_an_old_vae_config_with_an_unused_num_samples_still_loads():
  saved = _base().to_dict()
  saved["objective"].pop("bound")  # Saved before the field existed.
  saved["objective"]["num_samples"] = 5  # Ignored by a vae then; refused now.
  c = config_lib.complete(saved)
  assert c.objective.num_samples == 1
  config_lib.validate(c, num_devices=1)
  saved["family"] = "iwae"  # Where it had an effect, it is kept.
  c = config_lib.complete(saved)
  assert c.objective.num_samples == 5 and c.objective.bound == "iwae"

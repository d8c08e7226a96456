"""Engine behaviour: optimizers, checkpoints kept, NaN guard, restore errors, eval masking."""

import json
import math
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from genjax import config as config_lib
from genjax.core import optim
from genjax.run import checkpoint as checkpoint_lib
from genjax.run import evaluation, experiment, loop, writers

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(name="tiny")
def _tiny_fixture(shrink):
  """A factory of 6-step digits configs; ``section__field=value`` overrides."""

  def tiny(**overrides):
    c = shrink(config_lib.defaults(), num_steps=6)
    c.model.hidden_sizes = (16,)
    c.model.latent_dim = 2
    c.train.log_every = 2
    c.train.checkpoint_every = 2
    c.train.eval_every = 0
    for field, value in overrides.items():
      section, name = field.split("__")
      c[section][name] = value
    return c

  return tiny


@pytest.mark.parametrize(
  "schedule, checks",
  [
    ("constant", {0: 0.0, 10: 1.0, 50: 1.0, 100: 1.0}),  # 10 warm-up steps from 0
    ("cosine", {0: 0.0, 10: 1.0, 55: 0.55, 100: 0.1}),  # half-way: (1 + 0.1) / 2
    ("linear", {0: 0.0, 10: 1.0, 55: 0.55, 100: 0.1}),
  ],
)
def test_schedules_hit_their_anchor_points(schedule, checks):
  c = config_lib.defaults().optimizer
  c.learning_rate, c.schedule, c.warmup_steps, c.end_lr_factor = 1.0, schedule, 10, 0.1
  fn = optim.make_schedule(c, num_steps=100)
  for step, want in checks.items():
    assert float(fn(step)) == pytest.approx(want, abs=1e-6), (schedule, step)


def test_gradient_clipping_bounds_the_update():
  c = config_lib.defaults().optimizer
  c.name, c.learning_rate, c.grad_clip_norm = "sgd", 1.0, 0.5
  tx = optim.make_optimizer(c, num_steps=10)
  grads = {"w": jnp.asarray(np.random.default_rng(0).normal(size=(50,)) * 10, jnp.float32)}
  updates, _ = tx.update(grads, tx.init(grads), grads)
  assert float(optax.tree.norm(updates)) == pytest.approx(0.5, rel=1e-5)


def test_keeps_the_last_n_checkpoints_with_data_position(tmp_path, tiny):
  loop.train_and_evaluate(tiny(train__keep_checkpoints=2), tmp_path)
  kept = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
  assert kept == [4, 6]
  ckpt = checkpoint_lib.Checkpointer(tmp_path / "checkpoints")
  exp = experiment.build(ckpt.restore_config())
  state, data_state, config = ckpt.restore(exp.abstract_state())
  assert int(state.step) == 6 and config["train"]["num_steps"] == 6
  assert data_state["next_index"] == 6  # six batches consumed


def test_restoring_with_an_incompatible_config_names_the_fields(tmp_path, tiny):
  loop.train_and_evaluate(tiny(), tmp_path)
  with pytest.raises(
    checkpoint_lib.CheckpointMismatchError, match=r"model.hidden_sizes: \[16\] -> \[32\]"
  ):
    loop.train_and_evaluate(tiny(model__hidden_sizes=(32,), train__num_steps=8), tmp_path)


def test_diverging_run_stops_and_keeps_the_last_good_checkpoint(tmp_path, tiny):
  config = tiny(
    optimizer__name="sgd", optimizer__learning_rate=1e12, train__num_steps=40, train__log_every=1
  )
  with pytest.raises(FloatingPointError, match="last good checkpoint"):
    loop.train_and_evaluate(config, tmp_path)
  ckpt = checkpoint_lib.Checkpointer(tmp_path / "checkpoints")
  if ckpt.latest_step() is not None:  # Whatever was saved is finite.
    exp = experiment.build(ckpt.restore_config())
    state, _, _ = ckpt.restore(exp.abstract_state())
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(state.params))


def test_eval_padding_and_batch_size_do_not_change_the_result(tmp_path, tiny):
  exp = experiment.build(tiny())
  params = exp.init_state().params
  n = len(exp.dataset.test["label"])  # 300: not a multiple of either batch size
  a = evaluation.evaluate(exp, params, num_examples=0, num_samples=3, batch_size=64)
  b = evaluation.evaluate(exp, params, num_examples=0, num_samples=3, batch_size=16)
  assert a["eval/num_examples"] == b["eval/num_examples"] == n
  for key in ("eval/elbo", "eval/nll", "eval/kl"):
    assert a[key] == pytest.approx(b[key], rel=1e-5)


def test_jsonl_writer_writes_nonfinite_as_null_and_truncates(tmp_path):
  writer = writers.JsonlWriter(tmp_path / "m.jsonl")
  for step in (1, 2, 3):
    writer.write_scalars(step, {"train/loss": float(step), "train/bad": math.nan})
  writer.truncate_after(2)
  records = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
  assert [r["step"] for r in records] == [1, 2]
  assert records[0] == {"step": 1, "train/loss": 1.0, "train/bad": None}


def test_starting_a_finished_run_again_evaluates_without_new_records(tmp_path, tiny):
  first = loop.train_and_evaluate(tiny(), tmp_path)
  lines = (tmp_path / "metrics.jsonl").read_text()
  again = loop.train_and_evaluate(tiny(), tmp_path)
  assert (tmp_path / "metrics.jsonl").read_text() == lines
  assert again["eval/elbo"] == first["eval/elbo"]


def test_checkpointer_round_trips_replicated_state_and_names_a_shape_mismatch(tmp_path):
  mesh = jax.make_mesh((jax.device_count(),), ("d",))
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  state = {
    "w": jax.device_put(jnp.arange(12.0).reshape(3, 4), replicated),
    "step": jax.device_put(jnp.int32(7), replicated),
  }
  ckpt = checkpoint_lib.Checkpointer(tmp_path / "checkpoints", async_save=False)
  ckpt.save(1, state, {"epoch": 2}, config_lib.defaults())
  ckpt.wait()
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)
  restored, data, _ = ckpt.restore(abstract)
  np.testing.assert_array_equal(restored["w"], np.arange(12.0).reshape(3, 4))
  assert int(restored["step"]) == 7 and data == {"epoch": 2}
  wrong = {**abstract, "w": jax.ShapeDtypeStruct((4, 4), jnp.float32)}
  with pytest.raises(ValueError, match=r"\['w'\]: saved float32\[3, 4\], model float32\[4, 4\]"):
    ckpt.restore(wrong)
  ckpt.close()


def test_long_unlogged_stretch_on_eight_cpu_devices_does_not_deadlock(tmp_path):
  # Hundreds of steps dispatched without a host sync once deadlocked XLA's CPU
  # collectives on 8 virtual devices (600 steps: 3 of 3 runs); the loop keeps
  # at most a few steps in flight. In a subprocess with a short rendezvous
  # timeout, so a regression fails in seconds instead of hanging the suite.
  repo = pathlib.Path(__file__).resolve().parents[2]
  env = dict(
    os.environ,
    XLA_FLAGS="--xla_force_host_platform_device_count=8"
    " --xla_cpu_collective_call_terminate_timeout_seconds=30 --xla_backend_optimization_level=0",
  )
  steps = 600
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "genjax.main",
      f"--config={repo / 'experiments/configs/vae_digits.py'}",
      f"--workdir={tmp_path}",
      f"--config.train.num_steps={steps}",
      f"--config.train.log_every={steps}",
      f"--config.train.checkpoint_every={steps}",
      "--config.train.eval_every=0",
      "--config.train.progress_bar=false",
      "--config.eval.periodic_examples=32",
      # The loop is under test: no sample metrics or pictures at the end.
      "--config.evals=",
      "--config.eval.num_images=0",
    ],
    capture_output=True,
    text=True,
    cwd=repo,
    env=env,
    timeout=300,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in logged if "train/loss" in r] == [steps]


def test_logged_norms_match_the_checkpointed_parameters(tiny, tmp_path):
  c = tiny(train__log_every=1, train__checkpoint_every=3, optimizer__name="sgd")
  c.optimizer.learning_rate = 0.1
  loop.train_and_evaluate(c, tmp_path)
  records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  train = {r["step"]: r for r in records if "train/param_norm" in r}
  assert sorted(train) == [1, 2, 3, 4, 5, 6]  # Logged at every step, each once.
  exp = experiment.build(c)
  ckpt = checkpoint_lib.Checkpointer(tmp_path / "checkpoints")
  params = {s: ckpt.restore(exp.abstract_state(), s)[0].params for s in (3, 6)}
  ckpt.close()
  norm = lambda tree: float(
    np.sqrt(sum(np.sum(np.square(x, dtype=np.float64)) for x in jax.tree.leaves(tree)))
  )
  for step in (3, 6):
    assert train[step]["train/param_norm"] == pytest.approx(norm(params[step]), rel=1e-5)
  # Plain SGD: each update is -lr times the gradients; the logged update norm is measured
  # as the difference of two float32 parameter sets.
  moved = jax.tree.map(lambda a, b: np.asarray(b, np.float64) - a, params[3], params[6])
  steps_norm = sum(train[s]["train/update_norm"] for s in (4, 5, 6))
  assert norm(moved) <= steps_norm * (1 + 1e-3)  # Triangle inequality over three updates.
  for s in (4, 5, 6):
    assert train[s]["train/update_norm"] == pytest.approx(
      0.1 * train[s]["train/grad_norm"], rel=1e-3
    )


def test_profile_steps_write_a_trace_after_the_first_log(tiny, tmp_path):
  c = tiny(train__log_every=2, train__profile_steps=2)
  loop.train_and_evaluate(c, tmp_path)
  traces = list((tmp_path / "tensorboard").rglob("*.xplane.pb"))
  assert len(traces) == 1, list((tmp_path / "tensorboard").rglob("*"))
  assert traces[0].stat().st_size > 0


def test_gan_norms_are_logged_per_player(tmp_path, shrink):
  c = shrink(config_lib.load_config(REPO / "experiments/configs/gan_ring8.py"), num_steps=3)
  c.eval.update(periodic_sample_examples=2000, sample_examples=2000)
  c.evals = ""
  loop.train_and_evaluate(c, tmp_path)
  last = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()][-2]
  for player in ("generator", "discriminator"):
    assert last[f"train/{player}_param_norm"] > 0 and last[f"train/{player}_update_norm"] > 0
  assert last["train/g_grad_norm"] > 0 and last["train/d_grad_norm"] > 0


def test_how_often_a_run_logs_does_not_change_its_parameters(tiny, tmp_path):
  states = []
  for log_every in (1, 3):
    workdir = tmp_path / f"log{log_every}"
    c = tiny(train__log_every=log_every, train__checkpoint_every=6)
    loop.train_and_evaluate(c, workdir)
    ckpt = checkpoint_lib.Checkpointer(workdir / "checkpoints")
    states.append(ckpt.restore(experiment.build(c).abstract_state(), 6)[0])
    ckpt.close()
  jax.tree.map(np.testing.assert_array_equal, states[0], states[1])


def test_jsonl_records_are_the_same_where_files_cannot_be_appended(tmp_path):
  texts = []
  for append in (True, False):  # False: how an object store (gs://) is written.
    writer = writers.JsonlWriter(tmp_path / f"append_{append}" / "metrics.jsonl")
    writer._append = append
    for step in (1, 2, 3):
      writer.write_scalars(step, {"train/loss": 1.0 / step, "train/nan": float("nan")})
    writer.truncate_after(2)
    texts.append(writer.path.read_text())
  assert texts[0] == texts[1]
  assert [json.loads(line)["step"] for line in texts[0].splitlines()] == [1, 2]


def test_a_record_cut_short_by_a_kill_is_dropped_on_resume(tmp_path):
  path = tmp_path / "metrics.jsonl"
  path.write_text('{"step": 1, "train/loss": 2.0}\n{"step": 2, "train/loss": 1.5}\n{"step": 3, "tr')
  writers.JsonlWriter(path).truncate_after(2)
  assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 2]


def test_a_run_diverging_before_its_first_checkpoint_says_so(tmp_path, tiny):
  config = tiny(optimizer__name="sgd", optimizer__learning_rate=1e30, train__checkpoint_every=6)
  config.train.log_every = 1
  with pytest.raises(FloatingPointError, match="none was written before step"):
    loop.train_and_evaluate(config, tmp_path)


@pytest.mark.parametrize(
  "flag, expected",
  [("--num_samples=0", "--num_samples=0: must be >= 1"), ("--num_examples=-1", "must be >= 0")],
)
def test_evaluate_refuses_bad_counts_and_missing_runs(tmp_path, flag, expected):
  command = [sys.executable, "-m", "genjax.evaluate", f"--workdir={tmp_path / 'nowhere'}", flag]
  result = subprocess.run(command, capture_output=True, text=True, timeout=300)
  assert result.returncode == 2 and expected in result.stderr and "Traceback" not in result.stderr
  result = subprocess.run(command[:-1], capture_output=True, text=True, timeout=300)
  assert result.returncode == 2 and "no checkpoint in" in result.stderr
  assert not (tmp_path / "nowhere").exists()  # Nothing created where nothing was.

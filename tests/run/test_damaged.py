"""A damaged newest checkpoint is set aside and the run resumes from the one before it."""

import json
import pathlib

import jax
import numpy as np
import pytest

from genjax import config as config_lib
from genjax.run import checkpoint as checkpoint_lib
from genjax.run import experiment, loop


def _config(shrink, num_steps):
  c = shrink(config_lib.defaults(), num_steps=num_steps)
  c.model.update(hidden_sizes=(16,), latent_dim=2)
  c.train.update(log_every=1, checkpoint_every=2, keep_checkpoints=3, eval_every=0)
  c.eval.num_images = 0
  return c


def _largest_file(directory: pathlib.Path) -> pathlib.Path:
  return max((p for p in directory.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


def _truncate(step_dir):
  path = _largest_file(step_dir / "state")
  path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _zero_length(step_dir):
  for path in step_dir.rglob("*"):
    if path.is_file():
      path.write_bytes(b"")


def _garbage_metadata(step_dir):
  for path in step_dir.rglob("*METADATA*"):
    path.write_text("garbage{")


def _no_manifest(step_dir):
  for path in step_dir.rglob("manifest.ocdbt"):
    path.unlink()


def _no_data_position(step_dir):
  for path in sorted((step_dir / "data").rglob("*"), reverse=True):
    path.rmdir() if path.is_dir() else path.unlink()
  (step_dir / "data").rmdir()


def _garbage_config(step_dir):
  for path in (step_dir / "config").rglob("*"):
    if path.is_file():
      path.write_text("{not json")


def _emptied(step_dir):
  for path in sorted(step_dir.rglob("*"), reverse=True):
    path.rmdir() if path.is_dir() else path.unlink()


DAMAGE = [
  _truncate,
  _zero_length,
  _garbage_metadata,
  _no_manifest,
  _no_data_position,
  _garbage_config,
  _emptied,
]


@pytest.fixture(name="reference", scope="module")
def _reference(tmp_path_factory):
  from conftest import shrink

  workdir = tmp_path_factory.mktemp("damaged") / "uninterrupted"
  loop.train_and_evaluate(_config(shrink, 8), workdir)
  return workdir


def _final_state(workdir, config):
  ckpt = checkpoint_lib.Checkpointer(workdir / "checkpoints")
  state = ckpt.restore(experiment.build(config).abstract_state(), 8)[0]
  ckpt.close()
  return state


@pytest.mark.parametrize("damage", DAMAGE, ids=lambda f: f.__name__.strip("_"))
def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(
  damage, reference, tmp_path, shrink
):
  workdir = tmp_path / "run"
  loop.train_and_evaluate(_config(shrink, 6), workdir)  # Checkpoints 2, 4, 6.
  damage(workdir / "checkpoints" / "6")
  config = _config(shrink, 8)
  loop.train_and_evaluate(config, workdir)  # Resumes from 4, replays 5 and 6, goes on to 8.
  assert (workdir / "checkpoints" / "6.damaged").exists()
  jax.tree.map(
    np.testing.assert_array_equal, _final_state(workdir, config), _final_state(reference, config)
  )
  steps = [
    json.loads(line)["step"] for line in (workdir / "metrics.jsonl").read_text().splitlines()
  ]
  train_steps = [s for s in steps if s <= 8]
  assert sorted(set(train_steps)) == list(range(1, 9))


def test_a_changed_experiment_is_not_taken_for_damage(tmp_path, shrink):
  loop.train_and_evaluate(_config(shrink, 4), tmp_path)
  changed = _config(shrink, 6)
  changed.model.hidden_sizes = (32,)
  with pytest.raises(
    checkpoint_lib.CheckpointMismatchError, match=r"model.hidden_sizes: \[16\] -> \[32\]"
  ):
    loop.train_and_evaluate(changed, tmp_path)
  assert not list((tmp_path / "checkpoints").glob("*.damaged"))  # Nothing set aside.


def test_evaluate_skips_a_damaged_newest_checkpoint(tmp_path, shrink):
  from genjax.run.evaluation import evaluate_workdir

  loop.train_and_evaluate(_config(shrink, 6), tmp_path)
  _garbage_config(tmp_path / "checkpoints" / "6")
  scores = evaluate_workdir(tmp_path, num_samples=2, num_examples=32, evals="")
  assert scores["step"] == 4 and np.isfinite(scores["eval/nll"])
  assert list(scores["report"]["damaged_checkpoints_skipped"]) == [6]


def test_a_final_evaluation_lost_to_a_kill_is_recorded_by_the_restart(tmp_path, shrink):
  config = _config(shrink, 4)
  loop.train_and_evaluate(config, tmp_path)
  path = tmp_path / "metrics.jsonl"

  def evals():
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return [r for r in records if any(k.startswith("eval/") for k in r)]

  assert [r["step"] for r in evals()] == [4]
  kept = [line for line in path.read_text().splitlines() if "eval/" not in line]
  path.write_text("".join(line + "\n" for line in kept))  # Killed before the record.
  loop.train_and_evaluate(config, tmp_path)
  loop.train_and_evaluate(config, tmp_path)  # Recorded once, not once per restart.
  assert [r["step"] for r in evals()] == [4]

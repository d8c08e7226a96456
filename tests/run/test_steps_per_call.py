"""``train.steps_per_call``: k steps in one compiled call train exactly as k single steps."""

import json
import pathlib

import chex
import jax
import pytest

from genjax import config as config_lib
from genjax.run import checkpoint as checkpoint_lib
from genjax.run import experiment, loop

CONFIGS = pathlib.Path(__file__).resolve().parents[2] / "experiments" / "configs"


def _calls(start: int, k: int, last: int, actions, logs_at) -> list[tuple[int, int]]:
  """``(first, last)`` step of each call the loop makes from ``start + 1`` on."""
  out, step = [], start
  while step < last:
    n = loop._call_length(step + 1, k, last, actions, logs_at)
    out.append((step + 1, step + n))
    step += n
  return out


@pytest.mark.parametrize("k", [2, 4, 7, 10])
def test_calls_cover_every_step_and_stop_at_every_action(k):
  last = 230
  fired = []
  actions = [
    loop._Every(fired.append, every=25, on=[last]),  # log
    loop._Every(fired.append, on=[100, 200]),  # evaluate
    loop._Every(fired.append, every=40, on=[last]),  # checkpoint
  ]
  logs_at = lambda s: s % 25 == 0 or s == last  # noqa: E731
  calls = _calls(0, k, last, actions, logs_at)
  assert [a for a, _ in calls] == [1] + [b + 1 for _, b in calls[:-1]]  # contiguous
  assert calls[-1][1] == last
  for first, end in calls:
    assert 1 <= end - first + 1 <= k
    inside = range(first, end)  # An action sees the state between calls only.
    assert not any(a.fires(s) for a in actions for s in inside)
    if end > first:
      assert not logs_at(end)  # The update norm needs the step before a logged step.
    if end - first + 1 < k:  # Cut short only where it must be: at an action or before a log.
      assert end == last or any(a.fires(end) for a in actions) or logs_at(end + 1)
  # A run resumed after any call makes the calls an uninterrupted one makes from there.
  for i, (_, end) in enumerate(calls):
    assert _calls(end, k, last, actions, logs_at) == calls[i + 1 :]


def _config(name: str, k: int, parallel: str):
  c = config_lib.load_config(CONFIGS / f"{name}.py")
  c.evals = ""
  c.train.update(num_steps=23, log_every=5, checkpoint_every=10, eval_every=0)
  c.train.update(steps_per_call=k, parallel=parallel, num_devices=2, progress_bar=False)
  c.train.batch_size = 32
  c.eval.update(batch_size=32, periodic_examples=32, periodic_nll_samples=1, num_images=4)
  if name == "gan_ring8":  # Two discriminator minibatches per step: batches [b, 2, ...].
    c.gan.d_steps = 2
  return c


def _final(workdir):
  ckpt = checkpoint_lib.Checkpointer(workdir / "checkpoints")
  exp = experiment.build(ckpt.restore_config())
  state, data_state, _ = ckpt.restore(exp.abstract_state())
  ckpt.close()
  records = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
  return jax.device_get(state), data_state, [r for r in records if "train/loss" in r]


@pytest.mark.parametrize(
  "name,parallel", [("vae_digits", "shard_map"), ("gan_ring8", "shard_map"), ("vae_digits", "pmap")]
)
def test_k_steps_per_call_match_single_steps(name, parallel, tmp_path):
  runs = {}
  for k in (1, 4):
    loop.train_and_evaluate(_config(name, k, parallel), tmp_path / str(k))
    runs[k] = _final(tmp_path / str(k))
  (single, data_1, logs_1), (scanned, data_4, logs_4) = runs[1], runs[4]
  assert int(scanned.step) == 23 and data_4 == data_1
  init = jax.device_get(experiment.build(_config(name, 1, parallel)).init_state())
  moved = jax.tree.map(lambda a, b: abs(a - b).max(), single.params, init.params)
  assert max(jax.tree.leaves(moved)) > 1e-3  # Agreement is not agreement at init.
  # Not bit-identical: the scanned program rounds differently, and Adam magnifies
  # that in elements with tiny second moments; a wrong batch or key moves them by
  # about the learning rate (1e-3) a step.
  chex.assert_trees_all_close(scanned, single, rtol=1e-4, atol=2e-5)
  # The same steps logged, with the same means over each interval.
  assert [r["step"] for r in logs_4] == [r["step"] for r in logs_1] == [5, 10, 15, 20, 23]
  for a, b in zip(logs_4, logs_1):
    for key in ("train/loss", "train/param_norm", "train/update_norm"):
      if key in b:
        assert a[key] == pytest.approx(b[key], rel=1e-4), key


def test_steps_per_call_must_be_positive():
  c = config_lib.load_config(CONFIGS / "vae_digits.py")
  c.train.steps_per_call = 0
  with pytest.raises(config_lib.ConfigError, match="train.steps_per_call"):
    config_lib.validate(c)

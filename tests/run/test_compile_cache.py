"""The persistent compilation cache: a second run reads its programs back and trains the same."""

import json
import pathlib

import jax
import pytest
from jax.experimental.compilation_cache import compilation_cache as jax_cache

from genjax import config as config_lib
from genjax.run import compile_cache, loop

CONFIG = pathlib.Path(__file__).resolve().parents[2] / "experiments" / "configs" / "vae_digits.py"
HIT = "/jax/compilation_cache/cache_hits"


@pytest.fixture(name="jax_cache_settings")
def _jax_cache_settings():
  """Puts JAX's cache settings back as the test session had them."""
  names = (
    "jax_compilation_cache_dir",
    "jax_enable_compilation_cache",
    "jax_persistent_cache_min_compile_time_secs",
  )
  saved = {name: getattr(jax.config, name) for name in names}
  chosen = compile_cache._ours, compile_cache._theirs
  yield
  for name, value in saved.items():
    jax.config.update(name, value)
  compile_cache._ours, compile_cache._theirs = chosen
  jax_cache.reset_cache()


def _run(workdir, cache_setting, shrink):
  """Metrics of a short run, all but its timings."""
  c = shrink(config_lib.load_config(CONFIG), num_steps=3)
  c.evals, c.train.compilation_cache_dir = "", cache_setting
  loop.train_and_evaluate(c, workdir)
  records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  return [{k: v for k, v in r.items() if "per_sec" not in k} for r in records]


def test_a_second_run_reads_its_programs_from_the_cache_and_trains_the_same(
  tmp_path, shrink, monkeypatch, jax_cache_settings
):
  # Every program written, however fast it compiled, so that whether one is
  # kept does not depend on the machine's load.
  monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  cache = tmp_path / "cache"
  uncached = _run(tmp_path / "off", compile_cache.OFF, shrink)
  assert not cache.exists()
  first = _run(tmp_path / "first", str(cache), shrink)
  written = sorted(p.name for p in cache.iterdir())
  assert any("train_step" in name for name in written)
  hits = []

  def listener(event, **kwargs):
    del kwargs
    if event == HIT:
      hits.append(event)

  jax.monitoring.register_event_listener(listener)
  try:
    second = _run(tmp_path / "second", str(cache), shrink)
  finally:
    jax.monitoring.unregister_event_listener(listener)
  assert hits
  # Nothing compiled and written again: every program of the second run was found.
  assert sorted(p.name for p in cache.iterdir()) == written
  # Losses, norms of parameters and updates, evaluation: exactly equal, cached or not.
  assert first == uncached and second == uncached


def test_the_setting_names_the_directory(tmp_path, monkeypatch, jax_cache_settings):
  monkeypatch.setenv("GENJAX_CACHE_DIR", str(tmp_path / "genjax"))
  jax.config.update("jax_compilation_cache_dir", None)
  compile_cache._ours = compile_cache._theirs = None
  assert compile_cache.enable("") == str(tmp_path / "genjax" / "jax")
  assert compile_cache.enable(compile_cache.OFF) is None
  assert not jax.config.jax_enable_compilation_cache
  # A directory JAX was given by its user ($JAX_COMPILATION_CACHE_DIR) is what "" means then.
  theirs = str(tmp_path / "theirs")
  jax.config.update("jax_compilation_cache_dir", theirs)
  mine = str(tmp_path / "mine")
  assert compile_cache.enable(mine) == mine == jax.config.jax_compilation_cache_dir
  assert jax.config.jax_enable_compilation_cache
  assert compile_cache.enable("") == theirs == jax.config.jax_compilation_cache_dir

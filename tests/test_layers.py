"""The import-layer contracts of pyproject.toml (import-linter), and that they can fail."""

import os
import pathlib
import shutil
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
LINT = pathlib.Path(sys.executable).with_name("lint-imports")


def _lint(root: pathlib.Path) -> subprocess.CompletedProcess:
  """Runs the repository's contracts on the package under ``root/src``."""
  env = dict(os.environ, PYTHONPATH=str(root / "src"))
  return subprocess.run(
    [str(LINT), "--config", str(REPO / "pyproject.toml"), "--no-cache"],
    cwd=root,
    env=env,
    capture_output=True,
    text=True,
    timeout=120,
  )


def _copy_package(tmp_path: pathlib.Path) -> pathlib.Path:
  shutil.copytree(
    REPO / "src" / "genjax",
    tmp_path / "src" / "genjax",
    ignore=shutil.ignore_patterns("__pycache__", "weights"),
  )
  return tmp_path / "src" / "genjax"


def test_layers_are_kept():
  result = _lint(REPO)
  assert result.returncode == 0, result.stdout + result.stderr
  assert "0 broken" in result.stdout


def test_an_upward_import_breaks_the_layers(tmp_path):
  package = _copy_package(tmp_path)
  assert _lint(tmp_path).returncode == 0  # The copy itself is clean.
  # The lowest layer reaching up to the training loop.
  random_py = package / "core" / "random.py"
  random_py.write_text(random_py.read_text() + "\nfrom genjax.run import loop  # noqa\n")
  result = _lint(tmp_path)
  assert result.returncode == 1
  assert "genjax layers import only downward BROKEN" in result.stdout
  assert "genjax.core.random -> genjax.run.loop" in result.stdout


def test_flax_in_an_objective_breaks_purity(tmp_path):
  package = _copy_package(tmp_path)
  vae = package / "objectives" / "vae.py"
  vae.write_text(vae.read_text() + "\nimport flax.linen  # noqa\n")
  result = _lint(tmp_path)
  assert result.returncode == 1
  assert "objectives and samplers are pure JAX: no Flax BROKEN" in result.stdout

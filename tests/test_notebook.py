"""The quickstart notebook runs top to bottom (set-up cell skipped, fewer steps)."""

import json
import os
import pathlib
import sys
import types

REPO = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "experiments" / "notebooks" / "quickstart.ipynb"


def test_quickstart_notebook_runs(tmp_path, monkeypatch):
  cells = json.loads(NOTEBOOK.read_text())["cells"]
  code = [
    "".join(c["source"])
    for c in cells
    if c["cell_type"] == "code" and "colab-setup" not in c["metadata"].get("tags", [])
  ]
  assert len(code) >= 5
  monkeypatch.chdir(REPO)
  shown = []  # IPython is Colab's; a stand-in records what the notebook displays.
  display_module = types.ModuleType("IPython.display")
  display_module.Image = lambda filename: pathlib.Path(filename)
  display_module.display = shown.append
  monkeypatch.setitem(sys.modules, "IPython", types.ModuleType("IPython"))
  monkeypatch.setitem(sys.modules, "IPython.display", display_module)
  namespace = {}
  for source in code:
    source = source.replace("NUM_STEPS = 3000", "NUM_STEPS = 30")
    source = source.replace('"runs/notebook_vae_digits"', repr(str(tmp_path / "run")))
    source = source.replace("num_samples=500", "num_samples=5")
    # The last expression of a cell is its displayed value; evaluate it too.
    exec(compile(source, "<notebook>", "exec"), namespace)
  assert namespace["summary"]["train/loss"] > 0
  assert os.path.exists(tmp_path / "run" / "images" / "samples.png")
  assert {p.name for p in shown} >= {"samples.png", "reconstructions.png"}
  assert all(p.is_file() for p in shown)
  assert namespace["terms"]["elbo"].shape == (8,)

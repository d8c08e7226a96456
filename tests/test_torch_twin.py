"""The PyTorch twins of benchmarks/torch_twin.py have genjax's parameter counts.

The benchmark compares genjax's step with its twin's; a twin with other
parameters would time another model. Skipped where torch is not installed
(``make bench-twin`` installs it).
"""

import importlib.util
import pathlib

import pytest

pytest.importorskip("torch")

_PATH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "torch_twin.py"
_spec = importlib.util.spec_from_file_location("torch_twin", _PATH)
torch_twin = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(torch_twin)


@pytest.mark.parametrize("name", torch_twin.CONFIGS)
def test_twin_has_genjax_parameter_count(name):
  assert torch_twin.torch_param_count(name) == torch_twin.genjax_param_count_from_shapes(name)

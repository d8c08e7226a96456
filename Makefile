# genjax: make install | test | train | bench | bench-twin | eval WORKDIR=... | clean
VENV      ?= .venv
PYTHON    ?= python3
PY        := $(VENV)/bin/python
# Raw MNIST / Fashion-MNIST files for offline tfds preparation (a manual dir).
SHARED    ?= $(abspath ../shared/data)
export GENJAX_MANUAL_DIR ?= $(if $(wildcard $(SHARED)),$(SHARED),)
export TF_CPP_MIN_LOG_LEVEL ?= 2
CONFIG    ?= experiments/configs/vae_digits.py
WORKDIR   ?= runs/$(basename $(notdir $(CONFIG)))
# 8 virtual CPU devices for the multi-device tests; a long collective timeout because
# 2 busy cores can delay a rendezvous past XLA's default, which aborts the process;
# no LLVM optimisation and no XLA:CPU fusion emitters, because compiling, not
# running, dominates the tests' tiny programs (tests/conftest.py has the measurements).
TEST_XLA_FLAGS ?= --xla_force_host_platform_device_count=8 --xla_cpu_collective_call_terminate_timeout_seconds=600 --xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false

.PHONY: install test test-fast train eval bench bench-twin clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	@touch $@

test: install
	XLA_FLAGS="$(TEST_XLA_FLAGS)" $(PY) -m pytest -q -n 2 --dist loadgroup --durations=15 tests

train: install
	$(PY) -m genjax.main --config=$(CONFIG) --workdir=$(WORKDIR)

eval: install
	$(PY) -m genjax.evaluate --workdir=$(WORKDIR)

bench: install
	$(PY) benchmarks/bench.py
	$(PY) benchmarks/precision.py
	$(PY) benchmarks/conv_ops.py

# genjax against a PyTorch twin of each reference model (CPU torch, the bench extra).
bench-twin: install
	$(PY) -m pip install --quiet -c constraints.txt -e ".[bench]"
	$(PY) benchmarks/torch_twin.py

clean:
	rm -rf runs bench_results .pytest_cache

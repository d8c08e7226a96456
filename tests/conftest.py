"""Test-wide settings: 8 virtual CPU devices and an offline dataset cache."""

import os
import pathlib

# Must happen before JAX initialises its backends.
# 8 virtual devices share 2 cores: under load a collective's threads can arrive
# late, and XLA's default rendezvous timeout then aborts the whole process.
os.environ.setdefault(
  "XLA_FLAGS",
  "--xla_force_host_platform_device_count=8 --xla_cpu_collective_call_terminate_timeout_seconds=600",
)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
# Prepared tfds datasets are cached in the repo (git-ignored) across test runs;
# the raw MNIST / Fashion-MNIST files come from the manual dir.
os.environ.setdefault("TFDS_DATA_DIR", str(REPO / ".cache" / "tensorflow_datasets"))
# Feature nets for the sample metrics are trained once and cached here too.
os.environ.setdefault("GENJAX_CACHE_DIR", str(REPO / ".cache" / "genjax"))
if SHARED_DATA.is_dir():
  os.environ.setdefault("GENJAX_MANUAL_DIR", str(SHARED_DATA))

# Tests build the same programs many times (one config per dataset, resumed
# runs, subprocesses of the CLI): XLA's persistent cache compiles each once.
# Environment variables, so the subprocesses that tests start share it.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(REPO / ".cache" / "jax_compilation"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

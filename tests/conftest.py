"""Test-wide settings: 8 virtual CPU devices and an offline dataset cache."""

import os
import pathlib

# Must happen before JAX initialises its backends.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
# Prepared tfds datasets are cached in the repo (git-ignored) across test runs;
# the raw MNIST / Fashion-MNIST files come from the manual dir.
os.environ.setdefault("TFDS_DATA_DIR", str(REPO / ".cache" / "tensorflow_datasets"))
if SHARED_DATA.is_dir():
  os.environ.setdefault("GENJAX_MANUAL_DIR", str(SHARED_DATA))

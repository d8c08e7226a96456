"""Test-wide settings: 8 virtual CPU devices and an offline dataset cache."""

import os
import pathlib

import pytest

# Must happen before JAX initialises its backends.
# 8 virtual devices share 2 cores: under load a collective's threads can arrive
# late, and XLA's default rendezvous timeout then aborts the whole process.
# Compiling, not running, dominates the tests' tiny programs: no LLVM optimisation
# halves XLA's compile time, and generating fusions with XLA:CPU's elemental IR
# emitter instead of its fusion emitters cuts a further fifth (the 2-step runs of
# 8 MNIST configs: 80 s -> 62 s on 2 cores).
os.environ.setdefault(
  "XLA_FLAGS",
  "--xla_force_host_platform_device_count=8 --xla_cpu_collective_call_terminate_timeout_seconds=600"
  " --xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false",
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


def shrink(config, num_steps=2):
  """Turns any config into a seconds-long run: small batches, tiny evaluation."""
  c = config
  c.train.num_steps = num_steps
  # A warm-up must end within the run (validation refuses one that cannot).
  c.optimizer.warmup_steps = min(c.optimizer.warmup_steps, num_steps - 1)
  c.train.batch_size = 16
  c.train.log_every = 1
  c.train.checkpoint_every = num_steps
  c.train.progress_bar = False
  # Two of the 8 virtual devices: still data-parallel (sharded batches, pmean,
  # synchronised BatchNorm), without 8 device threads on 2 cores;
  # tests/core/test_parallel.py covers all 8.
  c.train.num_devices = 2
  c.eval.batch_size = 16
  c.eval.periodic_examples = 16
  c.eval.periodic_nll_samples = 2
  c.eval.num_images = 16
  # Enough samples for a 128-d Fréchet distance; a feature net trained for seconds.
  c.eval.sample_examples = c.eval.periodic_sample_examples = 160
  c.eval.feature_net_steps = 40
  c.gan.base_channels = min(c.gan.base_channels, 8)  # DCGAN convolutions dominate on CPU
  # A short chain and a narrow U-Net: the schedule, samplers and pictures run unchanged.
  c.diffusion.num_steps = min(c.diffusion.num_steps, 20)
  c.diffusion.sample_steps = min(c.diffusion.sample_steps, 5)
  c.vdm.sample_steps = min(c.vdm.sample_steps, 5)
  c.unet.channels, c.unet.num_groups, c.unet.num_res_blocks = 8, 4, 1
  # Autoregressive sampling runs the network once per pixel: keep it tiny.
  c.pixelcnn.num_layers, c.pixelcnn.features = 2, 8
  c.vq.channels, c.vq.res_channels, c.vq.num_res_blocks = (8, 16), 8, 1
  c.vq.num_embeddings, c.vq.embedding_dim = 32, 8
  c.vq2.top_num_embeddings = 32
  return c


@pytest.fixture(name="shrink")
def _shrink_fixture():
  return shrink


def train_steps(exp, num_steps):
  """Runs ``num_steps`` compiled steps of ``exp`` from a fresh state.

  Returns:
    ``(state, metrics of every step)``, read back to the host.
  """
  import jax  # After the XLA flags above are set.

  step_fn, it = exp.compile_train_step(), exp.train_iterator()
  state = exp.parallel.put_replicated(exp.init_state())
  history = []
  for _ in range(num_steps):
    state, metrics = step_fn(state, exp.parallel.put_batch(next(it)))
    history.append(jax.device_get(exp.parallel.get_replicated(metrics)))
  return jax.device_get(exp.parallel.get_replicated(state)), history


@pytest.fixture(name="train_steps")
def _train_steps_fixture():
  return train_steps


# What an install without TensorFlow looks like to Python: every finder misses it, so
# find_spec gives None and an import fails as for a missing module. (Not
# ``sys.modules["tensorflow"] = None``: libraries read a name there as TensorFlow loaded.)
NO_TENSORFLOW = """
import sys
class NoTensorFlow:
  def __init__(self, finder):
    self.finder = finder
  def find_spec(self, name, path=None, target=None):
    if name == "tensorflow" or name.startswith("tensorflow."):
      return None
    return self.finder.find_spec(name, path, target)
  def __getattr__(self, name):
    return getattr(self.finder, name)
sys.meta_path[:] = [NoTensorFlow(finder) for finder in sys.meta_path]
"""

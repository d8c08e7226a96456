"""Random model parameters for tests, without compiling ``init``."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np


def host_params(module, *args, seed=0, kernel_scale=1.0, bias_scale=0.1, **kwargs):
  """Variables with ``module.init``'s structure, filled from a host RNG.

  XLA-CPU compiles the threefry initializers of a whole model slowly, so
  ``init`` is only traced abstractly. Every weight is random (zero-initialised
  output layers would hide paths through the network); kernels get fan-in
  scaling so that deep stacks stay O(1); BatchNorm averages start at mean 0,
  var 1.

  Args:
    module: a Flax module.
    *args: example inputs for ``module.init``.
    seed: NumPy seed.
    kernel_scale: kernel std times sqrt(fan-in).
    bias_scale: std of biases and embeddings' spread of norm scales around 1.
    **kwargs: keyword arguments for ``module.init`` (e.g. ``train=False``).
  """
  init = functools.partial(module.init, **kwargs)
  shapes = jax.eval_shape(init, jax.random.key(0), *args)
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name, noise = getattr(path[-1], "key", ""), rng.standard_normal(leaf.shape)
    if name in ("mean", "var"):
      value = np.full(leaf.shape, float(name == "var"))
    elif name == "scale":
      value = 1.0 + bias_scale * noise
    elif leaf.ndim > 1 and name != "embedding":
      value = kernel_scale * noise / math.sqrt(math.prod(leaf.shape[:-1]))
    else:  # bias, embedding
      value = (bias_scale if name == "bias" else 1.0) * noise
    return jnp.asarray(value, leaf.dtype)

  return jax.tree_util.tree_map_with_path(fill, shapes)

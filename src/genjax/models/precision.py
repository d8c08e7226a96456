"""Dense, Conv and Embed for bfloat16 compute whose parameter gradients are summed in float32.

With ``dtype=bfloat16`` flax's layers cast their bias (and embedding table) to
bfloat16 too, so the backward pass sums a bias's gradient over every batch element
and pixel in bfloat16: the running sum of 12,544 terms (16 images of 28x28) keeps 8
bits and loses most of the later terms (measured: a conv VAE's output-bias gradient
came out at 18 where float32 gives 230). These subclasses keep the bias and the table
in float32 inside the layer, add the bias in float32 and round the result to ``dtype``
once; the kernel products stay in ``dtype``. Parameters, names and float32 results are
those of flax's layers (the class names are kept, so auto-named parameters are too).
"""

from typing import Any

import jax
from flax import linen as nn
from flax.linen.dtypes import promote_dtype


def _promote_all_but_bias(*args: Any, dtype=None, inexact: bool = True) -> list[Any]:
  # flax passes (inputs, kernel, bias); the bias is None without one.
  *operands, bias = args
  return [*promote_dtype(*operands, dtype=dtype, inexact=inexact), bias]


def _keep_table(*args: Any, dtype=None, inexact: bool = True) -> list[Any]:
  del dtype, inexact
  return list(args)


def _round(y: jax.Array, dtype: Any) -> jax.Array:
  return y if dtype is None else y.astype(dtype)


class Dense(nn.Dense):
  """`flax.linen.Dense` adding its bias in float32 (see the module docstring)."""

  promote_dtype: Any = _promote_all_but_bias

  def __call__(self, inputs: jax.Array) -> jax.Array:
    return _round(super().__call__(inputs), self.dtype)


class Conv(nn.Conv):
  """`flax.linen.Conv` adding its bias in float32 (see the module docstring)."""

  promote_dtype: Any = _promote_all_but_bias

  def __call__(self, inputs: jax.Array) -> jax.Array:
    return _round(super().__call__(inputs), self.dtype)


class Embed(nn.Embed):
  """`flax.linen.Embed` looking rows up in float32, so repeated rows' gradients add in float32."""

  promote_dtype: Any = _keep_table

  def __call__(self, inputs: jax.Array) -> jax.Array:
    return _round(super().__call__(inputs), self.dtype)

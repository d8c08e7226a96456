"""On-device preprocessing, traced inside the jitted train step.

Batches cross host->device as uint8 (4x less traffic than float32) and are
converted here. Every op has the signature ``fn(images, keys) -> float32``
with ``images`` uint8 [B, ...] and ``keys`` a typed PRNG key array [B]; random
ops ``vmap`` over the keys so example ``i`` depends only on ``keys[i]``, which
keeps results identical however a batch is split across devices.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

Preprocessor = Callable[[jax.Array, jax.Array], jax.Array]


def identity(images: jax.Array, keys: jax.Array | None = None) -> jax.Array:
  """Identity cast to float32 (points datasets; images stay in [0, 255])."""
  del keys
  return jnp.asarray(images, jnp.float32)


def scale_01(images: jax.Array, keys: jax.Array | None = None) -> jax.Array:
  """uint8 [B, ...] -> float32 in [0, 1]."""
  del keys
  return jnp.asarray(images, jnp.float32) / 255.0


def scale_pm1(images: jax.Array, keys: jax.Array | None = None) -> jax.Array:
  """uint8 [B, ...] -> float32 in [-1, 1]."""
  del keys
  return jnp.asarray(images, jnp.float32) / 127.5 - 1.0


def dequantize(images: jax.Array, keys: jax.Array) -> jax.Array:
  """Uniform dequantization: (x + U[0, 1)) / 256, in [x/256, (x+1)/256).

  Args:
      images: uint8 [B, ...].
      keys: typed PRNG keys [B].

  Returns:
      float32 [B, ...] continuous values in [0, 1).
  """
  x = jnp.asarray(images, jnp.float32)
  u = jax.vmap(lambda k: jax.random.uniform(k, x.shape[1:]))(keys)
  # x + u rounds up to x + 1 in float32 when u is close to 1 and x is large.
  v = jnp.minimum(x + u, jnp.nextafter(x + 1.0, x))
  return v / 256.0  # Power of two: exact, so the bound survives.


def binarize_dynamic(images: jax.Array, keys: jax.Array) -> jax.Array:
  """Bernoulli(x / 255) per pixel, resampled each call (Salakhutdinov & Murray).

  Args:
      images: uint8 [B, ...].
      keys: typed PRNG keys [B].

  Returns:
      float32 [B, ...] in {0, 1}.
  """
  p = jnp.asarray(images, jnp.float32) / 255.0
  sample = jax.vmap(lambda k, pi: jax.random.bernoulli(k, pi))(keys, p)
  return sample.astype(jnp.float32)


def binarize_static(images: jax.Array, keys: jax.Array | None = None) -> jax.Array:
  """Deterministic threshold x / 255 > 0.5 -> float32 in {0, 1}."""
  del keys
  return (jnp.asarray(images, jnp.float32) / 255.0 > 0.5).astype(jnp.float32)


PREPROCESSORS: dict[str, Preprocessor] = {
  "none": identity,
  "scale_01": scale_01,
  "scale_pm1": scale_pm1,
  "dequantize": dequantize,
  "binarize_dynamic": binarize_dynamic,
  "binarize_static": binarize_static,
}


def _check_name(name: str) -> None:
  if name not in PREPROCESSORS:
    raise ValueError(f"Unknown preprocessing {name!r}; allowed: {', '.join(PREPROCESSORS)}.")


def preprocess(name: str, images: jax.Array, keys: jax.Array | None) -> jax.Array:
  """Applies ``PREPROCESSORS[name]``; ``keys`` [B] may be None if deterministic."""
  _check_name(name)
  return PREPROCESSORS[name](images, keys)


def to_uint8(images: jax.Array, name: str) -> jax.Array:
  """Maps model-space images back to uint8 pictures (clipped).

  Args:
      images: float [B, ...] in the range produced by preprocessing ``name``:
          [-1, 1] for "scale_pm1", [0, 255] for "none", else [0, 1].
      name: The preprocessing the model was trained with.

  Returns:
      uint8 [B, ...].
  """
  _check_name(name)
  x = jnp.asarray(images, jnp.float32)
  if name == "scale_pm1":
    x = (x + 1.0) * 127.5
  elif name != "none":
    x = x * 255.0
  return jnp.clip(jnp.round(x), 0, 255).astype(jnp.uint8)


def prepare_batch(batch: dict[str, jax.Array], keys: jax.Array, name: str) -> dict[str, jax.Array]:
  """Turns a stored batch into model inputs ``{"x": float, "label": int32}``.

  Images travel host→device as uint8 and are converted here, on device, by the
  preprocessing op ``name``.
  """
  if "image" in batch:
    x = preprocess(name, batch["image"], keys)
  else:
    x = batch["points"].astype(jnp.float32)
  return {"x": x, "label": batch["label"].astype(jnp.int32)}

"""Data parallelism over all devices: ``jax.jit`` + ``jax.shard_map`` or ``jax.pmap``.

A per-shard function is written once, in the SPMD style both transforms share:
it sees this device's slice of the batch and an identical copy of the
replicated state, and reduces across devices explicitly with
``lax.pmean``/``lax.psum`` over :data:`AXIS`. :class:`DataParallel` hides the
only differences between the two paths (how state and batches are placed on
devices and read back), so the training loop never branches on the mode.
"""

from typing import Any, Callable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

AXIS = "data"
MODES = ("shard_map", "pmap")


class DataParallel:
  """Places data and compiles per-shard functions over a 1-D ``data`` mesh.

  Args:
    mode: "shard_map" (default; ``jax.jit`` of ``jax.shard_map``) or "pmap".
    devices: devices to use (default: all devices of all processes for
      shard_map, local devices for pmap).
  """

  def __init__(self, mode: str = "shard_map", devices: Sequence[Any] | None = None):
    if mode not in MODES:
      raise ValueError(f"config.train.parallel={mode!r}; allowed: {MODES}")
    self.mode = mode
    self.devices = list(devices) if devices is not None else jax.devices()
    self.local_devices = [d for d in self.devices if d.process_index == jax.process_index()]
    self.mesh = Mesh(np.asarray(self.devices), (AXIS,))
    self._replicated = NamedSharding(self.mesh, P())
    self._sharded = NamedSharding(self.mesh, P(AXIS))
    # pmap takes arrays stacked along a leading axis of local devices.
    self._stacked = NamedSharding(Mesh(np.asarray(self.local_devices), (AXIS,)), P(AXIS))

  @property
  def num_devices(self) -> int:
    return len(self.devices)

  @property
  def replicated(self) -> NamedSharding:
    """The sharding of state: a full copy on every device of the mesh."""
    return self._replicated

  def compile(self, fn: Callable, donate_first: bool = False) -> Callable:
    """Compiles ``fn(replicated, batch) -> replicated_outputs`` for all devices.

    ``fn`` must make its outputs identical on every device (``lax.pmean`` /
    ``lax.psum`` over :data:`AXIS`). ``shard_map`` runs with ``check_vma=False``
    so that ``jax.grad`` inside ``fn`` has pmap semantics (per-device
    gradients, averaged explicitly) and one function serves both paths.
    """
    donate = (0,) if donate_first else ()
    if self.mode == "pmap":
      return jax.pmap(fn, axis_name=AXIS, devices=self.local_devices, donate_argnums=donate)
    mapped = jax.shard_map(
      fn, mesh=self.mesh, in_specs=(P(), P(AXIS)), out_specs=P(), check_vma=False
    )
    return jax.jit(mapped, donate_argnums=donate)

  def put_replicated(self, tree):
    """Places a host pytree identically on every device."""
    if self.mode == "pmap":
      n = len(self.local_devices)
      return jax.device_put(
        jax.tree.map(lambda x: np.stack([np.asarray(x)] * n), tree), self._stacked
      )
    return jax.device_put(tree, self._replicated)

  def get_replicated(self, tree):
    """Reads back a replicated pytree as single (unstacked) arrays."""
    if self.mode == "pmap":
      return jax.tree.map(lambda x: x[0], tree)
    return tree

  def put_batch(self, batch):
    """Shards this process's slice of the global batch over its devices.

    Args:
      batch: pytree of host arrays ``[B_process, ...]``; ``B_process`` must be
        divisible by the number of local devices.
    """
    n = len(self.local_devices)
    if self.mode == "pmap":
      return jax.device_put(jax.tree.map(lambda x: _split(x, n), batch), self._stacked)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(self._sharded, x), batch)


def _split(x: np.ndarray, n: int) -> np.ndarray:
  if x.shape[0] % n:
    raise ValueError(f"batch of {x.shape[0]} examples does not divide over {n} devices")
  return x.reshape((n, x.shape[0] // n) + x.shape[1:])

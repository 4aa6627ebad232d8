"""The one-axis `('fold',)` device mesh that the stacked model axis is split over."""

from __future__ import annotations

from collections.abc import Sequence

import jax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

AXIS = "fold"


def fold_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A mesh over `devices` (by default every process's devices, `jax.devices()`) with one `fold` axis.

  The axis type is `Auto`: under the `Explicit` default of `jax.make_mesh`, vmapped convolutions
  over a fold-sharded array fail to reshape the batched kernel.
  """
  devices = list(jax.devices() if devices is None else devices)
  return jax.make_mesh((len(devices),), (AXIS,), axis_types=(AxisType.Auto,), devices=devices)


def model_sharding(mesh: Mesh) -> NamedSharding:
  """Shards the leading (model) axis of every leaf over the mesh."""
  return NamedSharding(mesh, PartitionSpec(AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  """A full copy on every device (the data, scalars)."""
  return NamedSharding(mesh, PartitionSpec())

"""Runs spanning several processes on JAX's distributed runtime (TPU pod hosts, GPU nodes, CPUs).

Every process runs the same program on the same config and data. The model axis is sharded over
the global mesh of all processes' devices; each process feeds and computes its own devices' slots.
Host-side tables are identical on every process (they derive from the config and the data), so
global arrays are built from them directly (`global_array`), and results are brought back to
every host with `to_host`. Only process 0 writes results and prints reports (`is_main`).
With one process every function here is the plain single-process operation.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Sharding

from rcn_jax import errors


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> None:
  """Joins the distributed runtime; call before anything touches a JAX device.

  Arguments left None are detected from the cluster (TPU pod slices, SLURM, Open MPI,
  Kubernetes) or, for the address, read from `JAX_COORDINATOR_ADDRESS`. On CPU the processes'
  collectives use gloo (JAX's default).

  Args:
    coordinator_address: `host:port` of process 0, reachable by every process.
    num_processes: how many processes take part.
    process_id: this process's index in [0, num_processes).
  """
  try:
    jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                               process_id=process_id)
  except ValueError as error:
    raise errors.UserError(f"{error} No cluster was detected: pass --coordinator_address, --num_processes and "
                           "--process_id (docs/distributed.md)") from error


def is_main() -> bool:
  """Whether this is process 0, the one that writes results and prints reports."""
  return jax.process_index() == 0


def global_array(value: np.ndarray | np.generic, sharding: Sharding) -> jax.Array:
  """A global array laid out by `sharding` from a host value that every process holds whole.

  Each process places only the shards of its own devices, so this works for shardings that
  span processes, where `jax.device_put` of host data does not.
  """
  value = np.asarray(value)
  # An explicit transfer, like `jax.device_put`: allowed where implicit transfers are guarded against.
  with jax.transfer_guard_host_to_device("allow"):
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])


def to_host(tree):
  """The full values of a pytree of (possibly process-spanning) arrays as numpy, on every process."""
  def fetch(leaf):
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
      return np.asarray(multihost_utils.process_allgather(leaf, tiled=True))
    return np.asarray(jax.device_get(leaf))
  return jax.tree.map(fetch, tree)


def barrier(name: str) -> None:
  """Waits until every process reaches the barrier `name` (no-op with one process)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)

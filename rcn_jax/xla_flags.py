"""The XLA flags rcn-jax starts JAX with; XLA reads `XLA_FLAGS` once, when JAX starts.

Entry points (`launch.py`, `python -m rcn_jax.studies`, the throughput and float32-spread
benchmarks, the test suite) call `apply_defaults` before the first JAX import. A flag the user set in `XLA_FLAGS` always wins.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

DEVICE_COUNT = "xla_force_host_platform_device_count"
# XLA:CPU hands convolutions and reductions to the YNNPACK library by default. Its backward-filter
# convolution is several times slower than XLA's own for the RCNs' small channel counts (per
# training step on a 2-core AVX2 CPU: the 5x5 3->16 stem's weight gradient 78 ms against 11 ms,
# the 3x3 16->16 recurrent conv's 25 ms against 8 ms), while its reductions (the batch-norm
# statistics) beat XLA's, so YNNPACK keeps the reductions only.
LIBRARY_FUSIONS = "xla_cpu_experimental_ynn_fusion_type"
CPU_DEFAULTS = {LIBRARY_FUSIONS: "reduce"}


def with_defaults(flags: str, devices: int) -> str:
  """`flags` (an `XLA_FLAGS` value) plus each default it does not set.

  Args:
    flags: space-separated `--name=value` XLA flags.
    devices: host devices to force (one per core gives the shard_map strategy a device per core).

  Returns:
    the flags with `--xla_force_host_platform_device_count=devices` and `CPU_DEFAULTS` added where
    `flags` names them not.
  """
  named = {part.lstrip("-").split("=", 1)[0] for part in flags.split()}
  defaults = {DEVICE_COUNT: str(devices), **CPU_DEFAULTS}
  added = [f"--{name}={value}" for name, value in defaults.items() if name not in named]
  return " ".join([flags.strip(), *added]).strip()


def apply_defaults(environ: MutableMapping[str, str] = os.environ, devices: int | None = None) -> None:
  """Adds the defaults to `environ["XLA_FLAGS"]`: one host device per core unless `devices` is given."""
  environ["XLA_FLAGS"] = with_defaults(environ.get("XLA_FLAGS", ""), devices or os.cpu_count() or 1)

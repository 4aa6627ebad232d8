"""Trains and evaluates a config over the LOSO protocol: `python launch.py --config=configs/rcn_f.py`.

Flags: `--config=FILE[:ARG]` with `--config.section.key=value` overrides, `--workdir` (default
`runs/<config name>[_<ARG>]`), `--xla_cache_dir` (compiled programs reused across runs; empty
disables), and for a run spanning processes (hosts of a TPU pod slice, GPU nodes, CPU processes)
`--distributed` or `--coordinator_address/--num_processes/--process_id` (docs/distributed.md).
The library entry point is `rcn_jax.train.train_and_evaluate`.
"""

import os
import sys

# XLA reads its flags once, when JAX starts: give every CPU core its own host device so the
# shard_map strategy can run independent folds on each, unless the user chose XLA flags.
if "XLA_FLAGS" not in os.environ:
  os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={os.cpu_count() or 1}"

from absl import app, flags, logging  # pylint: disable=g-import-not-at-top,wrong-import-position
from ml_collections import config_flags  # pylint: disable=wrong-import-position

_CONFIG = config_flags.DEFINE_config_file("config", None, "Run config file, e.g. configs/rcn_f.py[:smoke].",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder (default runs/<config name>[_<arg>]).")
_XLA_CACHE = flags.DEFINE_string("xla_cache_dir", os.path.join(os.path.expanduser("~"), ".cache", "rcn_jax", "xla"),
                                 "Persistent compilation cache; empty disables it.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Join JAX's distributed runtime; the three flags below are detected on TPU pod "
    "slices, SLURM, Open MPI and Kubernetes when not given (the address also from JAX_COORDINATOR_ADDRESS).")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "host:port of process 0 in a multi-process run (implies --distributed).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes of a multi-process run (implies --distributed).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index, 0..num_processes-1 (implies --distributed).")
flags.mark_flag_as_required("config")


def parse_flags(argv: list[str]) -> list[str]:
  """Parses flags; an override of a config key that does not exist is a usage error naming it."""
  try:
    return flags.FLAGS(argv)
  except (AttributeError, KeyError) as error:
    missing = str(error).strip("\"'")
    culprits = [a.split("=")[0].lstrip("-") for a in argv[1:]
                if a.startswith("--config.") and missing in a.split("=")[0].split(".")]
    named = culprits[0] if culprits else f"config.*.{missing}"
    print(f"FATAL Flags parsing error: unknown config key '{named[len('config.'):]}' in --{named}; "
          f"see the config file for the keys it defines", file=sys.stderr)
    sys.exit(1)


def default_workdir(config_argument: str) -> str:
  """`runs/<config file stem>[_<arg>]` for `--config=path/name.py[:arg]`."""
  path, _, arg = config_argument.partition(":")
  stem = os.path.splitext(os.path.basename(path))[0]
  suffix = "".join(c if c.isalnum() or c in "-=" else "_" for c in arg)
  return os.path.join("runs", f"{stem}_{suffix}" if suffix else stem)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint step at INFO
  import jax  # pylint: disable=g-import-not-at-top
  from rcn_jax import multihost, train  # pylint: disable=g-import-not-at-top

  if _DISTRIBUTED.value or any(f.value is not None for f in (_COORDINATOR, _NUM_PROCESSES, _PROCESS_ID)):
    try:
      multihost.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    except ValueError as error:
      raise app.UsageError(str(error)) from error

  if _XLA_CACHE.value:
    jax.config.update("jax_compilation_cache_dir", _XLA_CACHE.value)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
  workdir = _WORKDIR.value or default_workdir(config_flags.get_config_filename(flags.FLAGS["config"]))
  print(f"workdir {workdir}; JAX {jax.__version__} on {jax.device_count()} {jax.default_backend()} device(s)"
        f" (process {jax.process_index()} of {jax.process_count()})", file=sys.stderr)
  if "search" in _CONFIG.value:  # configs/search.py: an architecture search, not a LOSO run
    if jax.process_count() > 1:
      raise app.UsageError("the architecture search runs in one process; drop the distributed flags")
    from rcn_jax import search  # pylint: disable=g-import-not-at-top
    search.run_search(_CONFIG.value, workdir)
    return
  train.train_and_evaluate(_CONFIG.value, workdir)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)

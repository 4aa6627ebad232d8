"""Trains and evaluates a config over the LOSO protocol: `python launch.py --config=configs/rcn_f.py`.

Flags: `--config=FILE[:ARG]` with `--config.section.key=value` overrides, `--workdir` (default
`runs/<config name>[_<ARG>]`), `--xla_cache_dir` (compiled programs reused across runs; empty
disables), and for a run spanning processes (hosts of a TPU pod slice, GPU nodes, CPU processes)
`--distributed` or `--coordinator_address/--num_processes/--process_id` (docs/distributed.md).
The library entry point is `rcn_jax.train.train_and_evaluate`.
"""

import difflib
import importlib.util
import os
import sys
import traceback

from rcn_jax import xla_flags

# Before JAX starts: a host device per CPU core (the shard_map strategy runs independent folds on
# each) and XLA:CPU's faster kernel choices, where the user's XLA_FLAGS do not say otherwise.
xla_flags.apply_defaults()

import ml_collections  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app, flags, logging  # pylint: disable=g-import-not-at-top,wrong-import-position
from ml_collections import config_flags  # pylint: disable=wrong-import-position

from rcn_jax import errors  # pylint: disable=wrong-import-position

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


def _verbose(argv: list[str]) -> bool:
  """Whether `--verbosity`/`-v` asks for tracebacks (flags that failed to parse are read by hand)."""
  for arg in argv[1:]:
    name, _, value = arg.lstrip("-").partition("=")
    if name in ("verbosity", "v") and value.lstrip("-").isdigit():
      return int(value) >= 1
  return False


def _config_keys(config) -> list[str]:
  """Every dotted key of a ConfigDict, sections included."""
  keys = []
  for key, value in config.items():
    keys.append(key)
    if isinstance(value, ml_collections.ConfigDict):
      keys += [f"{key}.{sub}" for sub in _config_keys(value)]
  return keys


def _load_config_file(argv: list[str]):
  """The config that `--config=PATH[:ARG]` in argv names, loaded without the overrides."""
  argument = next(a.split("=", 1)[1] for a in argv[1:] if a.startswith("--config="))
  path, _, arg = argument.partition(":")
  spec = importlib.util.spec_from_file_location("launched_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return path, (module.get_config(arg) if arg else module.get_config())


def _unknown_override(argv: list[str]) -> str | None:
  """The message for the first `--config.KEY=` override whose key the config lacks, if any."""
  try:
    path, config = _load_config_file(argv)
  except Exception:  # pylint: disable=broad-except  (then the parse error itself is reported)
    return None
  known = _config_keys(config)
  for override in (a for a in argv[1:] if a.startswith("--config.")):
    key = override.split("=", 1)[0][len("--config."):]
    if key not in known:
      close = difflib.get_close_matches(key, [k for k in known if k.count(".") == key.count(".")], n=1, cutoff=0.6)
      hint = f"; did you mean '{close[0]}'?" if close else ""
      return f"--config.{key}: unknown config key '{key}'{hint} (the keys are defined in {path} and rcn_jax/config.py)"
  return None


def _user_cause(error: BaseException) -> errors.UserError | None:
  """The UserError that a flag-parsing error wraps (a config file's own check), if any."""
  while error is not None:
    if isinstance(error, errors.UserError):
      return error
    error = error.__cause__ or error.__context__
  return None


def parse_flags(argv: list[str]) -> list[str]:
  """Parses flags and loads the config; a bad flag, config file, argument or key is one line, status 2."""
  try:
    rest = flags.FLAGS(argv)
    _CONFIG.value.keys()  # config_flags defers a config file's loading error to the first access
    return rest
  except Exception as error:  # pylint: disable=broad-except  (flags parsing runs the config file)
    if not isinstance(error, (flags.Error, errors.UserError, KeyError, AttributeError, OSError)):
      raise
    message = _unknown_override(argv) if isinstance(error, (KeyError, AttributeError)) else None
    cause = _user_cause(error)
    if message is None and cause is not None:
      # config_flags re-raises a config file's error with the traceback in its message: keep the last line.
      message = f"--config: {str(cause).rsplit('UserError: ', 1)[-1]}"
    elif message is None and isinstance(error, OSError):
      path = next((a.split("=", 1)[1].partition(":")[0] for a in argv[1:] if a.startswith("--config=")), "")
      reason = "no such file" if not os.path.isfile(path) else str(error.__cause__ or error).strip().splitlines()[-1]
      message = f"--config={path}: cannot load the config file: {reason}"
    elif message is None:
      message = f"{error} (python launch.py --helpfull lists the flags)"
    if _verbose(argv):
      traceback.print_exception(error, file=sys.stderr)
    sys.exit(errors.report(message))


def default_workdir(config_argument: str) -> str:
  """`runs/<config file stem>[_<arg>]` for `--config=path/name.py[:arg]`."""
  path, _, arg = config_argument.partition(":")
  stem = os.path.splitext(os.path.basename(path))[0]
  suffix = "".join(c if c.isalnum() or c in "-=" else "_" for c in arg)
  return os.path.join("runs", f"{stem}_{suffix}" if suffix else stem)


def main(argv: list[str]) -> int:
  verbose = flags.FLAGS.verbosity >= 1
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint step at INFO
  return errors.run_main(lambda: run(argv), verbose=verbose)


def run(argv: list[str]) -> None:
  """Checks the config, then trains (or searches); a user error raises `errors.UserError`."""
  if len(argv) > 1:
    raise errors.UserError(f"unexpected arguments {argv[1:]}; config values go as --config.KEY=VALUE")
  import jax  # pylint: disable=g-import-not-at-top
  from rcn_jax import train, validation  # pylint: disable=g-import-not-at-top
  from rcn_jax.engine import multihost

  if _DISTRIBUTED.value or any(f.value is not None for f in (_COORDINATOR, _NUM_PROCESSES, _PROCESS_ID)):
    multihost.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  config = _CONFIG.value
  is_search = "search" in config  # configs/search.py: an architecture search, not a LOSO run
  if is_search and jax.process_count() > 1:
    raise errors.UserError("the architecture search runs in one process; drop the distributed flags")
  validation.validate(config)  # once, before anything slow: the data, the compilation

  if _XLA_CACHE.value:
    jax.config.update("jax_compilation_cache_dir", _XLA_CACHE.value)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
  workdir = _WORKDIR.value or default_workdir(config_flags.get_config_filename(flags.FLAGS["config"]))
  print(f"workdir {workdir}; JAX {jax.__version__} on {jax.device_count()} {jax.default_backend()} device(s)"
        f" (process {jax.process_index()} of {jax.process_count()})", file=sys.stderr)
  if is_search:
    from rcn_jax.search import loop as search  # pylint: disable=g-import-not-at-top
    search.run_search(config, workdir, validated=True)
  else:
    train.train_and_evaluate(config, workdir, validated=True)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)

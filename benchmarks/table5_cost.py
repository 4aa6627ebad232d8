"""Cost of the `table5` study at full scale, per row, extrapolated from measured epochs.

  nice python benchmarks/table5_cost.py [--folds 2] [--epochs 1] [--seeds 3] [--rows STSTNet,RCN-A,...]

For every row of `python -m rcn_jax.studies --study=table5 --scale=full` (RCN-A/S/W/F at their
Table V settings by the RCN authors' script, `reference`; STSTNet, OFF-ApexNet, Dual-Inception,
ResNet18, DenseNet121 by their recipes) it builds the run's program with the engine's executor
(`launch.py`'s XLA defaults: one host device per core), on inputs of the row's side with the real
fold sizes of the 442-sample composite (the built-in synthetic composite and MEGC2019 share the
organisers' list; training cost depends on shapes only). It compiles and runs one warm-up epoch,
then times `--epochs` epochs of the first `--folds` folds and EXTRAPOLATES: seconds per
fold-epoch x 68 folds x the recipe's epochs x seeds, plus the measured compile + warm-up once.
Printed first: the CPU idle share over one second before each row (read from /proc/stat; under
0.9 the figure was measured under load and is labelled so).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rcn_jax import xla_flags  # noqa: E402

xla_flags.apply_defaults()

ALL_FOLDS = 68
QUIET = 0.9


def _cpu_times() -> tuple[int, int]:
  with open("/proc/stat") as stream:
    fields = [int(v) for v in stream.readline().split()[1:]]
  return fields[3] + (fields[4] if len(fields) > 4 else 0), sum(fields[:8])


def idle_share(seconds: float = 1.0) -> float:
  """The share of CPU time all cores spent idle over the next `seconds`."""
  idle0, total0 = _cpu_times()
  time.sleep(seconds)
  idle1, total1 = _cpu_times()
  return (idle1 - idle0) / max(total1 - total0, 1)


def row_configs():
  """Table V row -> its full-scale run config (what the table5 study trains)."""
  from rcn_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  from rcn_jax.studies import SCALES  # pylint: disable=g-import-not-at-top
  from rcn_jax.studies.table5 import ROW_OF  # pylint: disable=g-import-not-at-top
  from rcn_jax.studies.tables import paper_name  # pylint: disable=g-import-not-at-top
  configs = {}
  for model, fm, pool in SCALES["full"].comparison:
    configs[paper_name(model)] = config_lib.make_config(preset=model, features=fm, pool_size=pool, arg="reference")
  for row, preset, fm, _ in SCALES["full"].table5_models:
    config = config_lib.make_comparison_config(preset=preset, arg=None)
    config.model.features = fm
    configs[ROW_OF[row]] = config
  return configs


def measure(config, num_folds: int, epochs: int) -> tuple[float, float, int]:
  """(compile + warm-up epoch seconds, seconds per fold-epoch, devices) of `config`'s program."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from rcn_jax import data, folds, sample_list  # pylint: disable=g-import-not-at-top
  from rcn_jax.engine import plan, strategies  # pylint: disable=g-import-not-at-top
  from rcn_jax.engine.program import Data, SlotTables  # pylint: disable=g-import-not-at-top

  listed = sample_list.read_official_list()
  subjects = np.asarray([s.subject for s in listed])
  datasets = np.asarray([s.dataset for s in listed])
  labels = np.asarray([s.label for s in listed], np.int32)
  size = data.configured_resolution(config.data)
  inputs = np.random.default_rng(0).random((len(listed), size, size, 3), np.float32)
  all_folds = folds.make_folds(subjects, datasets)
  run_folds = all_folds[:num_folds]
  devices = jax.devices()
  strategy = strategies.resolve_strategy(config.parallel.strategy, devices)
  per_call = strategies.resolve_models_per_call(strategy, config.parallel.models_per_call)
  layout = folds.layout_models(run_folds, (0,), strategies.slot_multiple(strategy, len(devices), per_call))
  # Every epoch has the steps of the largest training set of all 68 folds, as in the full run.
  program = plan.create_program(config, max(len(f.train_indices) for f in all_folds))
  init_keys, train_keys = plan.model_keys(layout)
  test_indices, _ = layout.test_table()
  executor = strategies.make_executor(
      strategy, program, devices, tables=SlotTables(train_keys, layout.train_mask(len(labels)), test_indices),
      data=Data(inputs, labels), models_per_call=per_call)
  started = time.perf_counter()
  state = jax.block_until_ready(executor.train_epoch(executor.init(init_keys), 0))
  warm = time.perf_counter() - started
  started = time.perf_counter()
  for epoch in range(1, epochs + 1):
    state = executor.train_epoch(state, epoch % max(config.train.num_epochs, 1))
  jax.block_until_ready(state)
  per_fold_epoch = (time.perf_counter() - started) / (epochs * num_folds)
  return warm, per_fold_epoch, len(devices)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--folds", type=int, default=2, help="folds measured per row")
  parser.add_argument("--epochs", type=int, default=1, help="timed epochs per row (after one warm-up epoch)")
  parser.add_argument("--seeds", type=int, default=3, help="seeds of the study (its full scale: 3)")
  parser.add_argument("--rows", default="", help="comma-separated Table V rows (default: all)")
  args = parser.parse_args()
  configs = row_configs()
  wanted = [r for r in args.rows.split(",") if r] or list(configs)
  print(f"CPU: {os.cpu_count()} cores; measuring {args.folds} fold(s) x {args.epochs} epoch(s) per row, "
        f"extrapolating to {ALL_FOLDS} folds x {args.seeds} seed(s) x the recipe's epochs")
  print("| row | idle before | compile + warm-up s | s per fold-epoch | recipe epochs | extrapolated h |")
  print("|---|---:|---:|---:|---:|---:|")
  total = 0.0
  for row in wanted:
    config = configs[row]
    idle = idle_share()
    warm, per_fold_epoch, devices = measure(config, args.folds, args.epochs)
    seconds = warm + per_fold_epoch * ALL_FOLDS * config.train.num_epochs * args.seeds
    total += seconds
    label = "" if idle >= QUIET else " (under load)"
    print(f"| {row} | {idle:.2f}{label} | {warm:.1f} | {per_fold_epoch:.3f} | {config.train.num_epochs} | "
          f"{seconds / 3600:.1f} |", flush=True)
  print(f"total extrapolated: {total / 3600:.1f} h wall-clock on {devices} host device(s) "
        f"({math.ceil(total * devices / 3600)} device-hours)")


if __name__ == "__main__":
  main()

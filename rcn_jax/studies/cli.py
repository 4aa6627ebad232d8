"""The command line of the studies: `python -m rcn_jax.studies --study=NAME --workdir=DIR ...`."""

from __future__ import annotations

import argparse
import importlib
import os
from collections.abc import Sequence

from data_prep import inference
from rcn_jax import errors
from rcn_jax.engine import multihost
from rcn_jax.studies.definitions import STUDIES, run_study
from rcn_jax.studies.runner import Runner
from rcn_jax.studies.sources import DataSource, NamedData, tiny_frame_data
from rcn_jax.studies.specs import SCALES


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  """The command-line arguments; `--help` shows the package docstring (the studies and their sweeps)."""
  # The usage lives in the package docstring; the package is fully imported by the time this runs.
  usage = importlib.import_module(__package__).__doc__
  parser = argparse.ArgumentParser(prog="python -m rcn_jax.studies", description=usage,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--study", required=True, help=f"one of {sorted(STUDIES)}, or all")
  parser.add_argument("--workdir", default="runs/studies", help="output folder; runs are kept in WORKDIR/runs/")
  parser.add_argument("--scale", default="full", choices=sorted(SCALES))
  parser.add_argument("--data", default="synthetic", choices=("synthetic", "megc2019"),
                      help="flow-map dataset of the runs (full scale; tiny uses built-in frames)")
  parser.add_argument("--data_dir", help="TFDS data dir ($RCN_JAX_DATA_DIR or ~/.cache/rcn_jax)")
  parser.add_argument("--flow_backend", default="tvl1", help="which flow build to read (default tvl1)")
  parser.add_argument("--magnified_data_dir", help="the magnified megc2019 dataset (python -m data_prep.magnify); "
                      "default WORKDIR/data_magnified, built there for the synthetic composite")
  parser.add_argument("--mm_alpha", type=float, default=10.0, help="magnification factor alpha (default 10)")
  parser.add_argument("--training", default="default", choices=("default", "paper", "reference"),
                      help="training preset of rcn_jax/config.py")
  parser.add_argument("--seeds", type=int, help="seeds 0..N-1 of every table5 run (default: the scale's)")
  parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes for building data")
  parser.add_argument("--dry_run", action="store_true", help="list the runs and whether they are finished")
  parser.add_argument("--distributed", action="store_true",
                      help="join JAX's distributed runtime, detecting the cluster (docs/distributed.md)")
  parser.add_argument("--coordinator_address", help="host:port of process 0 of a multi-process study")
  parser.add_argument("--num_processes", type=int, help="processes of a multi-process study")
  parser.add_argument("--process_id", type=int, help="this process's index, 0..num_processes-1")
  errors.add_verbosity_argument(parser)
  return parser.parse_args(argv)


def make_data(args: argparse.Namespace) -> DataSource:
  """The data source the arguments describe."""
  if args.scale == "tiny":
    return tiny_frame_data(magnification=inference.MagnificationConfig(alpha=args.mm_alpha, levels=3))
  magnified_dir = args.magnified_data_dir
  if magnified_dir is None and args.data == "synthetic":
    magnified_dir = os.path.join(args.workdir, "data_magnified")
  return NamedData(args.data, args.data_dir, args.flow_backend, inference.MagnificationConfig(alpha=args.mm_alpha),
                   magnified_dir, args.workers)


def main(argv: Sequence[str] | None = None) -> int:
  """Runs the command line; returns the exit status."""
  args = parse_args(argv)
  return errors.run_main(lambda: _run_studies(args), verbose=args.verbosity > 0)


def _run_studies(args: argparse.Namespace) -> None:
  names = sorted(STUDIES) if args.study == "all" else [args.study]
  if any(n not in STUDIES for n in names):
    raise errors.UserError(f"--study={args.study!r}: expected one of {sorted(STUDIES)} or all")
  if args.seeds is not None and args.seeds < 1:
    raise errors.UserError(f"--seeds={args.seeds}: give at least one seed")
  if args.distributed or any(v is not None for v in (args.coordinator_address, args.num_processes,
                                                      args.process_id)):
    multihost.initialize(args.coordinator_address, args.num_processes, args.process_id)
  runner = Runner(args.workdir, SCALES[args.scale], make_data(args), args.training, args.dry_run,
                  main_process=multihost.is_main(), seeds=tuple(range(args.seeds)) if args.seeds else None)
  for name in names:
    outputs = run_study(name, runner)
    if runner.writes:
      print(f"{name}: {os.path.join(args.workdir, name + '.md')} and {len(outputs.figures)} figure(s)")

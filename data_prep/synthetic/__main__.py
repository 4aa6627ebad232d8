"""Builds the synthetic composite's flow-map dataset ahead of a run, and prints where and how long.

  python -m data_prep.synthetic [--data-dir=DIR] [--backend=tvl1] [--workers=N]
  python -m data_prep.synthetic --frames-only   # time the generator alone (no flow, nothing written)

Training builds it on first use anyway (`rcn_jax.data.load_composite('synthetic')`).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from data_prep.synthetic import generate
from rcn_jax import errors


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m data_prep.synthetic", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--data-dir", help="TFDS data dir ($RCN_JAX_DATA_DIR or ~/.cache/rcn_jax)")
  parser.add_argument("--backend", default="tvl1", help="flow backend (default tvl1)")
  parser.add_argument("--workers", type=int, help="worker processes (default: one per core)")
  parser.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
  parser.add_argument("--frames-only", action="store_true",
                      help="generate every sample's frames and motion in this process, timed")
  errors.add_verbosity_argument(parser)
  args = parser.parse_args(argv)
  return errors.run_main(lambda: _build(args), verbose=args.verbosity > 0)


def _build(args: argparse.Namespace) -> int:
  config = generate.SyntheticConfig(seed=args.seed)
  start = time.perf_counter()
  if args.frames_only:
    count = sum(1 for _ in generate.generate_composite(config))
    print(f"generated {count} samples (onset, apex, true motion) in "
          f"{time.perf_counter() - start:.1f} s, one process")
    return 0
  from data_prep.synthetic.builder import ensure_built  # pylint: disable=g-import-not-at-top

  directory = ensure_built(args.data_dir, backend=args.backend, generator_config=config,
                           workers=args.workers)
  print(f"{directory} ready in {time.perf_counter() - start:.1f} s")
  return 0


if __name__ == "__main__":
  sys.exit(main())

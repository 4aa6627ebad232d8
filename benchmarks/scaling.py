"""LOSO training time against device count: how the fold axis scales over devices.

Each device count runs in its own worker process (the workers of `loso_throughput.py`): on CPU
the devices are forced host devices (`--xla_force_host_platform_device_count`), with the
`loop` strategy on one device and `shard_map` on more; on an accelerator they are the first d
real devices with `vmap`. Every worker compiles and warms up first; then the driver times the same
F folds x E epochs on each, round after round (the order rotates). Printed per device count:
seconds per epoch of the F folds, fold-epochs per second, speed-up and parallel efficiency
against one device, the projected 68-fold x 100-epoch time, compile time and peak memory.

  python benchmarks/scaling.py                      # 1, 2, 4, 8 devices, rcn_f, 16 folds
  python benchmarks/scaling.py --devices=1,2 --folds=8 --rounds=2

On a CPU of n cores, counts above n share the cores, so their speed-up stops at about n: the
figure to read there is that padding and more slots cost nothing. For several processes see
docs/distributed.md; every process then runs its devices' share of the same program.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import loso_throughput  # pylint: disable=g-import-not-at-top,wrong-import-position


def _variant(args, devices: int, backend: str) -> tuple[str, list[str], int]:
  """(name, worker argv, forced host devices) of one device count."""
  if backend == "cpu":
    strategy, forced, used = ("loop" if devices == 1 else "shard_map"), devices, 0
  else:
    strategy, forced, used = "vmap", 1, devices
  argv = ["--worker=jax", "--model", args.model, "--folds", str(args.folds), "--epochs", str(args.epochs),
          "--strategy", strategy, "--per-call", "1", "--num-devices", str(used)]
  return f"{devices} {backend} device(s), {strategy}", argv, forced


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--devices", default="1,2,4,8", help="comma-separated device counts")
  parser.add_argument("--model", default="rcn_f", choices=sorted(loso_throughput.MODELS))
  parser.add_argument("--folds", type=int, default=16, help="folds trained per measurement")
  parser.add_argument("--epochs", type=int, default=1, help="epochs per measurement")
  parser.add_argument("--rounds", type=int, default=3, help="interleaved measurement rounds")
  args = parser.parse_args()
  import jax  # pylint: disable=g-import-not-at-top
  backend = jax.default_backend()
  counts = [int(c) for c in args.devices.split(",")]
  if backend != "cpu" and max(counts) > jax.device_count():
    parser.error(f"--devices: this machine has {jax.device_count()} {backend} device(s)")
  print(f"{args.model}, {args.folds} folds x {args.epochs} epoch(s) per measurement, {args.rounds} rounds, "
        f"backend {backend} ({jax.devices()[0].device_kind})", flush=True)
  workers = []
  for count in counts:
    name, argv, forced = _variant(args, count, backend)
    print(f"warming up: {name}", flush=True)
    workers.append(loso_throughput.Worker(name, argv, forced))
  for round_index in range(args.rounds):
    shift = round_index % len(workers)
    for worker in workers[shift:] + workers[:shift]:
      worker.measure()
  finals = {worker.name: worker.finish() for worker in workers}

  baseline = statistics.median(workers[0].times)
  header = (f"{'devices':<36} {'slots':>5} {'s/epoch':>8} {'fold-epochs/s':>13} {'speed-up':>8} "
            f"{'efficiency':>10} {'68x100 proj.':>12} {'compile s':>9} {'peak MB':>8}")
  print(header)
  print("-" * len(header))
  for count, worker in zip(counts, workers):
    seconds = statistics.median(worker.times) / args.epochs
    speedup = baseline / statistics.median(worker.times)
    projected = seconds / args.folds * loso_throughput.FULL_FOLDS * loso_throughput.FULL_EPOCHS + worker.compile_s
    print(f"{worker.name:<36} {worker.slots:>5} {seconds:>8.2f} {args.folds / seconds:>13.2f} {speedup:>8.2f} "
          f"{speedup / count:>10.2f} {projected / 60:>10.1f} m {worker.compile_s:>9.1f} "
          f"{finals[worker.name][0] / 2**20:>8.0f}")


if __name__ == "__main__":
  main()

"""LOSO training throughput: rcn-jax with `launch.py`'s default settings against the official way of training.

For rcn_a (fm16, P5) and rcn_f (fm32, P5) at batch 64 on 442 samples of 60x60 with the real fold
sizes (the organisers' 68 subjects), two worker processes per model compile and warm up first:
- official: the official release's training in PyTorch (`torch_rcn.py` mirrors the official
  `RCN_A` / `RCN_F` classes layer for layer, RCN_F's reused stream 2 included): a fresh model per
  fold, folds one after another, `torch.set_num_threads(2)`, batch 64, SGD momentum 0.9, in-memory
  tensors (no DataLoader, which would only slow it down);
- rcn-jax: `rcn_jax.engine.plan`'s executor with the config defaults (`parallel.strategy=auto`,
  `models_per_call=0`) and `launch.py`'s XLA flags (`rcn_jax.xla_flags`: one host device per core,
  YNNPACK for reductions only); flags set in `XLA_FLAGS` override them. Its rcn_f is the
  paper's three-stream stem; the official class's reused stream 2 costs the same convolutions.
Then the driver runs paired rounds: both workers train the same F folds for E epochs, official
first in even rounds and rcn-jax first in odd ones. Before each measurement it waits for a quiet
machine: the idle share of all cores over one second, read from /proc/stat, must reach
`--quiet` (0.9); after `--quiet-timeout` seconds it measures anyway and LABELS the round as taken
under load. PyTorch's 2-thread OpenMP collapses when another process takes a core (rcn-jax's
one-thread devices degrade gracefully), so only quiet rounds give the comparison users expect.

Printed first: the CPU (model, cores, widest vector ISA). Printed per model: each round's idle
shares and seconds per fold-epoch, the median paired ratio official / rcn-jax with its range (also
over quiet rounds only when some were loaded), compile time, peak resident memory, and the
68 folds x 100 epochs projection.

  python benchmarks/loso_throughput.py            # both models, 8 folds x 2 epochs, 6 rounds (~10 min)
  python benchmarks/loso_throughput.py --quick    # rcn_f, 2 folds x 1 epoch, 2 rounds (~1-2 min)
  python benchmarks/loso_throughput.py --jax-variants auto,shard_map:2   # more rcn-jax settings

Without torch the rcn-jax figures are printed alone.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from rcn_jax import xla_flags

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"rcn_a": (16, 5), "rcn_f": (32, 5)}
BATCH = 64
FULL_FOLDS, FULL_EPOCHS = 68, 100
OFFICIAL = "official (PyTorch)"


def _folds_and_data(num_folds: int, seed: int = 0):
  import numpy as np  # pylint: disable=g-import-not-at-top
  from rcn_jax import folds  # pylint: disable=g-import-not-at-top
  from rcn_jax import sample_list

  listed = sample_list.read_official_list()
  subjects = np.asarray([s.subject for s in listed])
  datasets = np.asarray([s.dataset for s in listed])
  rng = np.random.default_rng(seed)
  inputs = rng.random((len(listed), 60, 60, 3), np.float32)
  labels = np.asarray([s.label for s in listed], np.int32)
  return folds.make_folds(subjects, datasets)[:num_folds], inputs, labels


def _jax_worker(args) -> None:
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  sys.path.insert(0, str(ROOT))
  from rcn_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  from rcn_jax import folds  # pylint: disable=g-import-not-at-top
  from rcn_jax.engine import plan, strategies  # pylint: disable=g-import-not-at-top
  from rcn_jax.engine.program import Data, SlotTables

  run_folds, inputs, labels = _folds_and_data(args.folds)
  features, pool = MODELS[args.model]
  config = config_lib.make_config(preset=args.model, features=features, pool_size=pool, arg=None)
  config.train.batch_size = BATCH
  strategy_name, _, models_per_call = args.variant.partition(":")
  config.parallel.strategy = strategy_name
  config.parallel.models_per_call = int(models_per_call or 0)
  devices = jax.devices()
  strategy = strategies.resolve_strategy(config.parallel.strategy, devices)
  per_call = strategies.resolve_models_per_call(strategy, config.parallel.models_per_call)
  layout = folds.layout_models(run_folds, (0,), strategies.slot_multiple(strategy, len(devices), per_call))
  program = plan.create_program(config, max(len(f.train_indices) for f in run_folds))
  init_keys, train_keys = plan.model_keys(layout)
  test_indices, _ = layout.test_table()
  executor = strategies.make_executor(
      strategy, program, devices, tables=SlotTables(train_keys, layout.train_mask(len(labels)), test_indices),
      data=Data(inputs, labels), models_per_call=per_call)
  started = time.perf_counter()
  state = jax.block_until_ready(executor.train_epoch(executor.init(init_keys), 0))
  compile_s = time.perf_counter() - started
  epoch = 1
  described = f"{strategy} x{executor.models_per_call}"
  print(f"ready {compile_s:.3f} {program.settings.steps_per_epoch} {layout.num_slots} {described}", flush=True)
  for line in sys.stdin:
    if line.strip() != "go":
      break
    started = time.perf_counter()
    for _ in range(args.epochs):
      state = executor.train_epoch(state, epoch % config.train.num_epochs)
      epoch += 1
    jax.block_until_ready(state)
    print(f"time {time.perf_counter() - started:.6f}", flush=True)
  losses = np.asarray(jax.device_get(state.loss_history))
  print(f"done {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024} {np.nanmean(losses[:len(run_folds)]):.4f}",
        flush=True)


def _torch_worker(args) -> None:
  import torch  # pylint: disable=g-import-not-at-top
  sys.path.insert(0, str(ROOT / "benchmarks"))
  from torch_rcn import train_folds_sequentially  # pylint: disable=g-import-not-at-top

  torch.set_num_threads(2)
  run_folds, inputs, labels = _folds_and_data(args.folds)
  features, pool = MODELS[args.model]
  x = torch.from_numpy(inputs).permute(0, 3, 1, 2).contiguous()
  y = torch.from_numpy(labels).long()
  indices = [torch.from_numpy(f.train_indices).long() for f in run_folds]
  started = time.perf_counter()
  train_folds_sequentially(args.model, features, pool, x, y, indices[:1], 1)
  steps = math.ceil(max(len(i) for i in indices) / BATCH)
  print(f"ready {time.perf_counter() - started:.3f} {steps} {len(indices)} 2-threads", flush=True)
  loss = float("nan")
  for line in sys.stdin:
    if line.strip() != "go":
      break
    started = time.perf_counter()
    loss = train_folds_sequentially(args.model, features, pool, x, y, indices, args.epochs)
    print(f"time {time.perf_counter() - started:.6f}", flush=True)
  print(f"done {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024} {loss:.4f}", flush=True)


def _cpu_times() -> tuple[int, int]:
  """(idle, total) jiffies of all cores since boot, from the first line of /proc/stat."""
  with open("/proc/stat") as stream:
    fields = [int(v) for v in stream.readline().split()[1:]]
  idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
  return idle, sum(fields[:8])  # user nice system idle iowait irq softirq steal


def idle_share(seconds: float = 1.0) -> float:
  """The share of CPU time all cores spent idle over the next `seconds` (1.0 on a quiet machine)."""
  idle0, total0 = _cpu_times()
  time.sleep(seconds)
  idle1, total1 = _cpu_times()
  return (idle1 - idle0) / max(total1 - total0, 1)


def wait_for_quiet(threshold: float, timeout: float) -> tuple[float, bool]:
  """Samples the idle share each second until it reaches `threshold` or `timeout` seconds pass.

  Returns:
    (the last idle share, whether it reached the threshold).
  """
  deadline = time.monotonic() + timeout
  while True:
    share = idle_share()
    if share >= threshold or time.monotonic() >= deadline:
      return share, share >= threshold


class Worker:
  """A variant in its own process: started, warmed up, then timed on request."""

  def __init__(self, name: str, argv: list[str], devices: int):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    xla_flags.apply_defaults(env, devices)
    self.name = name
    self.process = subprocess.Popen([sys.executable, __file__, *argv], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    fields = self._expect("ready")
    self.compile_s, self.steps, self.slots = float(fields[0]), int(fields[1]), int(fields[2])
    self.setting = " ".join(fields[3:])
    self.times: list[float] = []

  def _expect(self, word: str) -> list[str]:
    line = self.process.stdout.readline()
    if not line.startswith(word):
      self.process.kill()
      raise RuntimeError(f"worker {self.name} failed (expected {word!r}, got {line!r})")
    return line.split()[1:]

  def measure(self) -> float:
    self.process.stdin.write("go\n")
    self.process.stdin.flush()
    seconds = float(self._expect("time")[0])
    self.times.append(seconds)
    return seconds

  def finish(self) -> tuple[int, float]:
    self.process.stdin.write("quit\n")
    self.process.stdin.flush()
    peak, loss = self._expect("done")
    self.process.wait()
    return int(peak), float(loss)


def _variants(args) -> list[tuple[str, list[str], int]]:
  """(name, worker argv, forced host devices) of every variant to compare, the official one first."""
  cores = os.cpu_count() or 1
  common = ["--model", args.model, "--folds", str(args.folds), "--epochs", str(args.epochs)]
  variants = []
  try:
    import torch  # pylint: disable=g-import-not-at-top,unused-import
    variants.append((OFFICIAL, ["--worker=torch", *common], 1))
  except ImportError:
    print("torch is not installed: rcn-jax figures only (pip install torch for the baseline)")
  user_flags = os.environ.get("XLA_FLAGS", "").strip()
  for variant in args.jax_variants.split(","):
    name = "rcn-jax (launch.py defaults)" if variant == "auto" else f"rcn-jax {variant}"
    if user_flags:
      name += f" XLA_FLAGS={user_flags}"
    variants.append((name, ["--worker=jax", "--variant", variant, *common], cores))
  return variants


def _ratios(official: list[float], other: list[float], keep: list[bool]) -> list[float]:
  return [t / s for t, s, k in zip(official, other, keep) if k]


def _report(args, workers: list[Worker], finals: dict[str, tuple[int, float]], quiet: list[bool],
            shares: list[list[float]]) -> None:
  fold_epochs = args.folds * args.epochs
  official = next((w for w in workers if w.name == OFFICIAL), None)
  print(f"\n{args.model} (fm {MODELS[args.model][0]}, P {MODELS[args.model][1]}), batch {BATCH}, "
        f"{args.folds} folds x {args.epochs} epoch(s) per measurement, {len(quiet)} rounds "
        f"({sum(quiet)} quiet: idle share >= {args.quiet} before every measurement)")
  header = f"{'round':>5} {'idle shares':<18} " + " ".join(f"{w.name[:28]:>28}" for w in workers)
  print(header + "   s/fold-epoch")
  for index, (share, calm) in enumerate(zip(shares, quiet)):
    label = "" if calm else "  UNDER LOAD"
    cells = " ".join(f"{w.times[index] / fold_epochs:>28.3f}" for w in workers)
    print(f"{index + 1:>5} {'/'.join(f'{s:.2f}' for s in share):<18} {cells}{label}")
  print()
  for worker in workers:
    per_fold_epoch = statistics.median(worker.times) / fold_epochs
    projected = per_fold_epoch * FULL_FOLDS * FULL_EPOCHS + worker.compile_s
    peak, _ = finals[worker.name]
    line = (f"{worker.name:<30} [{worker.setting}] median {per_fold_epoch:.3f} s/fold-epoch, warm-up/compile "
            f"{worker.compile_s:.1f} s, peak {peak / 2**20:.0f} MB, 68x100 projected {projected / 60:.1f} min")
    print(line)
    if official is not None and worker is not official:
      pairs = _ratios(official.times, worker.times, [True] * len(quiet))
      print(f"  official/rcn-jax paired ratio, all rounds: median {statistics.median(pairs):.2f} "
            f"(range {min(pairs):.2f}-{max(pairs):.2f}, {len(pairs)} rounds)")
      calm = _ratios(official.times, worker.times, quiet)
      if calm and len(calm) < len(pairs):
        print(f"  quiet rounds only: median {statistics.median(calm):.2f} (range {min(calm):.2f}-{max(calm):.2f}, "
              f"{len(calm)} rounds)")
      elif not calm:
        print("  no quiet round: every figure above was taken UNDER LOAD")


def describe_cpu(cpuinfo: str = "/proc/cpuinfo") -> str:
  """`<model name>, <n> cores, <widest vector ISA>`: the figures depend on the CPU (XLA and PyTorch
  pick kernels per instruction set), so every report names it."""
  try:
    text = Path(cpuinfo).read_text()
  except OSError:
    return f"unknown CPU, {os.cpu_count()} cores"
  fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
  fields = {key.strip(): value.strip() for key, value in fields.items()}
  flags = set(fields.get("flags", "").split())
  isa = next((name for name in ("avx512f", "avx2", "avx", "sse4_2") if name in flags), "baseline x86-64")
  return f"{fields.get('model name', 'unknown CPU')}, {os.cpu_count()} cores, {isa}"


def _drive(args) -> None:
  variants = _variants(args)
  workers = []
  for name, argv, devices in variants:
    print(f"warming up: {name}", flush=True)
    workers.append(Worker(name, argv, devices))
  quiet, shares = [], []
  for round_index in range(args.rounds):
    order = workers if round_index % 2 == 0 else workers[::-1]
    round_shares, round_quiet = [], True
    for worker in order:
      share, calm = wait_for_quiet(args.quiet, args.quiet_timeout)
      round_shares.append(share)
      round_quiet &= calm
      worker.measure()
    quiet.append(round_quiet)
    shares.append(round_shares)
    print(f"round {round_index + 1}: idle {'/'.join(f'{s:.2f}' for s in round_shares)}"
          f"{'' if round_quiet else ' (UNDER LOAD)'}, " + ", ".join(
              f"{w.name} {w.times[-1] / (args.folds * args.epochs):.3f}" for w in order), flush=True)
  finals = {w.name: w.finish() for w in workers}
  _report(args, workers, finals, quiet, shares)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--models", default="rcn_a,rcn_f", help="comma-separated: rcn_a, rcn_f")
  parser.add_argument("--folds", type=int, default=8, help="folds trained per measurement")
  parser.add_argument("--epochs", type=int, default=2, help="epochs per measurement")
  parser.add_argument("--rounds", type=int, default=6, help="paired measurement rounds")
  parser.add_argument("--quiet", type=float, default=0.9, help="idle share to wait for before a measurement")
  parser.add_argument("--quiet-timeout", type=float, default=20.0,
                      help="seconds to wait for it; then the round is measured and labelled as under load")
  parser.add_argument("--jax-variants", default="auto",
                      help="rcn-jax settings, comma-separated: auto (launch.py defaults) or "
                           "STRATEGY[:MODELS_PER_CALL], e.g. shard_map:2")
  parser.add_argument("--quick", action="store_true", help="rcn_f only, 2 folds x 1 epoch, 2 rounds")
  parser.add_argument("--worker", choices=("jax", "torch"), help=argparse.SUPPRESS)
  parser.add_argument("--model", help=argparse.SUPPRESS)
  parser.add_argument("--variant", default="auto", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker == "jax":
    return _jax_worker(args)
  if args.worker == "torch":
    return _torch_worker(args)
  if args.quick:
    args.models, args.folds, args.epochs, args.rounds, args.quiet_timeout = "rcn_f", 2, 1, 2, 5.0
  print(f"CPU: {describe_cpu()}", flush=True)
  for model in args.models.split(","):
    if model not in MODELS:
      parser.error(f"--models: unknown model {model!r}; expected {sorted(MODELS)}")
    args.model = model
    _drive(args)
  return None


if __name__ == "__main__":
  main()

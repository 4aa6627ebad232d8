"""LOSO training throughput: rcn-jax's fold-parallel strategies against sequential PyTorch.

For rcn_a (fm16, P5) and rcn_f (fm32, P5) at batch 64 on 442 samples of 60x60 with the real
fold sizes (the organisers' 68 subjects), each variant runs in its own worker process: it compiles
and warms up first, then the driver asks the workers in turn, round after round (the order rotates),
to train the same F folds for E epochs. On a shared machine only such interleaved, paired
measurements are comparable. Printed per variant: seconds per fold-epoch, fold-steps per second,
the projected wall time of 68 folds x 100 epochs (compile included), compile time, peak resident
memory, and the median over rounds of the paired ratio PyTorch time / variant time.

  python benchmarks/loso_throughput.py            # all strategies of this backend, 3 rounds
  python benchmarks/loso_throughput.py --quick    # rcn_f only, 2 rounds

PyTorch (`pip install torch`) is optional: without it the JAX figures are printed alone. The
PyTorch baseline is the official way of training: folds one after another, a fresh model per fold,
batch 64, in-memory tensors, 2 threads (idealised: no DataLoader).
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

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"rcn_a": (16, 5), "rcn_f": (32, 5)}
BATCH = 64
FULL_FOLDS, FULL_EPOCHS = 68, 100


def _folds_and_data(num_folds: int, seed: int = 0):
  import numpy as np  # pylint: disable=g-import-not-at-top
  from rcn_jax import folds, protocol  # pylint: disable=g-import-not-at-top

  listed = protocol.read_official_list()
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
  from configs import base  # pylint: disable=g-import-not-at-top
  from rcn_jax import folds, strategies, train  # pylint: disable=g-import-not-at-top

  run_folds, inputs, labels = _folds_and_data(args.folds)
  features, pool = MODELS[args.model]
  config = base.make_config(preset=args.model, features=features, pool_size=pool, arg=None)
  config.train.batch_size = BATCH
  config.parallel.steps_per_call = args.steps_per_call
  devices = jax.local_devices()[:args.num_devices or None]
  strategy = args.strategy
  layout = folds.layout_models(run_folds, (0,), strategies.slot_multiple(strategy, len(devices), args.per_call))
  program = train.create_program(config, max(len(f.train_indices) for f in run_folds))
  init_keys, train_keys = train.model_keys(layout)
  test_indices, _ = layout.test_table()
  executor = strategies.make_executor(strategy, program, devices, models_per_call=args.per_call, inputs=inputs,
                                      labels=labels, keys=train_keys, train_mask=layout.train_mask(len(labels)),
                                      test_indices=test_indices)
  started = time.perf_counter()
  state = jax.block_until_ready(executor.train_epoch(executor.init(init_keys), 0))
  compile_s = time.perf_counter() - started
  epoch = 1
  print(f"ready {compile_s:.3f} {program.settings.steps_per_epoch} {layout.num_slots}", flush=True)
  for line in sys.stdin:
    if line.strip() != "go":
      break
    started = time.perf_counter()
    for _ in range(args.epochs):
      state = executor.train_epoch(state, epoch % config.train.num_epochs)
      epoch += 1
    jax.block_until_ready(state)
    print(f"time {time.perf_counter() - started:.6f}", flush=True)
  losses = np.asarray(jax.device_get(state["loss_history"]))
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
  print(f"ready {time.perf_counter() - started:.3f} {steps} {len(indices)}", flush=True)
  loss = float("nan")
  for line in sys.stdin:
    if line.strip() != "go":
      break
    started = time.perf_counter()
    loss = train_folds_sequentially(args.model, features, pool, x, y, indices, args.epochs)
    print(f"time {time.perf_counter() - started:.6f}", flush=True)
  print(f"done {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024} {loss:.4f}", flush=True)


class Worker:
  """A variant in its own process: started, warmed up, then timed on request."""

  def __init__(self, name: str, argv: list[str], devices: int):
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", PYTHONUNBUFFERED="1")
    self.name = name
    self.process = subprocess.Popen([sys.executable, __file__, *argv], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    fields = self._expect("ready")
    self.compile_s, self.steps, self.slots = float(fields[0]), int(fields[1]), int(fields[2])
    self.times: list[float] = []

  def _expect(self, word: str) -> list[str]:
    line = self.process.stdout.readline()
    if not line.startswith(word):
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
  """(name, worker argv, forced host devices) of every variant to compare."""
  import jax  # pylint: disable=g-import-not-at-top
  cores = os.cpu_count() or 1
  common = ["--model", args.model, "--folds", str(args.folds), "--epochs", str(args.epochs)]
  jax_args = lambda strategy, per_call, steps=0: [
      "--worker=jax", "--strategy", strategy, "--per-call", str(per_call), "--steps-per-call", str(steps), *common]
  variants = []
  if jax.default_backend() == "cpu":
    variants.append(("jax loop (1 device, 1 model/call)", jax_args("loop", 1), 1))
    if cores > 1:
      variants.append((f"jax shard_map ({cores} devices, 1 model/call)", jax_args("shard_map", 1), cores))
      variants.append((f"jax shard_map ({cores} devices, 2 models/call)", jax_args("shard_map", 2), cores))
    if args.with_cpu_vmap:
      variants.append(("jax vmap (1 device)", jax_args("vmap", 1), 1))
  else:
    variants.append((f"jax vmap ({jax.device_count()} {jax.default_backend()})", jax_args("vmap", 1), 1))
  try:
    import torch  # pylint: disable=g-import-not-at-top,unused-import
    variants.append(("pytorch, folds in sequence (2 threads)", ["--worker=torch", *common], 1))
  except ImportError:
    print("torch is not installed: JAX figures only (pip install torch for the baseline)")
  return variants


def _report(args, workers: list[Worker], finals: dict[str, tuple[int, float]]) -> None:
  torch_worker = next((w for w in workers if w.name.startswith("pytorch")), None)
  print(f"\n{args.model} (fm {MODELS[args.model][0]}, P {MODELS[args.model][1]}), batch {BATCH}, "
        f"{args.folds} folds x {args.epochs} epoch(s) per measurement, {len(workers[0].times)} rounds")
  header = (f"{'variant':<44} {'s/fold-epoch':>12} {'fold-steps/s':>12} {'68x100 proj.':>12} "
            f"{'compile s':>9} {'peak MB':>8} {'torch/this':>10}")
  print(header)
  print("-" * len(header))
  for worker in workers:
    per_fold_epoch = statistics.median(worker.times) / (args.folds * args.epochs)
    projected = per_fold_epoch * FULL_FOLDS * FULL_EPOCHS + worker.compile_s
    ratio = ""
    if torch_worker is not None:
      ratio = f"{statistics.median(t / s for t, s in zip(torch_worker.times, worker.times)):.2f}"
    peak, _ = finals[worker.name]
    print(f"{worker.name:<44} {per_fold_epoch:>12.3f} {worker.steps / per_fold_epoch:>12.1f} "
          f"{projected / 60:>10.1f} m {worker.compile_s:>9.1f} {peak / 2**20:>8.0f} {ratio:>10}")
  print("(ratios are medians of per-round pairs; the range of the pairs for the fastest JAX variant: ", end="")
  best = min((w for w in workers if w is not torch_worker), key=lambda w: statistics.median(w.times))
  if torch_worker is not None:
    pairs = [t / s for t, s in zip(torch_worker.times, best.times)]
    print(f"{best.name}: {min(pairs):.2f}-{max(pairs):.2f})")
  else:
    print("no PyTorch baseline)")


def _drive(args) -> None:
  variants = _variants(args)
  workers = []
  for name, argv, devices in variants:
    print(f"warming up: {name}", flush=True)
    workers.append(Worker(name, argv, devices))
  for round_index in range(args.rounds):
    shift = round_index % len(workers)
    for worker in workers[shift:] + workers[:shift]:
      worker.measure()
  finals = {w.name: w.finish() for w in workers}
  _report(args, workers, finals)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--models", default="rcn_a,rcn_f", help="comma-separated: rcn_a, rcn_f")
  parser.add_argument("--folds", type=int, default=8, help="folds trained per measurement")
  parser.add_argument("--epochs", type=int, default=1, help="epochs per measurement")
  parser.add_argument("--rounds", type=int, default=3, help="interleaved measurement rounds")
  parser.add_argument("--quick", action="store_true", help="rcn_f only, 2 rounds")
  parser.add_argument("--with-cpu-vmap", action="store_true", help="also time vmap on CPU (slow)")
  parser.add_argument("--worker", choices=("jax", "torch"), help=argparse.SUPPRESS)
  parser.add_argument("--model", help=argparse.SUPPRESS)
  parser.add_argument("--strategy", help=argparse.SUPPRESS)
  parser.add_argument("--per-call", type=int, default=1, help=argparse.SUPPRESS)
  parser.add_argument("--steps-per-call", type=int, default=0, help=argparse.SUPPRESS)
  parser.add_argument("--num-devices", type=int, default=0, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker == "jax":
    return _jax_worker(args)
  if args.worker == "torch":
    return _torch_worker(args)
  if args.quick:
    args.models, args.rounds = "rcn_f", 2
  for model in args.models.split(","):
    if model not in MODELS:
      parser.error(f"--models: unknown model {model!r}; expected {sorted(MODELS)}")
    args.model = model
    _drive(args)
  return None


if __name__ == "__main__":
  main()

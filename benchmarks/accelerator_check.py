"""One table of what must hold and how fast rcn-jax runs on this machine's accelerator.

Rows (each one check; a failing check is reported, the others still run):
- devices: what JAX sees (platform, kind, memory);
- vmap = loop: the accelerators' strategy (`vmap`, in blocks) against one model at a time (`loop`),
  per model, within float32 tolerance (predictions of a tiny LOSO run, 1e-4);
- parity float32: `tests/models/test_model_parity.py`'s float32 checks (they run under
  `jax.default_matmul_precision("highest")`; on GPUs float32 convolutions otherwise use TF32);
- rcn_f reference: the full 68-fold LOSO, reference preset (100 epochs), on the built-in data
  (built first if missing): training wall time, compilation (first epoch minus a later one), peak
  device memory;
- official PyTorch: the same model trained the official way (fresh model per fold, folds in
  sequence, batch 64) on the same device when torch sees it, timed on a few folds and epochs and
  projected to 68 x 100, and the ratio official / rcn-jax;
- flow: `jax_tvl1` for the 442 synthetic pairs on the device against OpenCV's TV-L1 on the CPU;
- search: a first-order architecture search (`configs/search.py`) on the device: wall time.

  python benchmarks/accelerator_check.py            # on a GPU or TPU machine, under 8 minutes
  python benchmarks/accelerator_check.py --quick    # tiny versions of every row, on any machine (CPU)
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import multiprocessing
import os
import resource
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import jax
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from configs import rcn_f as rcn_f_config  # noqa: E402  pylint: disable=wrong-import-position
from configs import search as search_config  # noqa: E402  pylint: disable=wrong-import-position
from rcn_jax import folds, train  # noqa: E402  pylint: disable=wrong-import-position
from rcn_jax.engine import plan  # noqa: E402  pylint: disable=wrong-import-position
from rcn_jax import sample_list
from rcn_jax.data import Composite  # noqa: E402  pylint: disable=wrong-import-position

FULL_FOLDS, FULL_EPOCHS = 68, 100


def tiny_composite(samples_per_subject: int = 4, size: int = 16, seed: int = 0) -> Composite:
  """6 subjects over two datasets; the class shifts the map's mean, so a model can learn it."""
  rng = np.random.default_rng(seed)
  labels = np.tile([0, 1, 2, 0], 6 * samples_per_subject // 4)
  flows = 0.5 * rng.random((len(labels), size, size, 3)) + 0.25 * labels[:, None, None, None]
  return Composite(flows=flows.astype(np.float32), labels=labels,
                   subjects=np.repeat(["sub01", "sub02", "sub03", "s01", "s02", "s03"], samples_per_subject),
                   datasets=np.repeat(["casme2", "smic"], 3 * samples_per_subject),
                   samples=np.array([f"clip{i:03d}" for i in range(len(labels))]))


def peak_device_bytes() -> int | None:
  """The first device's peak allocation (accelerators), or None where it is not reported (CPU)."""
  stats = jax.devices()[0].memory_stats() or {}
  return stats.get("peak_bytes_in_use")


def _peak_text() -> str:
  peak = peak_device_bytes()
  if peak is not None:
    return f"peak device memory {peak / 2**30:.2f} GiB"
  return f"peak host RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB"


def check_devices(quick: bool) -> tuple[str, str]:
  del quick
  devices = jax.devices()
  limit = (devices[0].memory_stats() or {}).get("bytes_limit")
  memory = f", {limit / 2**30:.1f} GiB each" if limit else ""
  return "ok", f"{len(devices)} x {devices[0].platform} {devices[0].device_kind}{memory}"


def check_vmap_equals_loop(quick: bool) -> tuple[str, str]:
  """Per-model predictions of `vmap` (2 models per call) and `loop` after 2 epochs of a tiny run."""
  del quick
  composite = tiny_composite()
  probabilities = {}
  for strategy in ("vmap", "loop"):
    config = rcn_f_config.get_config("smoke")
    config.model.features, config.model.pool_size = 4, 2
    config.protocol.max_folds = 0
    config.train.update(batch_size=8, learning_rate=0.05)
    config.parallel.update(strategy=strategy, models_per_call=2)
    run = plan.plan_run(config, composite, jax.devices()[:1])
    state = run.executor.init(run.init_keys)
    for epoch in range(2):
      state = run.executor.train_epoch(state, epoch)
    probabilities[strategy] = run.executor.predict(state)[:run.layout.num_models]
  difference = float(np.abs(probabilities["vmap"] - probabilities["loop"]).max())
  learned = float(np.abs(probabilities["loop"] - 1 / 3).max())
  status = "ok" if difference <= 1e-4 and learned > 1e-3 else "FAIL"
  return status, f"{run.layout.num_models} models, max abs(vmap - loop) = {difference:.1e} (tolerance 1e-4)"


def check_parity(quick: bool) -> tuple[str, str]:
  """`tests/models/test_model_parity.py`'s float32 checks in a subprocess (all cases; one with --quick)."""
  selection = "float32_parity and RCN_F_fm16_p5" if quick else "float32_parity"
  command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-k", selection,
             str(ROOT / "tests" / "models" / "test_model_parity.py")]
  done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
  summary = (done.stdout.strip().splitlines() or ["no output"])[-1]
  return ("ok" if done.returncode == 0 else "FAIL"), f"matmul precision highest: {summary}"


def _reference_config(quick: bool):
  config = rcn_f_config.get_config("reference")
  config.report.bootstrap_resamples = 0
  if quick:
    config.model.features, config.model.pool_size = 8, 2
    config.data.resolution = 16
    config.train.num_epochs = 3
  return config


def check_reference_run(quick: bool, state: dict) -> tuple[str, str]:
  """The 68-fold rcn_f reference run (quick: a tiny composite, 3 epochs)."""
  config = _reference_config(quick)
  composite = tiny_composite() if quick else None
  with tempfile.TemporaryDirectory() as workdir:
    results = train.train_and_evaluate(config, workdir, composite=composite)
  timings, epochs = results["timings"], results["training"]["epochs_trained_max"]
  later = (timings["train_s"] - timings["first_epoch_s"]) / max(epochs - 1, 1)
  state["jax_train_s"], state["jax_per_epoch_s"], state["folds"] = timings["train_s"], later, results["training"]["folds"]
  execution = results["execution"]
  return "ok", (f"{results['training']['folds']} folds x {epochs} epochs, {execution['strategy']} "
                f"x{execution['models_per_call']}: training {timings['train_s']:.1f} s, compile "
                f"~{max(timings['first_epoch_s'] - later, 0):.1f} s, {_peak_text()}, UAR {results['uar']:.3f}")


def check_official(quick: bool, state: dict) -> tuple[str, str]:
  """The official way of training on the same device, projected to the reference run's size."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    return "skipped", "torch is not installed"
  from torch_rcn import train_folds_sequentially  # pylint: disable=g-import-not-at-top
  from rcn_jax.data import load_configured  # pylint: disable=g-import-not-at-top

  config = _reference_config(quick)
  composite = tiny_composite() if quick else load_configured(config.data)
  device = "cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu"
  if device == "cpu":
    torch.set_num_threads(2)  # the official script's CPU setting
  run_folds = folds.make_folds(composite.subjects, composite.datasets)
  timed_folds, timed_epochs = (2, 1) if quick else (4, 5)
  x = torch.from_numpy(np.asarray(composite.flows, np.float32)).permute(0, 3, 1, 2).contiguous().to(device)
  y = torch.from_numpy(np.asarray(composite.labels)).long().to(device)
  indices = [torch.from_numpy(f.train_indices).long() for f in run_folds[:timed_folds]]
  features, pool = config.model.features, config.model.pool_size
  train_folds_sequentially("rcn_f", features, pool, x, y, indices[:1], 1)  # warm-up
  started = time.perf_counter()
  train_folds_sequentially("rcn_f", features, pool, x, y, indices, timed_epochs)
  if device == "cuda":
    torch.cuda.synchronize()
  per_fold_epoch = (time.perf_counter() - started) / (len(indices) * timed_epochs)
  total_folds = state.get("folds", len(run_folds))
  projected = per_fold_epoch * total_folds * config.train.num_epochs
  ratio = projected / state["jax_train_s"] if state.get("jax_train_s") else float("nan")
  return "ok", (f"torch {torch.__version__} on {device}: {per_fold_epoch:.3f} s/fold-epoch "
                f"({len(indices)} folds x {timed_epochs} epochs), projected {projected:.0f} s for "
                f"{total_folds} x {config.train.num_epochs}; official / rcn-jax = {ratio:.2f}")


def _opencv_flow_map(pair: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
  from data_prep.flowmap import compute_flow_maps  # pylint: disable=g-import-not-at-top
  return compute_flow_maps(pair[0][None], pair[1][None], backend="tvl1")[0]


def check_flow(quick: bool) -> tuple[str, str]:
  """jax_tvl1 on the device against OpenCV TV-L1 on the CPU (all cores), for the synthetic composite's pairs."""
  from data_prep.flowmap import compute_flow_maps  # pylint: disable=g-import-not-at-top
  from data_prep.synthetic import builder, generate  # pylint: disable=g-import-not-at-top

  listed = sample_list.read_official_list()
  if quick:  # 4 pairs of one dataset: one frame size, one compilation
    listed = [s for s in listed if s.dataset == listed[0].dataset][:4]
  make_pair = functools.partial(builder.grey_pair, generate.SyntheticConfig())
  workers = 1 if quick else os.cpu_count() or 1
  # Spawned workers: forking a process that runs JAX can deadlock.
  with concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
    pairs = [(onset, apex) for _, onset, apex in pool.map(make_pair, listed, chunksize=8)]
    by_shape: dict[tuple[int, int], list[int]] = {}
    for index, (onset, _) in enumerate(pairs):
      by_shape.setdefault(onset.shape, []).append(index)
    started = time.perf_counter()
    jax_maps = [None] * len(pairs)
    for members in by_shape.values():
      solved = compute_flow_maps(np.stack([pairs[i][0] for i in members]), np.stack([pairs[i][1] for i in members]),
                                 backend="jax_tvl1")
      for index, flow_map in zip(members, solved):
        jax_maps[index] = flow_map
    jax_s = time.perf_counter() - started
    started = time.perf_counter()
    opencv_maps = list(pool.map(_opencv_flow_map, pairs, chunksize=4))
    opencv_s = time.perf_counter() - started
  difference = float(np.mean([np.abs(a - b).mean() for a, b in zip(jax_maps, opencv_maps)]))
  return "ok", (f"{len(pairs)} pairs ({len(by_shape)} sizes): jax_tvl1 {jax_s:.1f} s (compilation included) vs "
                f"OpenCV TV-L1 {opencv_s:.1f} s on {workers} CPU process(es) (ratio {opencv_s / jax_s:.2f}); "
                f"mean abs difference {difference:.3f}")


def check_search(quick: bool) -> tuple[str, str]:
  """A first-order search (`configs/search.py`; quick: its smoke setting on a tiny composite)."""
  from rcn_jax.search import loop as search  # pylint: disable=g-import-not-at-top
  config = search_config.get_config("smoke" if quick else None)
  composite = None
  if quick:  # a small space: the supernet's compilation dominates a tiny search
    config.model.features, config.data.resolution = 4, 16
    config.search.update(stems=("standard",), ops=("recurrent",), steps=1, min_steps=1, max_hops=1,
                         gate_output=False, top_k=1)
    composite = tiny_composite(samples_per_subject=8)
  started = time.perf_counter()
  with tempfile.TemporaryDirectory() as workdir:
    search.run_search(config, workdir, composite=composite)
  return "ok", f"order {config.search.order}, {config.search.epochs} epochs: {time.perf_counter() - started:.1f} s"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true", help="tiny versions of every check (any machine)")
  parser.add_argument("--checks", default="devices,vmap,parity,reference,official,flow,search",
                      help="comma-separated subset of the rows")
  args = parser.parse_args()
  state: dict = {}
  checks = {
      "devices": check_devices, "vmap": check_vmap_equals_loop, "parity": check_parity,
      "reference": lambda quick: check_reference_run(quick, state),
      "official": lambda quick: check_official(quick, state),
      "flow": check_flow, "search": check_search}
  names = {"devices": "devices", "vmap": "vmap = loop (float32)", "parity": "parity float32",
           "reference": "rcn_f reference 68 folds", "official": "official PyTorch", "flow": "flow 442 pairs",
           "search": "search (first order)"}
  rows = []
  started = time.perf_counter()
  for key in args.checks.split(","):
    if key not in checks:
      parser.error(f"--checks: unknown check {key!r}; expected {sorted(checks)}")
    check_started = time.perf_counter()
    try:
      status, detail = checks[key](args.quick)
    except Exception as error:  # pylint: disable=broad-except  (one broken row must not hide the others)
      traceback.print_exc()
      status, detail = "FAIL", f"{type(error).__name__}: {error}"
    rows.append((names[key], status, time.perf_counter() - check_started, detail))
    print(f"{names[key]}: {status} ({rows[-1][2]:.1f} s) {detail}", file=sys.stderr, flush=True)
  print(f"\naccelerator check{' (--quick)' if args.quick else ''}: JAX {jax.__version__}, "
        f"backend {jax.default_backend()}, total {time.perf_counter() - started:.0f} s")
  width = max(len(r[0]) for r in rows)
  print(f"| {'check':<{width}} | status  | seconds | result |")
  print(f"|{'-' * (width + 2)}|---------|---------|--------|")
  for name, status, seconds, detail in rows:
    print(f"| {name:<{width}} | {status:<7} | {seconds:7.1f} | {detail} |")
  sys.exit(0 if all(r[1] != "FAIL" for r in rows) else 1)


if __name__ == "__main__":
  main()

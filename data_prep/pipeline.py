"""The build's computation: every sample's flow map, cached per sample and computed in worker
processes (or, for the JAX backends, solved in batches here), then the `megc2019` TFDS dataset.

`data_prep.build` is its command line.
"""

from __future__ import annotations

import concurrent.futures
import functools
import multiprocessing
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from data_prep import InputError
from data_prep.composite import CompositeSample
from data_prep.samples import (FlowFn, SampleOutcome, SampleSettings, cache_path, compute_sample, finish_sample,
                               load_cached, prepare_sample)

DEFAULT_BATCH_SIZE = 64
BatchFlowFn = Callable[[np.ndarray, np.ndarray], np.ndarray]  # [B, H, W] x2 -> [B, H, W, 3]


def run_jobs(function: Callable, jobs: Sequence[tuple[CompositeSample, SampleSettings, Path]],
             flow_fn: FlowFn, workers: int, bar) -> dict[tuple[str, str, str], Any]:
  """`function(sample, settings, flow_fn, path)` for every job, in worker processes if `workers > 1`."""
  results = {}
  if workers <= 1:
    for sample, settings, path in jobs:
      results[_key(sample)] = function(sample, settings, flow_fn, path)
      bar.update()
    return results
  # spawn: forking a process that runs OpenCV or JAX threads can deadlock.
  context = multiprocessing.get_context("spawn")
  with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context,
                                              initializer=single_threaded) as pool:
    futures = {pool.submit(function, sample, settings, flow_fn, path): sample
               for sample, settings, path in jobs}
    for future in concurrent.futures.as_completed(futures):
      results[_key(futures[future])] = future.result()
      bar.update()
  return results


def compute_all(jobs: Sequence[tuple[CompositeSample, SampleSettings, Path]], flow_fn: FlowFn,
                workers: int, progress: bool, batch_flow_fn: BatchFlowFn | None = None,
                batch_size: int = DEFAULT_BATCH_SIZE) -> dict[tuple[str, str, str], SampleOutcome]:
  """Computes the uncached samples.

  Without `batch_flow_fn`, each worker computes whole samples. With it (the JAX backends), the
  workers prepare the frame pairs and the flow is solved here, `batch_size` pairs per call (the
  last chunk padded so every call reuses one compilation), caching each chunk as it finishes.
  """
  import tqdm  # deferred: the dry run needs no progress bar

  if batch_flow_fn is None:
    with tqdm.tqdm(total=len(jobs), desc="flow maps", unit="sample", disable=not progress) as bar:
      return run_jobs(compute_sample, jobs, flow_fn, workers, bar)
  with tqdm.tqdm(total=len(jobs), desc="frames", unit="sample", disable=not progress) as bar:
    prepared = run_jobs(prepare_sample, jobs, flow_fn, workers, bar)
  outcomes, by_shape = {}, {}
  for sample, _, _ in jobs:
    outcome, pair = prepared[_key(sample)]
    if pair is None:
      outcomes[_key(sample)] = outcome
    else:
      by_shape.setdefault(pair[0].shape, []).append((outcome, pair))
  with tqdm.tqdm(total=sum(map(len, by_shape.values())), desc="flow maps", unit="sample",
                 disable=not progress) as bar:
    for ready in by_shape.values():
      for start in range(0, len(ready), batch_size):
        chunk = ready[start:start + batch_size]
        padded = chunk + [chunk[0]] * (min(batch_size, len(ready)) - len(chunk))
        maps = batch_flow_fn(np.stack([pair[0] for _, pair in padded]),
                             np.stack([pair[1] for _, pair in padded]))
        for (outcome, pair), flow_map in zip(chunk, maps):
          outcomes[_key(outcome)] = finish_sample(outcome, pair[0].shape, flow_map)
        bar.update(len(chunk))
  return outcomes


def single_threaded() -> None:
  """One OpenCV thread per worker, and JAX (a magnified flow) on the CPU: the workers already use
  every core, and each of them claiming an accelerator's memory would exhaust it."""
  os.environ["JAX_PLATFORMS"] = "cpu"
  import cv2

  cv2.setNumThreads(1)


def _key(sample: CompositeSample | SampleOutcome) -> tuple[str, str, str]:
  return (sample.dataset, sample.subject, sample.sample)


def build_dataset(composite: Sequence[CompositeSample], settings: Mapping[str, SampleSettings],
                  flow_fn: FlowFn, *, out_dir: str | Path, cache_dir: str | Path | None = None,
                  workers: int = 1, allow_missing: bool = False, progress: bool = True,
                  batch_flow_fn: BatchFlowFn | None = None,
                  batch_size: int = DEFAULT_BATCH_SIZE) -> tuple[list[SampleOutcome], Path | None]:
  """Computes (or takes from the cache) every sample's map and writes the `megc2019` dataset.

  Args:
    composite: the matched samples, in list order.
    settings: per dataset; all share one backend.
    flow_fn: `(onset [H, W] uint8, apex [H, W] uint8) -> [H, W, 3]` float (u, v, strain).
    out_dir: the TFDS data dir.
    cache_dir: where per-sample maps are kept (default `<out_dir>/megc2019_cache/<backend>`).
    workers: worker processes (1: in this process); `flow_fn` must pickle when > 1.
    allow_missing: write the dataset without failed samples instead of raising.
    progress: show a progress bar.
    batch_flow_fn: `(onsets [B, H, W], apexes [B, H, W]) -> [B, H, W, 3]`, solving pairs in batches
      in this process (the JAX backends); `flow_fn` then serves only the max_flow apex detector.
    batch_size: pairs per `batch_flow_fn` call.
  Returns:
    Every sample's outcome, in list order, and the dataset folder (None if nothing was built).
  """
  from data_prep.flow_dataset import prepare, write_manifest  # deferred: TFDS is slow to import
  from data_prep.megc2019 import Megc2019

  backends = {s.backend for s in settings.values()}
  if len(backends) != 1:
    raise InputError(f"one flow backend per build, got {sorted(backends)}")
  backend = backends.pop()
  cache_dir = Path(cache_dir or Path(out_dir) / "megc2019_cache" / backend)
  outcomes, jobs = {}, []
  for sample in composite:
    path = cache_path(cache_dir, sample, settings[sample.dataset])
    cached = load_cached(sample, path)
    if cached is None:
      jobs.append((sample, settings[sample.dataset], path))
    else:
      outcomes[_key(sample)] = cached
  outcomes.update(compute_all(jobs, flow_fn, workers, progress, batch_flow_fn, batch_size))
  ordered = [outcomes[_key(sample)] for sample in composite]
  failures = [o for o in ordered if o.error is not None]
  if failures and not allow_missing:
    raise BuildFailed(ordered)
  built = [o for o in ordered if o.error is None]
  if not built:
    return ordered, None
  entries = [{"file": str(o.path.relative_to(cache_dir)), "label": o.label, "dataset": o.dataset,
              "subject": o.subject, "sample": o.sample, "onset_frame": o.info["onset_frame"],
              "apex_frame": o.info["apex_frame"]} for o in built]
  recorded = {"backend": backend, "datasets": sorted({o.dataset for o in built}),
              "per_dataset": {d: {k: v for k, v in vars(s).items() if k != "backend"}
                              for d, s in settings.items()}}
  write_manifest(cache_dir, entries, recorded)
  return ordered, prepare(Megc2019, out_dir, cache_dir, config=backend)


class BuildFailed(InputError):
  """Some samples failed; the message lists them and `outcomes` holds every sample's outcome."""

  def __init__(self, outcomes: Sequence[SampleOutcome]):
    failed = [o for o in outcomes if o.error is not None]
    lines = "\n".join(f"  {o.dataset} {o.subject}/{o.sample}: {o.error}" for o in failed)
    super().__init__(f"{len(failed)} sample(s) failed (rerun with --allow-missing to build "
                     f"without them; finished samples are cached):\n{lines}")
    self.outcomes = list(outcomes)


def make_flow_fns(backend: str) -> tuple[FlowFn, BatchFlowFn | None]:
  """The per-pair flow-map function of a named backend (picklable, for worker processes), and for
  the JAX backends the batched one."""
  from data_prep.flow import BACKENDS, JAX_BACKENDS
  from data_prep.flowmap import compute_flow_map, compute_flow_maps

  if backend not in BACKENDS:
    raise InputError(f"--backend: unknown backend {backend!r}; expected one of {list(BACKENDS)}")
  batched = functools.partial(compute_flow_maps, backend=backend) if backend in JAX_BACKENDS else None
  return functools.partial(compute_flow_map, backend=backend), batched

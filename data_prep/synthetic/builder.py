"""`megc2019_synthetic`: the built-in synthetic composite as a flow-map dataset, built on first use.

The generator's frames go through data_prep's own flow pipeline (`compute_flow_map`, TV-L1 by
default), exactly as the real composite does, and land in
`<data_dir>/megc2019_synthetic/<backend>/<version>/` with the shared schema
(`data_prep.flow_dataset`), in the organisers' list order. Scores on it are not comparable with
published results on the real databases.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from data_prep import InputError, locks
from data_prep.build import default_data_dir
from data_prep.flow import BACKENDS, JAX_BACKENDS
from data_prep.flow_dataset import FlowMapBuilder, make_example
from data_prep.pipeline import single_threaded
from data_prep.synthetic import generate
from rcn_jax import sample_list

NAME = "megc2019_synthetic"
# Bump when the generated data changes (code or default config): a built folder is reused as long
# as its version and generator fingerprint match.
GENERATOR_VERSION = "1.0.0"



def _flow_map_example(config: generate.SyntheticConfig, backend: str,
                      listed: sample_list.ListedSample) -> dict[str, Any]:
  """Generates one sample and computes its flow map (runs in a worker process)."""
  from data_prep.flowmap import compute_flow_map

  sample = generate.generate_sample(config, listed)
  flow_map = compute_flow_map(sample.onset, sample.apex, backend=backend)
  return _example(sample.plan, flow_map)


def grey_pair(config: generate.SyntheticConfig,
              listed: sample_list.ListedSample) -> tuple[generate.SamplePlan, np.ndarray, np.ndarray]:
  """A listed sample's plan and its onset and apex frames as uint8 grey `[H, W]`."""
  from data_prep.flowmap import to_grey  # pylint: disable=g-import-not-at-top

  sample = generate.generate_sample(config, listed)
  return sample.plan, to_grey(sample.onset, "onset"), to_grey(sample.apex, "apex")


def _example(plan: generate.SamplePlan, flow_map: np.ndarray) -> dict[str, Any]:
  return make_example(flow_map, label=plan.label, dataset=plan.dataset, subject=plan.subject,
                      sample=plan.sample, onset_frame=plan.onset_frame, apex_frame=plan.apex_frame)


def _ordered_map(function, items: Sequence[Any], workers: int, progress: bool,
                 desc: str) -> Iterator[Any]:
  """`function` over `items` in worker processes, results in the items' order, with a progress
  bar."""
  import tqdm

  with tqdm.tqdm(total=len(items), desc=desc, unit="sample", disable=not progress) as bar:
    if workers <= 1:
      for item in items:
        yield function(item)
        bar.update()
      return
    # spawn: forking a process that already runs OpenCV or JAX threads can deadlock.
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=single_threaded) as pool:
      for result in pool.imap(function, items, chunksize=2):
        yield result
        bar.update()


def flow_map_examples(config: generate.SyntheticConfig, backend: str = "tvl1", *,
                      listed: Sequence[sample_list.ListedSample] | None = None,
                      workers: int | None = None, progress: bool = True,
                      batch_size: int = 32) -> Iterator[dict[str, Any]]:
  """Generates the synthetic composite and computes its flow maps, in the organisers' order.

  OpenCV backends run whole samples in `workers` processes. JAX backends get their frames from
  the workers and solve the flow here, in batches of same-sized frames (each size compiles once).

  Args:
    config: the generator's config.
    backend: flow backend, one of `data_prep.flow.BACKENDS`.
    listed: the samples to make (default: the organisers' whole list, in its order).
    workers: worker processes (default: one per CPU core).
    progress: show a tqdm progress bar.
    batch_size: pairs per JAX call.
  Yields:
    Examples of the flow-map schema (`data_prep.flow_dataset.make_example`).
  """
  if backend not in BACKENDS:
    raise InputError(f"unknown flow backend {backend!r}; expected one of {list(BACKENDS)}")
  listed = sample_list.read_official_list() if listed is None else list(listed)
  if workers is None:
    workers = os.cpu_count() or 1
  if backend not in JAX_BACKENDS:
    yield from _ordered_map(functools.partial(_flow_map_example, config, backend), listed, workers,
                            progress, f"{NAME} flow maps ({backend})")
    return
  from data_prep.flowmap import compute_flow_maps

  pairs = list(_ordered_map(functools.partial(grey_pair, config), listed, workers, progress,
                            f"{NAME} frames"))
  maps = [None] * len(pairs)
  by_shape: dict[tuple[int, int], list[int]] = {}
  for index, (_, onset, _) in enumerate(pairs):
    by_shape.setdefault(onset.shape, []).append(index)
  for indices in by_shape.values():
    # One call per shape: it pads the last chunk, so each shape compiles once.
    solved = compute_flow_maps(np.stack([pairs[i][1] for i in indices]), np.stack([pairs[i][2] for i in indices]),
                               backend=backend, batch_size=batch_size)
    for index, flow_map in zip(indices, solved):
      maps[index] = flow_map
  for (plan, _, _), flow_map in zip(pairs, maps):
    yield _example(plan, flow_map)


class Megc2019Synthetic(FlowMapBuilder):
  """The synthetic MEGC2019 composite; the config names the optical-flow backend."""

  name = NAME
  VERSION = tfds.core.Version(GENERATOR_VERSION)
  RELEASE_NOTES = {
      GENERATOR_VERSION: "Procedural faces, action-unit motion, three imitated domains."}
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=backend, description=f"{backend} optical flow")
                     for backend in BACKENDS]
  DESCRIPTION = (
      "SYNTHETIC stand-in for the MEGC2019 composite: the organisers' 442 samples (same subjects, "
      "sample names, labels and datasets) rendered as procedural faces moved by class-specific "
      "facial action units, in three imitated domains (SMIC-like, CASME II-like, SAMM-like), as "
      "full-resolution optical-flow maps [u, v, optical strain]. Not comparable with results on "
      "the real databases.")

  def __init__(self, *, generator_config: generate.SyntheticConfig = generate.SyntheticConfig(),
               listed: Sequence[sample_list.ListedSample] | None = None, workers: int | None = None,
               progress: bool = True, **kwargs):
    """Args: `generator_config`, the samples to make (`listed`, default all), `workers` and
    `progress` of the flow computation; the rest goes to the TFDS builder."""
    self._generator_config = generator_config
    self._listed = sample_list.read_official_list() if listed is None else list(listed)
    self._workers = workers
    self._progress = progress
    super().__init__(**kwargs)

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    del dl_manager  # nothing to download: the data is generated
    self.info.metadata.update({"synthetic": True, "backend": self.builder_config.name,
                               "seed": self._generator_config.seed,
                               "generator_fingerprint": self._generator_config.fingerprint(),
                               "num_samples": len(self._listed)})
    return {"train": self._generate_examples()}

  def _generate_examples(self):
    examples = flow_map_examples(self._generator_config, self.builder_config.name,
                                 listed=self._listed, workers=self._workers,
                                 progress=self._progress)
    for index, example in enumerate(examples):
      yield f"{index:05d}", example


def ensure_built(data_dir: str | None = None, *, backend: str = "tvl1",
                 generator_config: generate.SyntheticConfig = generate.SyntheticConfig(),
                 workers: int | None = None, progress: bool = True) -> str:
  """The synthetic composite's dataset folder, generating and writing it first if missing.

  Args:
    data_dir: the TFDS data dir (default `$RCN_JAX_DATA_DIR` or `~/.cache/rcn_jax`).
    backend: flow backend (builder config), one of `data_prep.flow.BACKENDS`.
    generator_config: the generator's config; a folder built with another one is refused.
    workers: worker processes for the flow maps (default: one per CPU core).
    progress: show a progress bar while building.
  Returns:
    `<data_dir>/megc2019_synthetic/<backend>/<version>`, for `tfds.builder_from_directory`.
  """
  if backend not in BACKENDS:
    raise InputError(f"unknown flow backend {backend!r}; expected one of {list(BACKENDS)}")
  data_dir = data_dir or default_data_dir()
  # Processes that start together (a multi-process run) build once: the others wait, then read.
  with locks.exclusive(Path(data_dir) / "megc2019_synthetic" / f"{backend}.lock"):
    builder = Megc2019Synthetic(data_dir=data_dir, config=backend, file_format="array_record",
                                generator_config=generator_config, workers=workers, progress=progress)
    if builder.is_prepared():
      metadata = builder.info.metadata
      expected = {"generator_fingerprint": generator_config.fingerprint(),
                  "num_samples": len(sample_list.read_official_list())}
      differences = [f"{key}={metadata.get(key)!r} (expected {value!r})"
                     for key, value in expected.items() if metadata.get(key) != value]
      if differences:
        raise InputError(f"{builder.data_dir}: built with {', '.join(differences)}: another "
                         "generator config or a partial list; delete the folder or use another "
                         "data_dir")
      return str(builder.data_dir)
    builder.download_and_prepare()
    return str(Path(builder.data_dir))

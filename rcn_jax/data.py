"""The composite as numpy arrays: flow-map datasets read from their TFDS directories.

Flow-map datasets (`megc2019` written by data_prep, `megc2019_synthetic` built in) store one
full-resolution, unnormalised `[H, W, 3]` (u, v, strain) map per sample in array_record files,
read by random access without TensorFlow. `load_composite` turns them into network inputs at
the requested resolution and orders them as the organisers' list. Imported flow images
(`data_prep.import_flowmaps`) store the files' own values: their metadata's `channels` and
`value_range` say how they become the same [0, 1] u, v, strain input, and `data.resolution=None`
reads them at their own size.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rcn_jax import errors
from rcn_jax import transform, sample_list

DATA_DIR_ENV = "RCN_JAX_DATA_DIR"
NAMES = ("synthetic", "megc2019")
MEGC2019_BUILDER = "megc2019"
# data.resolution=None: an imported dataset's own image size; built and synthetic maps are full
# resolution, so they keep this network input size.
DEFAULT_RESOLUTION = 60


@dataclasses.dataclass(frozen=True)
class Composite:
  """Samples of a (partial) composite, in the organisers' list order.

  Attributes:
    flows: `[N, H, W, 3]` float32 network inputs in [0, 1].
    labels: `[N]` int class indices into `sample_list.CLASS_NAMES`.
    subjects: `[N]` subject keys (`sub01`, `s01`, `006`).
    datasets: `[N]` dataset names (`casme2`, `smic`, `samm`).
    samples: `[N]` sample names.
    source: where the samples were read from.
  """
  flows: np.ndarray
  labels: np.ndarray
  subjects: np.ndarray
  datasets: np.ndarray
  samples: np.ndarray
  source: str = "memory"

  def __post_init__(self):
    count = len(self.labels)
    for name in ("flows", "subjects", "datasets", "samples"):
      if len(getattr(self, name)) != count:
        raise ValueError(f"Composite.{name} has {len(getattr(self, name))} rows, labels has {count}")
    if self.flows.ndim != 4 or self.flows.shape[-1] != 3:
      raise ValueError(f"Composite.flows must be [N, H, W, 3], got {self.flows.shape}")
    bad = np.flatnonzero(~np.isfinite(self.flows.reshape(count, -1)).all(axis=1))
    if bad.size:
      raise errors.UserError(f"{self.source}: non-finite flow values in sample(s) "
                             f"{[self.name_of(i) for i in bad[:5]]}")
    unknown = sorted(set(self.labels.tolist()) - set(range(len(sample_list.CLASS_NAMES))))
    if unknown:
      raise errors.UserError(f"{self.source}: unknown label index(es) {unknown}")

  def __len__(self) -> int:
    return len(self.labels)

  def name_of(self, index: int) -> str:
    """`dataset/subject/sample` of one sample, for messages."""
    return f"{self.datasets[index]}/{self.subjects[index]}/{self.samples[index]}"

  def select(self, datasets: Sequence[str]) -> Composite:
    """The samples of the given datasets only, in the same order."""
    keep = np.isin(self.datasets, list(datasets))
    return Composite(self.flows[keep], self.labels[keep], self.subjects[keep], self.datasets[keep],
                     self.samples[keep], self.source)


def default_data_dir() -> str:
  """`$RCN_JAX_DATA_DIR`, else `~/.cache/rcn_jax`."""
  return os.environ.get(DATA_DIR_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "rcn_jax")


def megc2019_directory(data_dir: str, flow_backend: str) -> Path:
  """The newest version folder `<data_dir>/megc2019/<flow_backend>/<version>/` that holds a build."""
  base = Path(data_dir) / MEGC2019_BUILDER / flow_backend
  versions = sorted((p for p in base.glob("*") if (p / "dataset_info.json").is_file()),
                    key=lambda p: tuple(int(part) if part.isdigit() else 0 for part in p.name.split(".")))
  if not versions:
    raise errors.MissingInput(
        f"no megc2019 flow-map dataset for backend {flow_backend!r} under {base}: build it with "
        f"`python -m data_prep.build --out={data_dir}` (README, section Real data), or point data.data_dir "
        f"(or ${DATA_DIR_ENV}) at the folder holding megc2019/")
  return versions[-1]


def read_flow_dataset(directory: str | os.PathLike, *, resolution: int,
                      datasets: Sequence[str] | None = None) -> Composite:
  """Reads a flow-map dataset directory and orders it as the organisers' list.

  Args:
    directory: a TFDS dataset version folder (holding `dataset_info.json`).
    resolution: network input size r; every map becomes `[r, r, 3]` in [0, 1].
    datasets: keep only these datasets (all three when None).

  Returns:
    The composite; a listed sample missing from the directory, a sample that the list does not
    have, a duplicate or a label that disagrees with the list is an error naming the sample.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  directory = str(directory)
  metadata = dataset_metadata(directory)
  if metadata.get("imported"):  # the files' values and channel order (data_prep.import_flowmaps)
    convert = functools.partial(transform.imported_to_network_input, channels=metadata["channels"],
                                value_range=metadata["value_range"])
  else:
    convert = transform.to_network_input
  listed = sample_list.read_official_list(datasets)
  position = {(s.dataset, s.subject, s.sample): i for i, s in enumerate(listed)}
  source = tfds.builder_from_directory(directory).as_data_source("train")
  flows: list[np.ndarray | None] = [None] * len(listed)
  for index in range(len(source)):
    record = source[index]
    dataset, subject, sample = (_text(record[k]) for k in ("dataset", "subject", "sample"))
    where = f"{directory}: example {index} ({dataset}/{subject}/{sample})"
    if dataset not in sample_list.DATASETS:
      raise errors.UserError(f"{where}: unknown dataset {dataset!r}")
    if datasets is not None and dataset not in datasets:
      continue
    try:
      key = (dataset, sample_list.subject_key(dataset, subject), sample)
    except ValueError as error:
      raise errors.UserError(f"{where}: {error}") from error
    if key not in position:
      raise errors.UserError(f"{where}: not in the organisers' list {sample_list.LIST_NAME}")
    slot = position[key]
    if flows[slot] is not None:
      raise errors.UserError(f"{where}: duplicate sample")
    if int(record["label"]) != listed[slot].label:
      raise errors.UserError(f"{where}: label {int(record['label'])} but the list says {listed[slot].label}")
    flow = np.asarray(record["flow"], np.float32)
    if not np.isfinite(flow).all():
      raise errors.UserError(f"{where}: non-finite flow values")
    flows[slot] = convert(flow, resolution)
  # An import made with --allow-missing records what it lacks: a partial composite of the rest.
  known_missing = set(metadata.get("missing", ()))
  missing = [f"{s.dataset}/{s.subject}/{s.sample}" for s, f in zip(listed, flows) if f is None]
  if set(missing) - known_missing:
    missing = sorted(set(missing) - known_missing, key=missing.index)
    raise errors.UserError(f"{directory}: {len(missing)} listed sample(s) missing, e.g. {missing[:5]}")
  listed = [s for s, f in zip(listed, flows) if f is not None]
  flows = [f for f in flows if f is not None]
  if not listed:
    raise errors.UserError(f"{directory}: no samples of data.datasets={list(datasets or ())}")
  return Composite(
      flows=np.stack(flows).astype(np.float32),
      labels=np.asarray([s.label for s in listed], np.int64),
      subjects=np.asarray([s.subject for s in listed]),
      datasets=np.asarray([s.dataset for s in listed]),
      samples=np.asarray([s.sample for s in listed]),
      source=directory)


def dataset_metadata(directory: str | os.PathLike) -> dict[str, Any]:
  """A flow-map dataset's metadata (`metadata.json`: how it was made); {} when it has none."""
  path = Path(directory) / "metadata.json"
  return json.loads(path.read_text()) if path.is_file() else {}


def configured_resolution(data: Mapping[str, Any]) -> int:
  """`data.resolution`, or when None the imported dataset's own image side (else DEFAULT_RESOLUTION)."""
  if data["resolution"] is not None:
    return int(data["resolution"])
  if data["name"] != MEGC2019_BUILDER:
    return DEFAULT_RESOLUTION
  directory = megc2019_directory(data["data_dir"] or default_data_dir(), data["flow_backend"])
  size = dataset_metadata(directory).get("image_size")
  if not size:
    return DEFAULT_RESOLUTION
  if size[0] != size[1]:
    raise errors.UserError(f"data.resolution: the maps of {directory} are {size[0]}x{size[1]} px, not square; "
                           "set data.resolution")
  return int(size[0])


def load_composite(name: str, *, data_dir: str | None = None, resolution: int = DEFAULT_RESOLUTION,
                   datasets: Sequence[str] | None = None, flow_backend: str = "tvl1") -> Composite:
  """Loads a composite by name.

  Args:
    name: `synthetic` (built on first use) or `megc2019` (written by data_prep).
    data_dir: the TFDS data dir; `$RCN_JAX_DATA_DIR` or `~/.cache/rcn_jax` when None.
    resolution: network input size r.
    datasets: any subset of `casme2`, `smic`, `samm` (partial composites, single datasets).
    flow_backend: which flow build (TFDS builder config) to read or build.

  Returns:
    The composite, in the organisers' list order.
  """
  check_settings(name, resolution=resolution, datasets=datasets)
  datasets = None if datasets is None else tuple(datasets)
  data_dir = data_dir or default_data_dir()
  if name == "synthetic":
    from data_prep import synthetic  # pylint: disable=g-import-not-at-top
    directory = synthetic.ensure_built(data_dir, backend=flow_backend)
  else:
    directory = megc2019_directory(data_dir, flow_backend)
  return read_flow_dataset(directory, resolution=resolution, datasets=datasets)


def check_settings(name: str, *, resolution: int, datasets: Sequence[str] | None) -> None:
  """Raises a UserError naming the `data.*` key of a setting no dataset can satisfy; reads nothing."""
  if name not in NAMES:
    raise errors.UserError(f"data.name={name!r}: expected one of {NAMES}")
  if datasets is not None:
    unknown = sorted(set(datasets) - set(sample_list.DATASETS))
    if unknown or not datasets or len(set(datasets)) != len(datasets):
      raise errors.UserError(f"data.datasets={list(datasets)}: expected a non-empty subset of "
                             f"{list(sample_list.DATASETS)} without repeats")
  if not transform.MIN_RESOLUTION <= resolution <= transform.MAX_RESOLUTION:
    raise errors.UserError(f"data.resolution={resolution}: expected {transform.MIN_RESOLUTION}..{transform.MAX_RESOLUTION}")


def check_configured(data: Mapping[str, Any]) -> int:
  """Checks a config's `data` section without reading samples: its settings, and that a
  `megc2019` build is there (the built-in data is built on first use). Returns the input side it
  resolves to (`configured_resolution`)."""
  given = data["resolution"]
  check_settings(data["name"], resolution=DEFAULT_RESOLUTION if given is None else int(given), datasets=data["datasets"])
  if data["name"] == "megc2019":
    megc2019_directory(data["data_dir"] or default_data_dir(), data["flow_backend"])
  resolution = configured_resolution(data)
  if given is None and not transform.MIN_RESOLUTION <= resolution <= transform.MAX_RESOLUTION:
    raise errors.UserError(
        f"data.resolution: the {data['flow_backend']!r} maps are {resolution}x{resolution} px; the networks take "
        f"{transform.MIN_RESOLUTION}..{transform.MAX_RESOLUTION} px: set data.resolution (maps are area-resized)")
  return resolution


def load_configured(data: Mapping[str, Any]) -> Composite:
  """The composite a run config's `data` section names (a ConfigDict or the dict in `config.json`)."""
  return load_composite(data["name"], data_dir=data["data_dir"], resolution=configured_resolution(data),
                        datasets=data["datasets"], flow_backend=data["flow_backend"])


def _text(value) -> str:
  return value.decode() if isinstance(value, bytes) else str(value)

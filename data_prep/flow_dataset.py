"""The flow-map dataset format shared by the MEGC2019 builder and the synthetic composite.

Each example holds one sample's full-resolution, unnormalised [u, v, optical strain] map between
its onset and apex frames (float16) and its metadata, so any network resolution is derived at load
time (`rcn_jax.transform.to_network_input`). Datasets are written as array_record and read without
TensorFlow: `tfds.builder_from_directory(dir).as_data_source('train')`; Text features read back as
bytes. Examples keep the order they were generated in (the organisers' list order).

A builder based on `FlowMapBuilder` reads a staged folder (its TFDS manual_dir) that holds one
`.npz` per sample (array `flow` `[H, W, 3]`) and `manifest.json` listing the samples in order:
`write_manifest` writes it, and `data_prep.build` stages the MEGC2019 composite this way.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from rcn_jax.sample_list import CLASS_NAMES

from data_prep import InputError

DATASET_VERSION = "1.0.0"
MANIFEST = "manifest.json"
TEXT_FIELDS = ("dataset", "subject", "sample")
FRAME_FIELDS = ("onset_frame", "apex_frame")


def flow_map_features() -> tfds.features.FeaturesDict:
  """The feature schema of every flow-map dataset."""
  return tfds.features.FeaturesDict({
      # Two unknown dimensions need an explicit encoding; zlib also shrinks the file.
      "flow": tfds.features.Tensor(shape=(None, None, 3), dtype=np.float16, encoding="zlib"),
      "label": tfds.features.ClassLabel(names=CLASS_NAMES),
      **{name: tfds.features.Text() for name in TEXT_FIELDS},
      **{name: tfds.features.Scalar(dtype=np.int32) for name in FRAME_FIELDS},
  })


def make_example(flow: np.ndarray, *, label: int, dataset: str, subject: str, sample: str,
                 onset_frame: int, apex_frame: int) -> dict[str, Any]:
  """One example of the schema; checks the map's shape and values.

  Args:
    flow: `[H, W, 3]` (u, v, strain), any float dtype; stored as float16.
    label: class index into CLASS_NAMES.
  Returns:
    The feature dict.
  """
  flow = np.asarray(flow)
  where = f"{dataset}/{subject}/{sample}"
  if flow.ndim != 3 or flow.shape[2] != 3:
    raise InputError(f"{where}: flow map has shape {flow.shape}, expected [H, W, 3]")
  if not np.all(np.isfinite(flow)):
    raise InputError(f"{where}: flow map has non-finite values")
  if np.abs(flow).max(initial=0.0) > np.finfo(np.float16).max:
    raise InputError(f"{where}: flow map exceeds the float16 range")
  if not 0 <= label < len(CLASS_NAMES):
    raise InputError(f"{where}: label {label} is not a class index")
  return {"flow": flow.astype(np.float16), "label": int(label), "dataset": dataset,
          "subject": subject, "sample": sample, "onset_frame": np.int32(onset_frame),
          "apex_frame": np.int32(apex_frame)}


def write_manifest(directory: str | Path, entries: Sequence[Mapping[str, Any]],
                   settings: Mapping[str, Any]) -> Path:
  """Writes the staged folder's manifest atomically.

  Args:
    directory: the staged folder (the builder's manual_dir).
    entries: per sample, in dataset order: `file` (an .npz path, relative to `directory` or
      absolute), `label`, `dataset`, `subject`, `sample`, `onset_frame`, `apex_frame`.
    settings: how the maps were made (backend, apex, crop, ...), stored in the dataset's metadata.
  Returns:
    The manifest's path.
  """
  directory = Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  path = directory / MANIFEST
  write_text_atomic(path, json.dumps({"settings": dict(settings), "samples": list(entries)},
                                     indent=1, default=str))
  return path


def write_text_atomic(path: Path, text: str) -> None:
  """Writes via a temporary file in the same folder and a rename: readers never see half a file."""
  handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
  try:
    with os.fdopen(handle, "w") as stream:
      stream.write(text)
    os.replace(temporary, path)
  except BaseException:
    Path(temporary).unlink(missing_ok=True)
    raise


def read_manifest(directory: str | Path) -> dict[str, Any]:
  """Reads and checks a staged folder's manifest."""
  path = Path(directory) / MANIFEST
  if not path.is_file():
    raise InputError(f"{path}: no manifest; stage the samples with python -m data_prep.build")
  manifest = json.loads(path.read_text())
  required = {"file", "label", *TEXT_FIELDS, *FRAME_FIELDS}
  for index, entry in enumerate(manifest.get("samples", [])):
    missing = sorted(required - set(entry))
    if missing:
      raise InputError(f"{path}: sample {index} lacks key(s) {missing}")
  if not manifest.get("samples"):
    raise InputError(f"{path}: lists no samples")
  return manifest


def staged_examples(directory: str | Path, manifest: Mapping[str, Any]
                    ) -> Iterator[tuple[str, dict[str, Any]]]:
  """Yields (key, example) for every manifest entry, in order; keys keep that order."""
  directory = Path(directory)
  for index, entry in enumerate(manifest["samples"]):
    path = directory / entry["file"]
    with np.load(path) as arrays:
      if "flow" not in arrays:
        raise InputError(f"{path}: no array named 'flow'")
      flow = arrays["flow"]
    yield f"{index:05d}", make_example(
        flow, label=entry["label"], **{name: entry[name] for name in TEXT_FIELDS + FRAME_FIELDS})


class FlowMapBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Base of the flow-map builders: the shared schema, array_record output, examples in order.

  Subclasses set `name`, `DESCRIPTION` and, when the staged folder is not the source, override
  `_split_generators`.
  """

  VERSION = tfds.core.Version(DATASET_VERSION)
  RELEASE_NOTES = {DATASET_VERSION: "Full-resolution float16 [u, v, strain] maps and metadata."}
  DESCRIPTION = "Optical-flow maps between onset and apex frames of micro-expression clips."
  HOMEPAGE = ""
  CITATION = ""
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Stage the maps in a folder (one .npz per sample and manifest.json, see
  data_prep.flow_dataset.write_manifest) and pass it as the manual_dir.
  """

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self, description=self.DESCRIPTION, features=flow_map_features(),
        supervised_keys=("flow", "label"), homepage=self.HOMEPAGE, citation=self.CITATION,
        disable_shuffling=True, metadata=tfds.core.MetadataDict())

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    manifest = read_manifest(dl_manager.manual_dir)
    self.check_manifest(manifest)
    self.info.metadata.update(manifest["settings"])
    return {"train": self._generate_examples(dl_manager.manual_dir, manifest)}

  def check_manifest(self, manifest: Mapping[str, Any]) -> None:
    """Hook for subclasses to reject a staged folder made with other settings."""

  def _generate_examples(self, directory: Path, manifest: Mapping[str, Any]):
    yield from staged_examples(directory, manifest)


def prepare(builder_class: type[FlowMapBuilder], data_dir: str | Path, staged_dir: str | Path,
            *, config: str | None = None) -> Path:
  """Writes (or rewrites) a flow-map dataset from a staged folder.

  Args:
    builder_class: the builder (e.g. `data_prep.megc2019.Megc2019`).
    data_dir: the TFDS data dir; the dataset lands in `<data_dir>/<name>/<config>/<version>/`.
    staged_dir: the folder holding `manifest.json` and the .npz files.
    config: the builder config (the flow backend), if the builder has configs.
  Returns:
    The dataset folder, for `tfds.builder_from_directory`.
  """
  builder = builder_class(data_dir=str(data_dir), config=config, file_format="array_record")
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=str(staged_dir),
      # Settings other than the config (apex, crop, datasets) may change between builds.
      download_mode=tfds.download.GenerateMode.REUSE_CACHE_IF_EXISTS))
  return Path(builder.data_dir)

"""Where the runs' samples come from: a flow-map dataset by name, or in-memory onset/apex frames."""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from data_prep import inference
from rcn_jax import errors
from rcn_jax import sample_list
from rcn_jax.data import Composite
from rcn_jax.studies.specs import RunSpec


class DataSource(abc.ABC):
  """Where the runs' samples come from."""

  @abc.abstractmethod
  def config_overrides(self, spec: RunSpec) -> dict[str, Any]:
    """`config.data` settings of a run (e.g. `data.name`)."""

  @abc.abstractmethod
  def composite(self, spec: RunSpec) -> Composite | None:
    """The samples of a run, or None when the engine loads them from the config."""

  def apex_frames(self) -> list[np.ndarray] | None:
    """Grey apex frame per sample of `composite`, when the source has them."""
    return None

  def apex_frame(self, key: tuple[str, str, str], label: int) -> np.ndarray | None:
    """The grey apex frame of one sample (dataset, subject, sample), when it can be had."""
    del key, label
    return None


@dataclasses.dataclass
class NamedData(DataSource):
  """A flow-map dataset by name (`synthetic` or `megc2019`), as `launch.py` runs read it.

  Magnified runs read `magnified_data_dir` (a `megc2019` dataset built by `python -m
  data_prep.magnify`); for the synthetic composite it is built on first use.
  """
  name: str = "synthetic"
  data_dir: str | None = None
  flow_backend: str = "tvl1"
  magnification: inference.MagnificationConfig | None = None
  magnified_data_dir: str | None = None
  workers: int = 1

  def config_overrides(self, spec: RunSpec) -> dict[str, Any]:
    overrides = {"data.name": self.name, "data.data_dir": self.data_dir, "data.flow_backend": self.flow_backend}
    if spec.magnified:
      overrides.update({"data.name": "megc2019", "data.data_dir": self._magnified_dir(),
                        "data.magnification": self.magnification.to_json()})
    return overrides

  def _magnified_dir(self) -> str:
    if self.magnified_data_dir is None:
      raise errors.UserError("--magnified_data_dir: the magnification study needs the magnified dataset; build it "
                             "with python -m data_prep.magnify --alpha=A -- <data_prep.build arguments> --out=DIR")
    if self.name == "synthetic":
      inference.build_magnified_synthetic(self.magnified_data_dir, self.magnification, backend=self.flow_backend,
                                          workers=self.workers)
    return self.magnified_data_dir

  def composite(self, spec: RunSpec) -> Composite | None:
    return None

  def apex_frame(self, key: tuple[str, str, str], label: int) -> np.ndarray | None:
    if self.name != "synthetic":
      return None
    return inference.synthetic_apex_frame(*key, label)


@dataclasses.dataclass(frozen=True)
class FrameSample:
  """A clip's onset and apex frames (grey uint8 `[H, W]`) and its place in the composite."""
  dataset: str
  subject: str
  sample: str
  label: int
  onset: np.ndarray
  apex: np.ndarray


@dataclasses.dataclass
class FrameData(DataSource):
  """In-memory samples from frames, through the same pipeline as `rcn_jax.analysis.predict`.

  Attributes:
    samples: the clips, in composite order.
    flow_backend: the flow backend.
    magnification: the magnification of magnified runs.
  """
  samples: Sequence[FrameSample]
  flow_backend: str = "dis"
  magnification: inference.MagnificationConfig | None = None

  def __post_init__(self):
    self._cache: dict[tuple[int, bool], Composite] = {}

  def config_overrides(self, spec: RunSpec) -> dict[str, Any]:
    overrides = {"data.name": "synthetic", "data.flow_backend": self.flow_backend}
    if spec.magnified:
      overrides["data.magnification"] = self.magnification.to_json()
    return overrides

  def composite(self, spec: RunSpec) -> Composite:
    key = (spec.resolution, spec.magnified)
    if key not in self._cache:
      magnification = self.magnification.to_json() if spec.magnified else None
      flows = np.stack([inference.network_input(s.onset, s.apex, backend=self.flow_backend,
                                                resolution=spec.resolution, magnification=magnification)
                        for s in self.samples])
      self._cache[key] = Composite(
          flows=flows, labels=np.asarray([s.label for s in self.samples], np.int64),
          subjects=np.asarray([s.subject for s in self.samples]),
          datasets=np.asarray([s.dataset for s in self.samples]),
          samples=np.asarray([s.sample for s in self.samples]), source="frames")
    return self._cache[key]

  def apex_frames(self) -> list[np.ndarray]:
    return [s.apex for s in self.samples]

  def apex_frame(self, key: tuple[str, str, str], label: int) -> np.ndarray | None:
    del label
    found = [s.apex for s in self.samples if (s.dataset, s.subject, s.sample) == key]
    return found[0] if found else None


def tiny_frame_data(subjects_per_dataset: int = 2, samples_per_subject: int = 3, size: int = 48,
                    flow_backend: str = "dis",
                    magnification: inference.MagnificationConfig | None = None) -> FrameData:
  """A few synthetic-composite clips per dataset, frames resized to `size` px, subjects interleaved
  across datasets (so the first folds cover every dataset).

  Args:
    subjects_per_dataset: subjects taken from each dataset, in list order.
    samples_per_subject: clips taken from each subject, in list order.
    size: frame side in px.
    flow_backend: flow backend of the runs.
    magnification: the magnification of magnified runs (default alpha 10).

  Returns:
    The frame data.
  """
  by_dataset = []
  for dataset in sample_list.DATASETS:
    listed = sample_list.read_official_list((dataset,))
    subjects = list(dict.fromkeys(s.subject for s in listed))[:subjects_per_dataset]
    by_dataset.append([[s for s in listed if s.subject == subject][:samples_per_subject] for subject in subjects])
  samples = []
  for rank in range(subjects_per_dataset):
    for clips in by_dataset:
      for listed in clips[rank] if rank < len(clips) else []:
        frames = [cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in inference.synthetic_frames(listed)]
        samples.append(FrameSample(listed.dataset, listed.subject, listed.sample, listed.label, *frames))
  magnification = magnification or inference.MagnificationConfig(alpha=10.0, levels=3)
  return FrameData(samples, flow_backend, magnification)

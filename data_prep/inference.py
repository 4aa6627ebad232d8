"""data_prep at inference time: new frames through the same steps the datasets were built with.

The one module of data_prep that `rcn_jax` (its analysis and studies) imports: reading a frame as a
build reads it, the frame size, an onset/apex pair to the network input (optionally motion
magnified), the apex of a clip folder, and the frames of the built-in synthetic samples. Everything
else in data_prep is the offline build.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from rcn_jax import errors, sample_list, transform

from data_prep import apex as apex_lib
from data_prep import face
from data_prep.flow import BACKENDS  # noqa: F401  (rcn_jax reaches data_prep only through this module)
from data_prep.flowmap import compute_flow_map, to_grey
from data_prep.frames import list_frames
from data_prep.magnify import MagnificationConfig, build_magnified_synthetic, magnify_pairs
from data_prep.synthetic import generate

__all__ = ["APEX_DETECTORS", "SIZE_CHOICES", "FramePair", "MagnificationConfig", "build_magnified_synthetic",
           "clip_pair", "frame_size", "network_input", "read_frame", "synthetic_apex_frame", "synthetic_frames"]

SIZE_CHOICES = "auto, none or ROWSxCOLS"
APEX_DETECTORS = tuple(method for method in apex_lib.METHODS if method != "annotated")


def frame_size(text: str, data_name: str) -> tuple[int, int] | None:
  """The frame size (rows, cols) before flow: `auto` is the build's default for MEGC2019 runs
  (data_prep resizes every cropped face to it) and the frames' own size otherwise; else `none` or
  `ROWSxCOLS` as `data_prep.build --size` takes it."""
  if text == "auto":
    return tuple(face.DEFAULT_SIZE) if data_name == "megc2019" else None
  return face.parse_size(text)


def read_frame(path: str | os.PathLike, *, data_name: str = "synthetic",
               size: tuple[int, int] | None = None) -> np.ndarray:
  """One frame as uint8 grey `[H, W]`, read as the run's data was.

  MEGC2019 builds read frames with OpenCV's grey decoder; the synthetic composite converts its
  colour frames with `cvtColor` (which also keeps grey images exactly).
  """
  path = Path(path)
  if not path.is_file():
    raise errors.MissingInput(f"{path}: frame image not found")
  if data_name == "megc2019":
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
  else:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
  if image is None:
    raise errors.UserError(f"{path}: cannot read the image")
  grey = to_grey(image, str(path))
  return face.resize(grey, size)


def network_input(onset: np.ndarray, apex: np.ndarray, *, backend: str, resolution: int,
                  magnification: Mapping[str, Any] | None = None) -> np.ndarray:
  """The network input of one onset/apex pair, as the flow-map datasets and the loader make it.

  Args:
    onset: uint8 grey `[H, W]` (or BGR `[H, W, 3]`).
    apex: the same size.
    backend: the optical-flow backend (`data_prep.flow.BACKENDS`).
    resolution: the network's input side.
    magnification: `MagnificationConfig` fields, or None for none.

  Returns:
    `[resolution, resolution, 3]` float32 in [0, 1].
  """
  onset, apex = np.asarray(onset), np.asarray(apex)
  if magnification:
    apex = magnify_pairs(onset[None], apex[None], MagnificationConfig(**magnification))[0]
  flow_map = compute_flow_map(onset, apex, backend=backend)
  # The datasets store flow maps in float16 (data_prep.flow_dataset); the run saw those values.
  stored = flow_map.astype(np.float16).astype(np.float32)
  return transform.to_network_input(stored, resolution)


@dataclasses.dataclass(frozen=True)
class FramePair:
  """The onset and apex frames of a clip and where they came from."""
  onset: np.ndarray
  apex: np.ndarray
  onset_name: str
  apex_name: str
  apex_method: str


def clip_pair(directory: str | os.PathLike, *, apex_method: str = "xia_std", data_name: str = "synthetic",
              size: tuple[int, int] | None = None, backend: str = "tvl1") -> FramePair:
  """The first frame of a clip folder as onset and its detected apex.

  Args:
    directory: a folder of frame images (numbered, e.g. `img1.jpg ... img40.jpg`), onset first.
    apex_method: one of `APEX_DETECTORS`.
    data_name: the run's data (how frames are read).
    size: frame size before the flow.
    backend: flow backend for the `max_flow` detector.

  Returns:
    The pair.
  """
  if apex_method not in APEX_DETECTORS:
    raise errors.UserError(f"--apex_method={apex_method!r}: expected one of {list(APEX_DETECTORS)}")
  frames = list_frames(directory)
  if len(frames.paths) < 2:
    raise errors.UserError(f"{directory}: a clip needs at least 2 frames, found {len(frames.paths)}")
  images = np.stack([read_frame(p, data_name=data_name, size=size) for p in frames.paths])
  position = apex_lib.detect_apex(apex_method, images,
                                  flow_fn=functools.partial(compute_flow_map, backend=backend))
  if position == 0:
    raise errors.UserError(f"{directory}: the {apex_method} apex is the onset frame: no motion")
  return FramePair(images[0], images[position], frames.paths[0].name, frames.paths[position].name,
                   apex_method)


def synthetic_frames(listed: sample_list.ListedSample) -> tuple[np.ndarray, np.ndarray]:
  """The onset and apex frames (grey uint8 `[H, W]`) of a built-in synthetic sample, regenerated."""
  generated = generate.generate_sample(generate.SyntheticConfig(), listed)
  return to_grey(generated.onset, listed.sample), to_grey(generated.apex, listed.sample)


def synthetic_apex_frame(dataset: str, subject: str, sample: str, label: int) -> np.ndarray:
  """The apex frame (grey uint8 `[H, W]`) of a built-in synthetic sample, regenerated."""
  return synthetic_frames(sample_list.ListedSample(dataset, subject, sample, int(label)))[1]

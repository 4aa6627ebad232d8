"""One composite sample from clip folder to flow map: frames, apex, face crop, resize, flow, cache.

Each finished sample is written to its own `.npz` through a temporary file and a rename, under a
name that hashes the sample's inputs and every setting that changes the map, so an interrupted
build resumes where it stopped and a build with other settings never reads a stale map.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from data_prep import InputError
from data_prep import apex as apex_lib
from data_prep import face
from data_prep.composite import CompositeSample
from data_prep.frames import ClipFrames, list_frames, read_gray

FlowFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
CROP_MODES = ("haar", "none")
# Names of the official cropped releases' frames (CASME II `reg_img46.jpg`, SMIC
# `reg_image036237.bmp`): `--crop auto` leaves those uncropped.
CROPPED_PREFIX = "reg_im"


@dataclasses.dataclass(frozen=True)
class SampleSettings:
  """Everything besides the inputs that changes a sample's map.

  Attributes:
    backend: the flow backend's name (recorded; `flow_fn` computes the flow).
    apex: apex method (see `data_prep.apex.METHODS`).
    apex_fallback: detector used where the annotated apex is unusable; None fails the sample.
    crop: `haar`, `none` or `auto` (haar unless the frames are an official cropped release).
    margin: crop margin, as a fraction of the detected face's size on each side.
    size: frame size (rows, cols) before flow; None keeps the (cropped) size.
    index_quirk: reproduce the STRCN apex script's index quirk.
    flow_variant: what a custom flow function does besides the backend (e.g. the magnification),
      so that maps it made are cached apart from the plain ones.
  """
  backend: str
  apex: str = "annotated"
  apex_fallback: str | None = None
  crop: str = "auto"
  margin: float = face.DEFAULT_MARGIN
  size: tuple[int, int] | None = face.DEFAULT_SIZE
  index_quirk: bool = False
  flow_variant: str = ""


@dataclasses.dataclass(frozen=True)
class SampleOutcome:
  """What happened to one sample: where its map is, or why it failed."""
  dataset: str
  subject: str
  sample: str
  label: int
  path: Path
  error: str | None = None
  info: dict[str, Any] = dataclasses.field(default_factory=dict)
  cached: bool = False


def cache_path(cache_dir: Path, sample: CompositeSample, settings: SampleSettings) -> Path:
  """Where the sample's map is cached: keyed by the sample, its annotation and the settings."""
  annotation = sample.annotation
  key = json.dumps({
      "settings": dataclasses.asdict(settings), "clip": str(sample.clip_dir),
      "frames": [annotation.onset, annotation.apex, annotation.offset],
  }, sort_keys=True)
  digest = hashlib.sha256(key.encode()).hexdigest()[:16]
  return cache_dir / sample.dataset / sample.subject / f"{sample.sample}-{digest}.npz"


def crop_mode(settings: SampleSettings, frames: ClipFrames) -> str:
  if settings.crop == "auto":
    return "none" if frames.paths[0].name.startswith(CROPPED_PREFIX) else "haar"
  if settings.crop not in CROP_MODES:
    raise InputError(f"unknown crop mode {settings.crop!r}; expected auto or one of {CROP_MODES}")
  return settings.crop


@dataclasses.dataclass(frozen=True)
class ApexPlan:
  """Where to look for the apex: the segment, the method, and the position if already known.

  `problem` says why the annotation was unusable when the fallback detector replaces it.
  """
  segment: apex_lib.Segment
  method: str
  position: int | None
  notes: tuple[str, ...] = ()
  problem: str | None = None


def plan_apex(frames: ClipFrames, sample: CompositeSample, settings: SampleSettings) -> ApexPlan:
  """Checks the annotation against the frames present; no image is read.

  Where the annotated frames are unusable (apex missing or outside onset..offset, onset..offset
  outside the folder), the fallback detector runs on the segment, or (with the chosen detector if
  there is one) on the whole folder when onset..offset is unusable; without a detector to fall
  back on that is an error naming the annotation's row.
  """
  try:
    segment = apex_lib.resolve_segment(frames, sample.annotation)
  except InputError as error:
    detector = settings.apex if settings.apex != "annotated" else settings.apex_fallback
    if detector is None:
      raise
    whole = dataclasses.replace(sample.annotation, onset=None, apex=None, offset=None)
    problem = f"annotated frames unusable, whole clip searched ({error})"
    return ApexPlan(apex_lib.resolve_segment(frames, whole), detector, None, (problem,), problem)
  if settings.apex != "annotated":
    return ApexPlan(segment, settings.apex, None, segment.notes)
  try:
    position, notes = apex_lib.annotated_apex(frames, sample.annotation, segment)
  except InputError as error:
    if settings.apex_fallback is None:
      raise
    problem = f"annotated apex unusable ({error})"
    return ApexPlan(segment, settings.apex_fallback, None, segment.notes + (problem,), problem)
  return ApexPlan(segment, "annotated", position, segment.notes + notes)


def detect_position(plan: ApexPlan, frames: ClipFrames, settings: SampleSettings,
                    load: Callable[[int], np.ndarray], flow_fn: FlowFn) -> int:
  """Runs the plan's detector on the segment's (cropped, resized) frames."""
  segment = plan.segment
  images = np.stack([load(position) for position in range(segment.onset, segment.offset + 1)])
  offset = apex_lib.detect_apex(plan.method, images, flow_fn=flow_fn,
                                index_quirk=settings.index_quirk)
  if offset == 0:
    raise InputError(f"{frames.directory}: the {plan.method} apex is the onset frame: no motion")
  return segment.onset + offset


def prepare_pair(sample: CompositeSample, settings: SampleSettings,
                 flow_fn: FlowFn) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
  """The onset and apex frames of a sample, cropped and resized, and what was decided on the way.

  Returns:
    onset `[H, W]` uint8, apex `[H, W]` uint8, info (frame numbers, method, crop box, notes).
  """
  frames = list_frames(sample.clip_dir)
  plan = plan_apex(frames, sample, settings)
  segment = plan.segment
  onset_image = read_gray(frames.paths[segment.onset])
  mode = crop_mode(settings, frames)
  box = None
  if mode == "haar":
    # Loading the cascade takes ~30 ms, little beside the flow; a worker needs no shared state.
    detection = face.detect_face(onset_image, face.load_face_detector(),
                                 str(frames.paths[segment.onset]))
    aspect = settings.size[0] / settings.size[1] if settings.size else 1.0
    box = face.face_box(detection, onset_image.shape, margin=settings.margin, aspect=aspect)

  def load(position: int) -> np.ndarray:
    image = onset_image if position == segment.onset else read_gray(frames.paths[position])
    if image.shape != onset_image.shape:
      raise InputError(f"{frames.paths[position]}: size {image.shape} differs from the onset "
                       f"frame's {onset_image.shape}")
    return face.resize(box.crop(image) if box else image, settings.size)

  position = plan.position
  if position is None:
    position = detect_position(plan, frames, settings, load, flow_fn)
  info = {
      "onset_frame": frames.numbers[segment.onset], "apex_frame": frames.numbers[position],
      "offset_frame": frames.numbers[segment.offset], "apex_method": plan.method,
      "annotated_apex": sample.annotation.apex, "crop": mode,
      "crop_box": box.as_list() if box else None, "notes": list(plan.notes),
  }
  return load(segment.onset), load(position), info


Pair = tuple[np.ndarray, np.ndarray]


def prepare_sample(sample: CompositeSample, settings: SampleSettings, flow_fn: FlowFn,
                   path: Path) -> tuple[SampleOutcome, Pair | None]:
  """Frames, apex and crop of one sample; input problems become a failed outcome.

  Returns:
    The outcome (info filled in, or the error) and the (onset, apex) frames, None if it failed.
  """
  outcome = blank_outcome(sample, path)
  try:
    onset, apex, info = prepare_pair(sample, settings, flow_fn)
  except InputError as error:
    return dataclasses.replace(outcome, error=str(error)), None
  return dataclasses.replace(outcome, info=info), (onset, apex)


def finish_sample(outcome: SampleOutcome, frame_shape: tuple[int, ...],
                  flow_map: np.ndarray) -> SampleOutcome:
  """Checks a computed map `[H, W, 3]` and caches it at the outcome's path."""
  flow_map = np.asarray(flow_map, dtype=np.float32)
  where = f"{outcome.dataset} {outcome.subject}/{outcome.sample}"
  if flow_map.shape != tuple(frame_shape) + (3,):
    return dataclasses.replace(outcome, error=f"{where}: flow map has shape {flow_map.shape}, "
                               f"expected {tuple(frame_shape) + (3,)}")
  if not np.all(np.isfinite(flow_map)):
    return dataclasses.replace(outcome, error=f"{where}: flow map has non-finite values")
  save_atomic(outcome.path, flow_map, outcome.info)
  return outcome


def compute_sample(sample: CompositeSample, settings: SampleSettings, flow_fn: FlowFn,
                   path: Path) -> SampleOutcome:
  """Computes one sample's map and caches it at `path`; input problems become a failed outcome."""
  outcome, pair = prepare_sample(sample, settings, flow_fn, path)
  if pair is None:
    return outcome
  try:
    flow_map = flow_fn(*pair)
  except (InputError, ValueError) as error:  # the backends reject unusable frames (too small)
    return dataclasses.replace(outcome, error=f"{sample.clip_dir}: {error}")
  return finish_sample(outcome, pair[0].shape, flow_map)


def blank_outcome(sample: CompositeSample, path: Path) -> SampleOutcome:
  """An outcome with no result yet."""
  return SampleOutcome(sample.dataset, sample.subject, sample.sample, sample.label, path)


def save_atomic(path: Path, flow: np.ndarray, info: dict[str, Any]) -> None:
  """Writes `flow` `[H, W, 3]` float32 and `info` (JSON) to `path` via a temporary file + rename."""
  path.parent.mkdir(parents=True, exist_ok=True)
  handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".npz")
  try:
    with os.fdopen(handle, "wb") as stream:
      np.savez(stream, flow=flow, info=np.array(json.dumps(info)))
    os.replace(temporary, path)
  except BaseException:
    Path(temporary).unlink(missing_ok=True)
    raise


def load_cached(sample: CompositeSample, path: Path) -> SampleOutcome | None:
  """The cached outcome of a sample, or None when there is none (or it is unreadable)."""
  if not path.is_file():
    return None
  try:
    with np.load(path) as arrays:
      info = json.loads(str(arrays["info"]))
  except (OSError, ValueError, KeyError):
    return None
  return dataclasses.replace(blank_outcome(sample, path), info=info, cached=True)

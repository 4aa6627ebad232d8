"""Onset and apex frames: the annotated apex checked against the frames present, and detectors.

Methods:
  `annotated`: the sheet's (or table's) apex.
  `xia_std`: the frame whose difference from the onset frame has the largest standard deviation over
    pixels (full resolution, whole clip), the first author's MEGC2019 detector.
  `xia_std_10x8_window`: the STRCN variant: frames shrunk to 10x8 (rows x cols), only the 20-70 %
    window searched. The released script adds the argmax's 1-based position inside the window to
    the onset, landing early; `index_quirk=True` reproduces that, the default returns the frame the
    argmax points at.
  `middle`: `onset + (offset - onset) // 2`.
  `max_flow`: the frame whose flow from the onset has the largest mean magnitude (flow passed in).

Positions count the frames present in the clip folder from the onset (position 0).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np

from data_prep import InputError
from data_prep.annotations import Annotation
from data_prep.frames import ClipFrames

METHODS = ("annotated", "xia_std", "xia_std_10x8_window", "middle", "max_flow")
STRCN_SIZE = (10, 8)  # rows, cols
STRCN_WINDOW = (0.2, 0.7)
# Flow solvers leave artefacts near the image border (strain.zero_border); max_flow ignores that ring.
MAX_FLOW_BORDER = 8

FlowFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclasses.dataclass(frozen=True)
class Segment:
  """The onset..offset span of a clip, as positions in its ClipFrames."""
  onset: int
  offset: int
  notes: tuple[str, ...] = ()


def resolve_segment(frames: ClipFrames, annotation: Annotation) -> Segment:
  """Maps the annotated onset..offset onto the frames present, clamping to the folder's ends.

  Args:
    frames: the clip folder's frames.
    annotation: onset and offset as annotated (None: the folder's first or last frame).
  Returns:
    The segment; an annotation that does not overlap the frames present at all is an error.
  """
  onset = frames.first if annotation.onset is None else annotation.onset
  offset = frames.last if annotation.offset is None else annotation.offset
  if offset < frames.first or onset > frames.last:
    raise InputError(f"{annotation.source}: onset..offset {onset}..{offset} lies outside the "
                     f"frames present {frames.first}..{frames.last} in {frames.directory}")
  notes = []
  if onset < frames.first:
    notes.append(f"onset {onset} clamped to the first frame present, {frames.first}")
  if offset > frames.last:
    notes.append(f"offset {offset} clamped to the last frame present, {frames.last}")
  segment = Segment(frames.position(max(onset, frames.first)),
                    frames.position(min(offset, frames.last)), tuple(notes))
  if segment.offset <= segment.onset:
    raise InputError(f"{annotation.source}: the clip in {frames.directory} has a single frame "
                     f"between onset {onset} and offset {offset}")
  return segment


def annotated_apex(frames: ClipFrames, annotation: Annotation, segment: Segment
                   ) -> tuple[int, tuple[str, ...]]:
  """The annotated apex as a position in `frames`, clamped into the segment.

  Returns:
    The position and notes on any clamping. An apex that is missing, outside the annotated
    onset..offset, or that lands on the onset frame is an error naming the annotation's row.
  """
  apex = annotation.apex
  if apex is None:
    raise InputError(f"{annotation.source}: no apex annotated; choose a detector with --apex or "
                     "give corrected frames with --frame-table")
  if annotation.onset is not None and annotation.offset is not None and not (
      annotation.onset <= apex <= annotation.offset):
    raise InputError(f"{annotation.source}: apex {apex} is outside onset..offset "
                     f"{annotation.onset}..{annotation.offset}; choose a detector with --apex or "
                     "--apex-fallback, or give corrected frames with --frame-table")
  low, high = frames.numbers[segment.onset], frames.numbers[segment.offset]
  clamped = min(max(apex, low), high)
  position = frames.position(clamped)
  notes = ()
  if frames.numbers[position] != apex:
    notes = (f"apex {apex} moved to frame {frames.numbers[position]} (frames present "
             f"{low}..{high})",)
  if position <= segment.onset:
    raise InputError(f"{annotation.source}: apex {apex} falls on the onset frame "
                     f"{frames.numbers[segment.onset]}: no motion to measure")
  return position, notes


def xia_std_scores(images: np.ndarray) -> np.ndarray:
  """Std over pixels (N-1 normalised) of each frame's difference from the first.

  Args:
    images: `[K, H, W]`, onset first.
  Returns:
    `[K]` float64 scores (0 for the onset itself).
  """
  difference = images.astype(np.float64) - images[:1].astype(np.float64)
  return difference.reshape(len(images), -1).std(axis=1, ddof=1)


def xia_std_apex(images: np.ndarray) -> int:
  """Position of the frame most different from the onset (first maximum); middle if none differs."""
  scores = xia_std_scores(images)
  if scores.max() <= 0:
    return middle_position(len(images))
  return int(np.argmax(scores))


def strcn_apex(images: np.ndarray, *, index_quirk: bool = False) -> int:
  """The STRCN detector on 10x8 frames over the 20-70 % window of the K frames `[K, H, W]`."""
  import cv2  # deferred: the other detectors need only numpy

  count = len(images)
  small = np.stack([cv2.resize(image, STRCN_SIZE[::-1], interpolation=cv2.INTER_AREA)
                    for image in images])
  # The script's window is frames floor(0.2K)..ceil(0.7K), 1-based.
  first = max(math.floor(STRCN_WINDOW[0] * count), 1) - 1
  last = min(math.ceil(STRCN_WINDOW[1] * count), count) - 1
  if last < first:
    return middle_position(count)
  scores = xia_std_scores(small)[first:last + 1]
  within = int(np.argmax(scores))
  if index_quirk:
    return min(within + 1, count - 1)
  return first + within


def middle_position(count: int) -> int:
  """`onset + (offset - onset) // 2` for K contiguous frames, but never the onset itself."""
  return max((count - 1) // 2, 1)


def max_flow_apex(images: np.ndarray, flow_fn: FlowFn, border: int = MAX_FLOW_BORDER) -> int:
  """Position (>= 1) of the frame whose flow from the onset has the largest mean magnitude.

  Args:
    images: the segment's frames `[K, H, W]`, onset first.
    flow_fn: `(onset [H, W], frame [H, W]) -> [H, W, >=2]` with (u, v) in the first two channels.
    border: pixels ignored at each edge (flow artefacts concentrate there).
  """
  scores = []
  for image in images[1:]:
    flow = np.asarray(flow_fn(images[0], image), dtype=np.float64)
    height, width = flow.shape[:2]
    inner = flow[border:height - border, border:width - border] if min(height, width) > 4 * border \
        else flow
    scores.append(np.hypot(inner[..., 0], inner[..., 1]).mean())
  return 1 + int(np.argmax(scores))


def detect_apex(method: str, images: np.ndarray, *, flow_fn: FlowFn | None = None,
                index_quirk: bool = False) -> int:
  """Runs one detector on a segment's frames.

  Args:
    method: any of METHODS but `annotated`.
    images: the frames from onset to offset, `[K, H, W]` uint8 grey.
    flow_fn: required by `max_flow`.
    index_quirk: reproduce the STRCN script's window-index quirk (`xia_std_10x8_window` only).
  Returns:
    The apex position within `images`.
  """
  if method == "xia_std":
    return xia_std_apex(images)
  if method == "xia_std_10x8_window":
    return strcn_apex(images, index_quirk=index_quirk)
  if method == "middle":
    return middle_position(len(images))
  if method == "max_flow":
    if flow_fn is None:
      raise InputError("apex method max_flow needs a flow function")
    return max_flow_apex(images, flow_fn)
  raise InputError(f"unknown apex method {method!r}; expected one of {list(METHODS)}")

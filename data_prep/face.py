"""Face cropping for clips that are not already cropped, and the fixed frame size before flow.

The face is found once, on the onset frame, with OpenCV's bundled frontal-face Haar cascade; the
same box, grown by a margin and to the output's aspect ratio, crops every frame of the clip, so the
crop cannot move between onset and apex and add false motion. Frames are then resized to a fixed
size (the authors used 220x200, rows x cols) with area averaging when shrinking.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np

from data_prep import InputError
from data_prep.flow import MIN_SIDE

CASCADE_FILE = "haarcascade_frontalface_default.xml"
DEFAULT_SIZE = (220, 200)  # rows, cols
DEFAULT_MARGIN = 0.15
# Faces fill a large part of every database's frames; smaller detections are background.
MIN_FACE_FRACTION = 0.2


class FaceNotFound(InputError):
  """The detector found no face on a clip's onset frame."""


@dataclasses.dataclass(frozen=True)
class Box:
  """A crop box in pixels: rows top..bottom-1, columns left..right-1."""
  top: int
  bottom: int
  left: int
  right: int

  def crop(self, image: np.ndarray) -> np.ndarray:
    return image[self.top:self.bottom, self.left:self.right]

  def as_list(self) -> list[int]:
    return [self.top, self.bottom, self.left, self.right]


def load_face_detector() -> cv2.CascadeClassifier:
  """OpenCV's bundled frontal-face cascade (shipped in the opencv wheel, nothing downloaded)."""
  path = Path(cv2.data.haarcascades) / CASCADE_FILE
  detector = cv2.CascadeClassifier(str(path))
  if detector.empty():
    raise InputError(f"{path}: cannot load the face cascade (is opencv-contrib-python-headless "
                     "4.x installed?)")
  return detector


def detect_face(gray: np.ndarray, detector: cv2.CascadeClassifier, where: str) -> Box:
  """The largest face on a grey frame `[H, W]` uint8.

  Args:
    gray: the onset frame.
    detector: from `load_face_detector`.
    where: the frame's file, named in the FaceNotFound error.
  Returns:
    The detection's box (tight around brows to mouth; see `face_box` for the crop).
  """
  side = int(MIN_FACE_FRACTION * min(gray.shape))
  faces = detector.detectMultiScale(cv2.equalizeHist(gray), scaleFactor=1.1, minNeighbors=5,
                                    minSize=(side, side))
  if len(faces) == 0:
    raise FaceNotFound(f"{where}: no face found on the onset frame")
  x, y, width, height = max(faces, key=lambda face: face[2] * face[3])
  return Box(int(y), int(y + height), int(x), int(x + width))


def face_box(detection: Box, image_shape: tuple[int, ...], *, margin: float = DEFAULT_MARGIN,
             aspect: float = DEFAULT_SIZE[0] / DEFAULT_SIZE[1]) -> Box:
  """Grows a detection by `margin` of its size on each side, then to `aspect` (rows / cols).

  The box is shifted, then clipped, to stay inside the image.
  """
  height, width = detection.bottom - detection.top, detection.right - detection.left
  box_height, box_width = height * (1 + 2 * margin), width * (1 + 2 * margin)
  if box_height / box_width < aspect:
    box_height = box_width * aspect
  else:
    box_width = box_height / aspect
  centre_row = (detection.top + detection.bottom) / 2
  centre_col = (detection.left + detection.right) / 2
  rows, cols = image_shape[:2]
  top = _fit(centre_row - box_height / 2, box_height, rows)
  left = _fit(centre_col - box_width / 2, box_width, cols)
  return Box(top, min(rows, top + round(box_height)), left, min(cols, left + round(box_width)))


def _fit(start: float, length: float, limit: int) -> int:
  """Start of a span of `length` moved inside [0, limit) where it fits."""
  return int(round(min(max(start, 0.0), max(limit - length, 0.0))))


def resize(image: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
  """Resizes `[H, W]` to `size` (rows, cols): area averaging to shrink, bicubic to enlarge."""
  if size is None or image.shape[:2] == tuple(size):
    return image
  rows, cols = size
  shrinking = rows * cols < image.shape[0] * image.shape[1]
  interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
  return cv2.resize(image, (cols, rows), interpolation=interpolation)


def parse_size(value: str) -> tuple[int, int] | None:
  """`ROWSxCOLS` (each at least the flow's `MIN_SIDE`) or `none` (keep the frames' size)."""
  if value.lower() == "none":
    return None
  try:
    rows, cols = (int(part) for part in value.lower().split("x"))
  except ValueError as error:
    raise InputError(f"--size: {value!r} is not ROWSxCOLS (e.g. 220x200) or none") from error
  if rows < MIN_SIDE or cols < MIN_SIDE:
    raise InputError(f"--size: {value!r}: frames need at least {MIN_SIDE} px per side for the flow")
  return rows, cols

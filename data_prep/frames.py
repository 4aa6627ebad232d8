"""Clip folders and their frames: locating them, listing frames in natural order, reading images.

Frame files carry the absolute frame number as the last digits of their name, unpadded in CASME II
(`img46.jpg`, `reg_img100.jpg`) and padded elsewhere (SAMM `006_05562.jpg`, SMIC
`reg_image036237.bmp`), so frames are ordered by that number, never by the name as a string
(`img100` sorts before `img46` lexicographically).
"""

from __future__ import annotations

import dataclasses
import re
from collections import deque
from pathlib import Path

import numpy as np

from data_prep import InputError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".bmp", ".png", ".tif", ".tiff"})
TRAILING_DIGITS = re.compile(r"(\d+)$")
SUBJECT_FOLDERS = {"casme2": re.compile(r"^sub(\d+)$", re.IGNORECASE),
                   "samm": re.compile(r"^(\d+)$")}
# How deep below the given folder the subject folders may sit (e.g. CASME2/Cropped/sub01).
LAYOUT_SEARCH_DEPTH = 3


def natural_key(name: str) -> tuple:
  """Sort key that orders digit runs by value: `img9` < `img10`."""
  return tuple(int(part) if part.isdigit() else part.lower()
               for part in re.split(r"(\d+)", name) if part)


def frame_number(path: Path) -> int:
  """The frame number written at the end of the file name (`reg_img46.jpg` -> 46)."""
  match = TRAILING_DIGITS.search(path.stem)
  if not match:
    raise InputError(f"{path}: frame file name has no frame number at its end")
  return int(match.group(1))


@dataclasses.dataclass(frozen=True)
class ClipFrames:
  """The frames of one clip folder, ordered by frame number."""
  directory: Path
  numbers: tuple[int, ...]
  paths: tuple[Path, ...]

  @property
  def first(self) -> int:
    return self.numbers[0]

  @property
  def last(self) -> int:
    return self.numbers[-1]

  def position(self, number: int) -> int:
    """Position of the present frame nearest to `number` (ties go to the earlier frame)."""
    numbers = np.asarray(self.numbers)
    return int(np.argmin(np.abs(numbers - number)))


def list_frames(directory: str | Path) -> ClipFrames:
  """Lists the image files of a clip folder in frame-number order.

  Args:
    directory: the clip folder.
  Returns:
    The frames; other files (thumbnails databases, notes) are ignored.
  """
  directory = Path(directory)
  if not directory.is_dir():
    raise InputError(f"{directory}: clip folder not found")
  images = [path for path in directory.iterdir()
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES]
  if not images:
    raise InputError(f"{directory}: clip folder holds no frame images")
  numbered = sorted(((frame_number(path), path) for path in images),
                    key=lambda item: (item[0], natural_key(item[1].name)))
  for (number, path), (next_number, next_path) in zip(numbered, numbered[1:]):
    if number == next_number:
      raise InputError(f"{directory}: {path.name} and {next_path.name} are both frame {number}")
  return ClipFrames(directory, tuple(n for n, _ in numbered), tuple(p for _, p in numbered))


def read_gray(path: Path) -> np.ndarray:
  """One frame as 8-bit grey, `[H, W]` uint8 (SAMM is grey already, CASME II and SMIC colour)."""
  import cv2  # deferred: listing and annotation checks run without OpenCV

  image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
  if image is None:
    raise InputError(f"{path}: cannot read the image")
  return image


def _has_subject_folders(directory: Path, pattern: re.Pattern) -> bool:
  return any(child.is_dir() and pattern.match(child.name) and
             any(grandchild.is_dir() for grandchild in child.iterdir())
             for child in directory.iterdir())


def find_layout_root(dataset: str, root: str | Path) -> Path:
  """The folder that directly holds the subject folders (`sub01`, or `006`) of CASME II or SAMM.

  Args:
    dataset: `casme2` or `samm`.
    root: the folder given on the command line, or one above the subject folders.
  Returns:
    The shallowest such folder; two at the same depth (e.g. `Cropped` and `CASME2_RAW_selected`)
    are ambiguous and raise an error naming both.
  """
  root = Path(root)
  if not root.is_dir():
    raise InputError(f"{root}: {dataset} folder not found")
  pattern = SUBJECT_FOLDERS[dataset]
  queue, found, found_depth = deque([(root, 0)]), [], None
  while queue:
    directory, depth = queue.popleft()
    if found_depth is not None and depth > found_depth:
      break
    if _has_subject_folders(directory, pattern):
      found.append(directory)
      found_depth = depth
    elif depth < LAYOUT_SEARCH_DEPTH:
      queue.extend((child, depth + 1) for child in sorted(directory.iterdir()) if child.is_dir())
  if not found:
    raise InputError(f"{root}: no {dataset} subject folders ({pattern.pattern}) with clip folders "
                     f"within {LAYOUT_SEARCH_DEPTH} levels")
  if len(found) > 1:
    raise InputError(f"{root}: several {dataset} layouts found ({[str(p) for p in found]}); pass "
                     "the one to use")
  return found[0]


def index_clips(dataset: str, root: str | Path) -> dict[tuple[str, str], Path]:
  """Every clip folder of a CASME II or SAMM tree, keyed by (subject key, clip folder name).

  Args:
    dataset: `casme2` (`<root>/sub01/EP02_01f/`) or `samm` (`<root>/006/006_1_2/`).
    root: see `find_layout_root`.
  Returns:
    Clip folders by (`sub01`, `EP02_01f`) or (`006`, `006_1_2`).
  """
  layout = find_layout_root(dataset, root)
  pattern = SUBJECT_FOLDERS[dataset]
  clips = {}
  for subject_dir in sorted(layout.iterdir()):
    match = pattern.match(subject_dir.name)
    if not (subject_dir.is_dir() and match):
      continue
    number = int(match.group(1))
    subject = f"sub{number:02d}" if dataset == "casme2" else f"{number:03d}"
    for clip_dir in sorted(subject_dir.iterdir()):
      if clip_dir.is_dir():
        if (subject, clip_dir.name) in clips:
          raise InputError(f"{clip_dir}: clip found twice (also {clips[subject, clip_dir.name]})")
        clips[subject, clip_dir.name] = clip_dir
  return clips

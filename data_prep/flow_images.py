"""Flow-image folders that the MER community shares, read into per-sample images joined by name.

Three layouts (README, "Your own flow maps"):
- `ststnet`: one PNG per sample named `<subject>_<sample> .png` (a space before `.png`; the name
  without it is accepted too), flat in one folder, or in the LOSO tree
  `<root>/<subject>/u_train|u_test/<label>/<file>` where every sample appears once per fold
  (label folders 0 negative, 1 positive, 2 surprise: a second label source);
- `rcn`: what `data_prep.export` writes, `flow/<dataset>_<subject>_<sample>.png` plus the
  per-subject `<subject>_test.txt` lists (lines `<path> <label> <dataset id>`, a second label source);
- `manifest`: a CSV with the header `path,dataset,subject,sample,label` (paths relative to the CSV).

Every file is named in its error: a non-PNG file, a name not in the organisers' list, a label that
disagrees with the list, the same sample twice (a flat folder, or different content in a tree), an
image of another size than the first one read. Images are 8-bit, 3 channels, kept as stored.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
from rcn_jax import sample_list
from rcn_jax.sample_list import CLASS_NAMES, DATASETS, ListedSample

from data_prep import InputError

LAYOUTS = ("ststnet", "rcn", "manifest")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TREE_SPLITS = ("u_train", "u_test")
MANIFEST_COLUMNS = ("path", "dataset", "subject", "sample", "label")
RCN_DATASET_IDS = {"casme2": 0, "smic": 1, "samm": 2}  # data_prep.export.DATASET_IDS
RCN_IMAGE_FOLDER = "flow"
# Subject spellings of the three databases never collide (docs: sub01, s01, 006).
_SUBJECT_FORMS = (("casme2", re.compile(r"sub(\d+)"), "sub{:02d}"),
                  ("smic", re.compile(r"s(\d+)"), "s{:02d}"),
                  ("samm", re.compile(r"(\d+)"), "{:03d}"))


@dataclasses.dataclass(frozen=True)
class FlowImage:
  """One sample's image, joined with its row of the organisers' list.

  Attributes:
    listed: the list's row (dataset, subject key, sample, label).
    path: the file read (the first copy, in a tree).
    pixels: `[H, W, 3]` uint8, the file's channels in its own RGB order.
  """
  listed: ListedSample
  path: Path
  pixels: np.ndarray


def subject_key(dataset: str, subject: str) -> str | None:
  """The list's subject key of a spelling (`sub1`, `s1`, `6` pad to `sub01`, `s01`, `006`), or None."""
  for name, pattern, form in _SUBJECT_FORMS:
    match = pattern.fullmatch(subject.strip())
    if name == dataset and match:
      return form.format(int(match.group(1)))
  return None


def dataset_of_subject(subject: str) -> str | None:
  """The database a subject spelling belongs to (`sub..` CASME II, `s..` SMIC, digits SAMM)."""
  return next((name for name, pattern, _ in _SUBJECT_FORMS if pattern.fullmatch(subject)), None)


def image_stem(path: Path) -> str:
  """The sample part of a PNG's name: `006_006_1_2 .png` (STSTNet's space) and `..._2.png` alike."""
  if path.suffix.lower() != ".png":
    raise InputError(f"{path}: not a PNG file (expected one .png flow image per sample)")
  return path.name[:-len(".png")].rstrip()


class ListIndex:
  """The organisers' list by (dataset, subject key, sample), for joining file names."""

  def __init__(self):
    self.listed = sample_list.read_official_list()
    self.by_key = {(s.dataset, s.subject, s.sample): s for s in self.listed}

  def find(self, dataset: str | None, subject: str, sample: str, path: Path) -> ListedSample:
    """The listed sample a file names; an unknown name is an error naming the file."""
    dataset = dataset or dataset_of_subject(subject)
    key = subject_key(dataset, subject) if dataset in DATASETS else None
    found = self.by_key.get((dataset, key, sample)) if key else None
    if found is None:
      raise InputError(f"{path}: {dataset or '?'}/{subject}/{sample} is not a sample of the organisers' "
                       f"list {sample_list.LIST_NAME} (names: casme2 sub01_EP02_01f, smic s01_s01_ne_01, "
                       "samm 006_006_1_2)")
    return found

  def from_ststnet_name(self, path: Path) -> ListedSample:
    subject, _, sample = image_stem(path).partition("_")
    return self.find(None, subject, sample, path)

  def from_rcn_name(self, path: Path) -> ListedSample:
    dataset, _, rest = image_stem(path).partition("_")
    subject, _, sample = rest.partition("_")
    return self.find(dataset if dataset in DATASETS else "?", subject, sample, path)


def read_png(path: Path, data: bytes | None = None) -> np.ndarray:
  """`[H, W, 3]` uint8 in the file's RGB order; anything else is an error naming the file."""
  import cv2  # pylint: disable=g-import-not-at-top

  data = path.read_bytes() if data is None else data
  if not data.startswith(PNG_SIGNATURE):
    raise InputError(f"{path}: not a PNG file (no PNG signature)")
  image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
  if image is None:
    raise InputError(f"{path}: cannot decode the PNG")
  if image.dtype != np.uint8:
    raise InputError(f"{path}: {image.dtype} pixels; expected an 8-bit image")
  if image.ndim != 3 or image.shape[2] != 3:
    channels = 1 if image.ndim == 2 else image.shape[2]
    raise InputError(f"{path}: {channels} channel(s); expected 3 (u, v, strain)")
  return np.ascontiguousarray(image[..., ::-1])  # OpenCV decodes to BGR


def check_label(listed: ListedSample, label: int, path: Path, source: str) -> None:
  if label != listed.label:
    raise InputError(f"{path}: {source} says {CLASS_NAMES[label]} ({label}) but the organisers' list says "
                     f"{CLASS_NAMES[listed.label]} ({listed.label}) for {listed.dataset}/{listed.subject}/"
                     f"{listed.sample}")


def _visible(folder: Path) -> list[Path]:
  """A folder's entries without hidden ones (`.DS_Store` and the like), sorted."""
  return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _files(folder: Path, what: str) -> list[Path]:
  entries = _visible(folder)
  for entry in entries:
    if not entry.is_file():
      raise InputError(f"{entry}: unexpected folder in {what}")
  return entries


class _Collector:
  """Gathers one image per sample: duplicates, sizes and decoding are checked here."""

  def __init__(self, allow_same_content: bool):
    self.allow_same_content = allow_same_content
    self.images: dict[tuple[str, str, str], FlowImage] = {}
    self.digests: dict[tuple[str, str, str], bytes] = {}
    self.size: tuple[tuple[int, int], Path] | None = None

  def add(self, listed: ListedSample, path: Path) -> None:
    key = (listed.dataset, listed.subject, listed.sample)
    data = path.read_bytes()
    digest = hashlib.sha1(data).digest()
    first = self.images.get(key)
    if first is not None:
      if not self.allow_same_content:
        raise InputError(f"{path}: duplicate of {first.path} (both are {'/'.join(key)})")
      if digest == self.digests[key]:
        return
      if not np.array_equal(read_png(path, data), first.pixels):
        raise InputError(f"{path}: {'/'.join(key)} again with other content than {first.path}")
      return
    pixels = read_png(path, data)
    if self.size is None:
      self.size = (pixels.shape[:2], path)
    elif pixels.shape[:2] != self.size[0]:
      (height, width), reference = self.size
      raise InputError(f"{path}: {pixels.shape[0]}x{pixels.shape[1]} px but {reference} is {height}x{width}; "
                       "every image of an import must have one size")
    self.images[key] = FlowImage(listed, path, pixels)
    self.digests[key] = digest


def read_ststnet(source: Path, index: ListIndex) -> tuple[list[FlowImage], dict]:
  """The flat folder or the LOSO tree; returns the images and what was scanned."""
  entries = _visible(source)
  if not any(entry.is_dir() for entry in entries):
    collector = _Collector(allow_same_content=False)
    for path in entries:
      collector.add(index.from_ststnet_name(path), path)
    return list(collector.images.values()), {"form": "flat", "files": len(entries)}
  collector, files = _Collector(allow_same_content=True), 0
  for subject_dir in entries:
    if not subject_dir.is_dir():
      raise InputError(f"{subject_dir}: a file beside the subject folders of a LOSO tree "
                       f"(<root>/<subject>/u_train|u_test/<label>/<file>)")
    for split_dir in _visible(subject_dir):
      if split_dir.name not in TREE_SPLITS or not split_dir.is_dir():
        raise InputError(f"{split_dir}: expected only the folders {TREE_SPLITS} in a subject folder")
      for label_dir in _visible(split_dir):
        if label_dir.name not in ("0", "1", "2") or not label_dir.is_dir():
          raise InputError(f"{label_dir}: expected label folders 0 (negative), 1 (positive), 2 (surprise)")
        for path in _files(label_dir, "a label folder"):
          listed = index.from_ststnet_name(path)
          check_label(listed, int(label_dir.name), path, f"label folder {label_dir.name}")
          _check_fold(listed, subject_dir.name, split_dir.name, path)
          collector.add(listed, path)
          files += 1
  return list(collector.images.values()), {"form": "loso_tree", "files": files}


def _check_fold(listed: ListedSample, folder: str, split: str, path: Path) -> None:
  """A sample is tested in its own subject's folder and trained in every other one."""
  dataset = dataset_of_subject(folder)
  own = dataset == listed.dataset and subject_key(dataset, folder) == listed.subject
  if own != (split == "u_test"):
    where = "another subject's u_test" if split == "u_test" else "its own subject's u_train"
    raise InputError(f"{path}: {listed.dataset}/{listed.subject}/{listed.sample} is in {where}")


def read_rcn(source: Path, index: ListIndex) -> tuple[list[FlowImage], dict]:
  """The release layout of `data_prep.export`: `flow/*.png` and the per-subject test lists."""
  folder = source / RCN_IMAGE_FOLDER if (source / RCN_IMAGE_FOLDER).is_dir() else source
  labels = {}
  for list_file in sorted(source.glob("*_test.txt")):
    for number, line in enumerate(list_file.read_text().splitlines(), start=1):
      fields = line.split()
      if not fields:
        continue
      if len(fields) != 3 or not fields[1].isdigit() or not fields[2].isdigit():
        raise InputError(f"{list_file} line {number}: expected '<png path> <label> <dataset id>'")
      labels[Path(fields[0]).name] = (int(fields[1]), int(fields[2]), f"{list_file.name} line {number}")
  collector, files = _Collector(allow_same_content=False), 0
  for path in _visible(folder):
    if folder == source and path.suffix == ".txt" and path.is_file():
      continue  # the lists themselves
    if path.is_dir():
      raise InputError(f"{path}: unexpected folder among the flow images")
    listed = index.from_rcn_name(path)
    if path.name in labels:
      label, dataset_id, where = labels[path.name]
      check_label(listed, label, path, where)
      if RCN_DATASET_IDS[listed.dataset] != dataset_id:
        raise InputError(f"{path}: {where} gives dataset id {dataset_id}, not {listed.dataset}'s "
                         f"{RCN_DATASET_IDS[listed.dataset]}")
    collector.add(listed, path)
    files += 1
  return list(collector.images.values()), {"form": "rcn", "files": files, "listed_in_test_lists": len(labels)}


def read_manifest_csv(source: Path, index: ListIndex) -> tuple[list[FlowImage], dict]:
  """A CSV `path,dataset,subject,sample,label`; paths relative to the CSV's folder."""
  if not source.is_file():
    raise InputError(f"--source={source}: the manifest layout reads a CSV file")
  with source.open(newline="") as stream:
    rows = list(csv.DictReader(stream))
    header = rows[0].keys() if rows else ()
  missing = [c for c in MANIFEST_COLUMNS if c not in header]
  if missing:
    raise InputError(f"{source}: missing column(s) {missing}; expected the header {','.join(MANIFEST_COLUMNS)}")
  collector = _Collector(allow_same_content=False)
  for number, row in enumerate(rows, start=2):
    path = (source.parent / row["path"].strip()).resolve()
    if not path.is_file():
      raise InputError(f"{source} line {number}: {path} does not exist")
    image_stem(path)
    dataset = row["dataset"].strip().lower()
    if dataset not in DATASETS:
      raise InputError(f"{source} line {number}: dataset {dataset!r}; expected one of {list(DATASETS)}")
    listed = index.find(dataset, row["subject"], row["sample"].strip(), path)
    check_label(listed, _label(row["label"], source, number), path, f"{source.name} line {number}")
    collector.add(listed, path)
  return list(collector.images.values()), {"form": "manifest", "files": len(rows)}


def _label(text: str, source: Path, number: int) -> int:
  text = text.strip().lower()
  if text.isdigit() and int(text) < len(CLASS_NAMES):
    return int(text)
  if text in CLASS_NAMES:
    return CLASS_NAMES.index(text)
  raise InputError(f"{source} line {number}: label {text!r}; expected 0-2 or one of {list(CLASS_NAMES)}")


READERS = {"ststnet": read_ststnet, "rcn": read_rcn, "manifest": read_manifest_csv}


def read_layout(layout: str, source: str | Path) -> tuple[list[FlowImage], dict]:
  """Reads a folder (or manifest) of the given layout; images come back in the organisers' list order.

  Returns:
    The images and a scan summary (`form`, `files`, ...).
  """
  if layout not in READERS:
    raise InputError(f"--layout={layout}: expected one of {list(LAYOUTS)}")
  source = Path(source)
  if not source.exists():
    raise InputError(f"--source={source}: no such file or folder")
  if layout != "manifest" and not source.is_dir():
    raise InputError(f"--source={source}: the {layout} layout reads a folder")
  index = ListIndex()
  images, scan = READERS[layout](source, index)
  order = {(s.dataset, s.subject, s.sample): i for i, s in enumerate(index.listed)}
  images.sort(key=lambda image: order[(image.listed.dataset, image.listed.subject, image.listed.sample)])
  return images, scan


def missing_samples(images: Iterable[FlowImage], listed: Iterable[ListedSample]) -> list[ListedSample]:
  """Listed samples without an image."""
  found = {image.listed for image in images}
  return [s for s in listed if s not in found]


def counts(images: Sequence[FlowImage], listed: Sequence[ListedSample]) -> Mapping[str, dict]:
  """Per database: listed and matched samples."""
  return {d: {"listed": sum(s.dataset == d for s in listed), "matched": sum(i.listed.dataset == d for i in images)}
          for d in DATASETS}

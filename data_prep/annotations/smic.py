"""SMIC (HS): clips labelled by folder, and the optional SMIC-E annotation sheet.

Folder layouts (`<n>` is the subject number, unpadded on disk: `s1`; the list writes `s01`):
  original / cropped release: `HS/s<n>/micro/{negative,positive,surprise}/s<n>_{ne,po,sur}_<NN>/`;
  SMIC-E (long clips): `HS_long/SMIC-HS-E/s<nn>/s<n>_{ne,po,sur}_<NN>/`.
The VIS and NIR cameras reuse the HS clip names, so their folders are skipped, as is `non_micro`.
The SMIC-E sheet (`SMIC-HS-E_annotation.xlsx`, sheet `HS`) has `Subject` (int), `Filename`
(`s20_ne_01`), `OnsetF`, `OffsetF`, `Emotion`, and in the 2019 release `ApexF`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from data_prep import InputError
from data_prep.annotations.records import (Annotation, checked_sheet, clip_annotation, parse_int, parse_text,
                                           sheet_records)

CLIP_NAME = re.compile(r"^s(\d+)_(ne|po|sur)_(\d+)$", re.IGNORECASE)
ABBREVIATIONS = {"ne": "negative", "po": "positive", "sur": "surprise"}
SKIPPED_FOLDERS = re.compile(r"^(vis|nir|non_micro)([_-].*)?$|^smic-(vis|nir)-e$", re.IGNORECASE)
SHEET = "HS"
COLUMNS = ("Subject", "Filename", "OnsetF", "OffsetF", "Emotion")
APEX_COLUMN = "ApexF"
HEADER_SEARCH_ROWS = 5


def smic_key(name: str, where: str) -> tuple[str, str, str]:
  """`s3_ne_03` or `s03_ne_03` -> (`s03`, `s03_ne_03`, `negative`), the list's spelling."""
  match = CLIP_NAME.match(name.strip())
  if not match:
    raise InputError(f"{where}: {name!r} is not a SMIC clip name such as s1_ne_01")
  number, abbreviation, index = match.groups()
  subject = f"s{int(number):02d}"
  abbreviation = abbreviation.lower()
  return subject, f"{subject}_{abbreviation}_{index}", ABBREVIATIONS[abbreviation]


def scan_smic(root: str | Path) -> tuple[list[Annotation], dict[tuple[str, str], Path]]:
  """Finds every HS clip folder under `root` and labels it by its class folder.

  Args:
    root: any folder above the clips (`SMIC_all_cropped`, its `HS`, or a SMIC-E tree).
  Returns:
    The annotations (emotion from the class folder, or from the clip name where the layout has no
    class folders; frame numbers None) and the clip folders, both keyed like the list.
  """
  root = Path(root)
  if not root.is_dir():
    raise InputError(f"{root}: SMIC folder not found")
  annotations, folders = [], {}
  for directory, subdirectories, _ in os.walk(root):
    subdirectories[:] = sorted(name for name in subdirectories if not SKIPPED_FOLDERS.match(name))
    for name in list(subdirectories):
      if not CLIP_NAME.match(name):
        continue
      path = Path(directory) / name
      subject, sample, named_class = smic_key(name, str(path))
      parent = Path(directory).name.lower()
      if parent in ABBREVIATIONS.values() and parent != named_class:
        raise InputError(f"{path}: clip name says {named_class} but it is in a {parent} folder")
      if (subject, sample) in folders:
        raise InputError(f"{path}: clip {sample} found twice (also {folders[subject, sample]}); "
                         "point --smic at one release")
      folders[subject, sample] = path
      annotations.append(Annotation(dataset="smic", subject=subject, sample=sample,
                                    emotion=named_class, onset=None, apex=None, offset=None,
                                    source=str(path)))
      subdirectories.remove(name)
  if not folders:
    raise InputError(f"{root}: no SMIC HS clip folders (named like s1_ne_01) found")
  return annotations, folders


def read_smic_e_sheet(path: str | Path) -> list[Annotation]:
  """Reads the HS sheet of the SMIC-E annotation workbook.

  Args:
    path: `SMIC-HS-E_annotation.xlsx` (or the 2019 release with an `ApexF` column).
  Returns:
    One Annotation per clip with onset and offset (apex only from `ApexF`), keyed like the list.
  """
  path = Path(path)
  annotations = []
  for where, values in sheet_records(path, SHEET, COLUMNS, HEADER_SEARCH_ROWS, optional=(APEX_COLUMN,),
                                     fallback_first=False):
    subject, sample, _ = smic_key(parse_text(values["Filename"], where, "Filename"), where)
    number = parse_text(values["Subject"], where, "Subject").lower().lstrip("s")
    if not number.isdigit() or f"s{int(number):02d}" != subject:
      raise InputError(f"{where}: Subject {values['Subject']!r} does not match Filename "
                       f"{values['Filename']!r}")
    apex = parse_int(values[APEX_COLUMN], where, APEX_COLUMN) if APEX_COLUMN in values else None
    annotations.append(clip_annotation("smic", where, values, subject=subject, sample=sample, apex=apex,
                                       onset_column="OnsetF", offset_column="OffsetF", emotion_column="Emotion"))
  return checked_sheet(annotations, path)

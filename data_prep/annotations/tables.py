"""Onset/apex/offset tables in the first author's format, e.g. the shipped SMIC table.

Format (no header): `subject, sample, onset, apex, offset, label`, one clip a line, absolute frame
numbers, subject and sample spelt as in the organisers' list (SAMM subjects may be unpadded). The
label column's coding differs per file (SMIC: 1 positive, 2 negative, 3 surprise), so only the
frame numbers are read. The same format serves as a correction table for CASME II and SAMM.
"""

from __future__ import annotations

import csv
import dataclasses
import importlib.resources
from pathlib import Path

from rcn_jax.sample_list import subject_key

from data_prep import InputError
from data_prep.annotations.records import Annotation, parse_int

SHIPPED_SMIC_TABLE = "smic_3classes_xia.csv"


@dataclasses.dataclass(frozen=True)
class FrameRow:
  onset: int
  apex: int
  offset: int
  source: str


def shipped_smic_table() -> Path:
  """The first author's published SMIC onset/apex/offset table (origin: data_prep/resources/README.md)."""
  return Path(str(importlib.resources.files("data_prep.resources").joinpath(SHIPPED_SMIC_TABLE)))


def read_frame_table(path: str | Path, dataset: str) -> dict[tuple[str, str], FrameRow]:
  """Reads a 6-column frame table.

  Args:
    path: the CSV file.
    dataset: whose subject keys the file holds (`casme2`, `samm`, `smic`).
  Returns:
    Frame numbers by (subject key, sample).
  """
  path = Path(path)
  if not path.is_file():
    raise InputError(f"{path}: frame table not found")
  table: dict[tuple[str, str], FrameRow] = {}
  with path.open(newline="") as stream:
    for row_number, row in enumerate(csv.reader(stream), start=1):
      if not any(field.strip() for field in row):
        continue
      where = f"{path} row {row_number}"
      if len(row) != 6:
        raise InputError(f"{where}: expected 6 fields (subject, sample, onset, apex, offset, "
                         f"label), got {len(row)}")
      subject, sample = row[0].strip(), row[1].strip()
      if dataset == "samm" and not subject.isdigit():
        raise InputError(f"{where}: subject {subject!r} is not a SAMM subject number")
      onset, apex, offset = (parse_int(row[index], where, name)
                             for index, name in ((2, "onset"), (3, "apex"), (4, "offset")))
      if not onset <= apex <= offset:
        raise InputError(f"{where}: apex {apex} is outside onset..offset {onset}..{offset}")
      key = (subject_key(dataset, subject), sample)
      if key in table:
        raise InputError(f"{where}: duplicate clip {subject}/{sample} "
                         f"(first at {table[key].source})")
      table[key] = FrameRow(onset, apex, offset, where)
  if not table:
    raise InputError(f"{path}: the frame table is empty")
  return table


def apply_frame_table(annotations: list[Annotation],
                      table: dict[tuple[str, str], FrameRow]) -> list[Annotation]:
  """Replaces onset, apex and offset of the annotated clips the table lists; others stay as read."""
  updated = []
  for annotation in annotations:
    row = table.get(annotation.key)
    if row is not None:
      annotation = dataclasses.replace(
          annotation, onset=row.onset, apex=row.apex, offset=row.offset,
          source=f"{annotation.source}; frames from {row.source}")
    updated.append(annotation)
  return updated

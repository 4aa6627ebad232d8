"""SAMM coding sheet (`SAMM_Micro_FACS_Codes_v2.xlsx`).

Layout: one sheet `MICRO_ONLY`; rows 1-13 are notes and row 14 is the header, with spaces in the
names: `Subject`, `Filename`, `Inducement Code`, `Onset Frame`, `Apex Frame`, `Offset Frame`,
`Duration` (a formula), `Micro`, `Action Units`, `Estimated Emotion` (capitalised), `Objective
Classes`, `Notes`. Subject is zero-padded text (`'006'`). The released sheet has two apexes outside
onset..offset (028_4_1, 032_3_1); they are read as written and rejected when the apex is resolved.
"""

from __future__ import annotations

from pathlib import Path

from data_prep import InputError
from data_prep.annotations.records import (Annotation, checked_sheet, clip_annotation, parse_int, parse_text,
                                           sheet_records)

SHEET = "MICRO_ONLY"
COLUMNS = ("Subject", "Filename", "Onset Frame", "Apex Frame", "Offset Frame", "Estimated Emotion")
# The header is on row 14 below 13 note rows; search a little further for edited copies.
HEADER_SEARCH_ROWS = 30


def samm_subject(value: object, where: str) -> str:
  """`'006'`, `6` or `6.0` -> `006`."""
  text = parse_text(value, where, "Subject")
  if not text.isdigit():
    raise InputError(f"{where}: Subject is {value!r}, expected a subject number such as '006'")
  return f"{int(text):03d}"


def read_samm_sheet(path: str | Path) -> list[Annotation]:
  """Reads every clip of the SAMM FACS codes sheet.

  Args:
    path: the .xlsx file.
  Returns:
    One Annotation per clip row, in sheet order, frames as written (absolute frame numbers).
  """
  path = Path(path)
  annotations = []
  for where, values in sheet_records(path, SHEET, COLUMNS, HEADER_SEARCH_ROWS):
    subject = samm_subject(values["Subject"], where)
    sample = parse_text(values["Filename"], where, "Filename")
    if not sample.startswith(subject + "_"):
      raise InputError(f"{where}: Filename {sample!r} does not belong to Subject {subject}")
    annotations.append(clip_annotation(
        "samm", where, values, subject=subject, sample=sample,
        apex=parse_int(values["Apex Frame"], where, "Apex Frame"), onset_column="Onset Frame",
        offset_column="Offset Frame", emotion_column="Estimated Emotion"))
  return checked_sheet(annotations, path)

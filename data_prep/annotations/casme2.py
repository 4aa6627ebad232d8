"""CASME II coding sheet (`CASME2-coding-20140508.xlsx` or the 2019-07-01 release).

Layout: sheet `Sheet1`, header on row 1 with `Subject`, `Filename`, `OnsetFrame`, `ApexFrame`,
`OffsetFrame`, `Estimated Emotion` (blank header cells and `Action Units` between them; the 2019
release adds `Objective Classes`). Subject is text (`'01'`) in the releases but a number in
re-saved copies; ApexFrame is `/` for sub04/EP12_01f.
"""

from __future__ import annotations

from pathlib import Path

from data_prep import InputError
from data_prep.annotations.records import (Annotation, checked_sheet, clip_annotation, is_blank, parse_int,
                                           parse_text, sheet_records)

SHEET = "Sheet1"
COLUMNS = ("Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame", "Estimated Emotion")
# The released sheets have the header on row 1; a little slack tolerates a title row in copies.
HEADER_SEARCH_ROWS = 5
NO_APEX = "/"


def casme2_subject(value: object, where: str) -> str:
  """`'01'`, `1`, `1.0` or `'sub01'` -> `sub01` (the folder name and fold key)."""
  text = parse_text(value, where, "Subject")
  digits = text[3:] if text.lower().startswith("sub") else text
  if not digits.isdigit():
    raise InputError(f"{where}: Subject is {value!r}, expected a subject number such as '01'")
  return f"sub{int(digits):02d}"


def read_casme2_sheet(path: str | Path) -> list[Annotation]:
  """Reads every clip of a CASME II coding sheet.

  Args:
    path: the coding .xlsx file.
  Returns:
    One Annotation per row, in sheet order; `apex` is None where the sheet writes `/`.
  """
  path = Path(path)
  annotations = []
  for where, values in sheet_records(path, SHEET, COLUMNS, HEADER_SEARCH_ROWS):
    apex_cell = values["ApexFrame"]
    if is_blank(apex_cell) or (isinstance(apex_cell, str) and apex_cell.strip() == NO_APEX):
      apex = None
    else:
      apex = parse_int(apex_cell, where, "ApexFrame")
    annotations.append(clip_annotation(
        "casme2", where, values, subject=casme2_subject(values["Subject"], where),
        sample=parse_text(values["Filename"], where, "Filename"), apex=apex, onset_column="OnsetFrame",
        offset_column="OffsetFrame", emotion_column="Estimated Emotion"))
  return checked_sheet(annotations, path)

"""The record every reader returns, and the cell and header parsing the sheet readers share."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from data_prep import InputError
from data_prep.annotations.labels import emotion_class


@dataclasses.dataclass(frozen=True)
class Annotation:
  """One annotated clip, keyed the way the organisers' list writes it.

  `subject` is the fold key (`sub01`, `s01`, `006`) and `sample` the list's spelling of the clip
  (`EP02_01f`, `s01_ne_01`, `006_1_2`). Frame numbers are absolute, as in the image file names;
  None where the source has none (CASME II's `/` apex, SMIC folders without a table).
  `source` says where the row came from (`file row N`), for error messages.
  """
  dataset: str
  subject: str
  sample: str
  emotion: str
  onset: int | None
  apex: int | None
  offset: int | None
  source: str

  @property
  def key(self) -> tuple[str, str]:
    return (self.subject, self.sample)


def normalise_header(name: Any) -> str:
  """Header cells compare without case or spaces (SAMM `Onset Frame`, CASME II `OnsetFrame`)."""
  if name is None:
    return ""
  return re.sub(r"\s+", "", str(name)).lower()


def is_blank(value: Any) -> bool:
  return value is None or (isinstance(value, str) and not value.strip())


def parse_int(value: Any, where: str, column: str) -> int:
  """An integer cell: int, integral float or digit string; anything else (NaN, text) is an error."""
  if isinstance(value, bool):
    raise InputError(f"{where}: {column} is {value!r}, expected an integer")
  if isinstance(value, int):
    return value
  if isinstance(value, float):
    if math.isnan(value) or not value.is_integer():
      raise InputError(f"{where}: {column} is {value!r}, expected an integer")
    return int(value)
  if isinstance(value, str) and value.strip().isdigit():
    return int(value.strip())
  if is_blank(value):
    raise InputError(f"{where}: {column} is empty, expected an integer")
  raise InputError(f"{where}: {column} is {value!r}, expected an integer")


def parse_text(value: Any, where: str, column: str) -> str:
  """A non-empty text cell (numbers are accepted and written without a decimal point)."""
  if is_blank(value):
    raise InputError(f"{where}: {column} is empty")
  if isinstance(value, float):
    if math.isnan(value):
      raise InputError(f"{where}: {column} is NaN")
    if value.is_integer():
      value = int(value)
  return str(value).strip()


def find_header(rows: Sequence[Sequence[Any]], required: Sequence[str], where: str,
                search_rows: int) -> tuple[int, dict[str, int]]:
  """Finds the first row (within `search_rows`) that holds every required column.

  Args:
    rows: the sheet's rows as value tuples.
    required: column names as the release writes them.
    where: `file, sheet S` for messages.
    search_rows: how many leading rows may hold notes before the header.
  Returns:
    The header's 0-based row index and each required column's 0-based position.
  """
  wanted = {normalise_header(name): name for name in required}
  best_row, best_found = None, set()
  for index, row in enumerate(rows[:search_rows]):
    positions = {}
    for column, cell in enumerate(row):
      key = normalise_header(cell)
      if key in wanted and wanted[key] not in positions:
        positions[wanted[key]] = column
    if len(positions) == len(wanted):
      return index, positions
    if len(positions) > len(best_found):
      best_row, best_found = index, set(positions)
  if best_row is None:
    raise InputError(f"{where}: no header row with columns {list(required)} in the first "
                     f"{search_rows} rows")
  missing = [name for name in required if name not in best_found]
  raise InputError(f"{where} row {best_row + 1}: header lacks column(s) {missing}")


def row_values(row: Sequence[Any], columns: dict[str, int]) -> dict[str, Any]:
  """The named cells of one row (None past the row's end: read-only rows can be short)."""
  return {name: row[column] if column < len(row) else None for name, column in columns.items()}


def data_rows(rows: Sequence[Sequence[Any]], header_index: int,
              key_columns: Sequence[int]) -> Iterator[tuple[int, Sequence[Any]]]:
  """Yields (1-based row number, row) after the header, skipping rows whose key cells are all blank.

  Rows with only some key cells filled are yielded, so the reader reports them.
  """
  for index in range(header_index + 1, len(rows)):
    row = rows[index]
    cells = [row[column] if column < len(row) else None for column in key_columns]
    if all(is_blank(cell) for cell in cells):
      continue
    yield index + 1, row


def sheet_records(path: Path, sheet: str, columns: Sequence[str], header_search_rows: int, *,
                  optional: Sequence[str] = (), fallback_first: bool = True
                  ) -> Iterator[tuple[str, dict[str, Any]]]:
  """Yields (`<file> row <n>`, named cells) for every clip row of a coding sheet keyed by
  Subject and Filename, after finding its header among the first `header_search_rows` rows.

  Columns in `optional` are read when the header has them and are absent from the cells otherwise;
  `fallback_first` takes the first sheet when `sheet` is missing (see `read_sheet_rows`).
  """
  found_sheet, rows = read_sheet_rows(path, sheet, fallback_first=fallback_first)
  header, indices = find_header(rows, columns, f"{path}, sheet {found_sheet}", header_search_rows)
  for name in optional:
    present = [i for i, cell in enumerate(rows[header]) if normalise_header(cell) == normalise_header(name)]
    if present:
      indices[name] = present[0]
  key_columns = [indices[name] for name in ("Subject", "Filename")]
  for row_number, row in data_rows(rows, header, key_columns):
    yield f"{path} row {row_number}", row_values(row, indices)


def clip_annotation(dataset: str, where: str, values: dict[str, Any], *, subject: str, sample: str,
                    apex: int | None, onset_column: str, offset_column: str, emotion_column: str) -> Annotation:
  """The Annotation of one sheet row: onset before offset and a known emotion, else an error at `where`."""
  onset = parse_int(values[onset_column], where, onset_column)
  offset = parse_int(values[offset_column], where, offset_column)
  if offset < onset:
    raise InputError(f"{where}: {offset_column} {offset} is before {onset_column} {onset}")
  emotion = parse_text(values[emotion_column], where, emotion_column)
  emotion_class(dataset, emotion, where)
  return Annotation(dataset=dataset, subject=subject, sample=sample, emotion=emotion, onset=onset, apex=apex,
                    offset=offset, source=where)


def checked_sheet(annotations: list[Annotation], path: Path) -> list[Annotation]:
  """The annotations of a whole sheet, which must hold some and no clip twice."""
  if not annotations:
    raise InputError(f"{path}: no clips below the header")
  check_unique(annotations)
  return annotations


def read_sheet_rows(path: Path, sheet: str | None, fallback_first: bool) -> tuple[str, list[tuple]]:
  """Reads one worksheet's cached values (formulas such as SAMM's Duration come back as numbers).

  Args:
    path: the .xlsx file.
    sheet: the sheet the release uses; None to take the first.
    fallback_first: take the first sheet when `sheet` is absent (renamed copies), else fail.
  Returns:
    The sheet's name and its rows as value tuples.
  """
  import openpyxl  # deferred: only the sheet readers need it

  path = Path(path)
  if not path.is_file():
    raise InputError(f"{path}: annotation sheet not found")
  try:
    workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
  except Exception as error:  # openpyxl raises several unrelated types for unreadable files
    raise InputError(f"{path}: not a readable .xlsx workbook ({error})") from error
  try:
    names = workbook.sheetnames
    if sheet is not None and sheet in names:
      name = sheet
    elif sheet is None or fallback_first:
      name = names[0]
    else:
      raise InputError(f"{path}: no sheet named {sheet!r} (sheets: {names})")
    rows = [tuple(row) for row in workbook[name].iter_rows(values_only=True)]
  finally:
    workbook.close()
  return name, rows


def check_unique(annotations: Sequence[Annotation]) -> None:
  """Two rows for the same clip would make the join ambiguous."""
  seen: dict[tuple[str, str], str] = {}
  for annotation in annotations:
    if annotation.key in seen:
      raise InputError(f"{annotation.source}: duplicate clip {annotation.subject}/"
                       f"{annotation.sample} (first at {seen[annotation.key]})")
    seen[annotation.key] = annotation.source

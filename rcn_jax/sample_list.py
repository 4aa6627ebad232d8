"""The MEGC2019 composite as the organisers published it: which samples exist, with subject and label.

The shipped list (`resources/megc2019_combined_3class_gt.csv`) is the protocol definition shared by
data_prep (joining it with the raw annotation sheets), the synthetic composite and the LOSO folds.
"""

from __future__ import annotations

import csv
import dataclasses
import importlib.resources
from collections.abc import Sequence

from rcn_jax import errors

CLASS_NAMES = ("negative", "positive", "surprise")
DATASETS = ("casme2", "smic", "samm")
LIST_NAME = "megc2019_combined_3class_gt.csv"


@dataclasses.dataclass(frozen=True)
class ListedSample:
  """One row of the organisers' list, with the subject key normalised (`sub01`, `s01`, `006`)."""
  dataset: str
  subject: str
  sample: str
  label: int


def subject_key(dataset: str, subject: str) -> str:
  """The subject name used for folds: SAMM subjects are zero-padded to 3 digits (the list writes `6`)."""
  subject = subject.strip()
  if dataset == "samm":
    if not subject.isdigit():
      raise errors.UserError(f"samm subject {subject!r}: expected a number")
    return f"{int(subject):03d}"
  return subject


def read_official_list(datasets: Sequence[str] | None = None) -> list[ListedSample]:
  """Reads the shipped 442-row list, in its own order (casme2, smic, samm).

  Args:
    datasets: keep only these databases (any of `casme2`, `smic`, `samm`); all when None.
  Returns:
    The listed samples.
  """
  if datasets is not None:
    unknown = sorted(set(datasets) - set(DATASETS))
    if unknown:
      raise errors.UserError(f"unknown dataset(s) {unknown}; expected a subset of {list(DATASETS)}")
  text = importlib.resources.files("rcn_jax.resources").joinpath(LIST_NAME).read_text()
  samples = []
  for row_number, row in enumerate(csv.reader(text.splitlines()), start=1):
    if len(row) != 4:
      raise errors.UserError(f"{LIST_NAME} row {row_number}: expected 4 fields, got {row!r}")
    dataset, subject, sample, label = (field.strip() for field in row)
    if datasets is None or dataset in datasets:
      if not label.isdigit():
        raise errors.UserError(f"{LIST_NAME} row {row_number}: label {label!r} is not a class index")
      try:
        samples.append(ListedSample(dataset, subject_key(dataset, subject), sample, int(label)))
      except ValueError as error:
        raise errors.UserError(f"{LIST_NAME} row {row_number}: {error}") from error
  return samples

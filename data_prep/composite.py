"""The MEGC2019 composite: the organisers' list joined with what was read from the raw datasets.

The shipped list (`rcn_jax.sample_list.read_official_list`) decides which samples exist and their
labels. Each listed sample is matched with its annotation and clip folder; the annotation's emotion,
mapped by `data_prep.annotations.labels`, must give the listed class. Every sample that cannot be
matched, or whose label disagrees, is reported.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

from rcn_jax.sample_list import CLASS_NAMES, ListedSample

from data_prep import InputError
from data_prep.annotations import (Annotation, apply_frame_table, emotion_class, read_casme2_sheet,
                                   read_frame_table, read_samm_sheet, read_smic_e_sheet,
                                   scan_smic)
from data_prep.frames import index_clips

SHEET_READERS = {"casme2": read_casme2_sheet, "samm": read_samm_sheet}


@dataclasses.dataclass(frozen=True)
class DatasetInputs:
  """What was read for one database: its annotations, its clip folders and where they came from."""
  dataset: str
  annotations: tuple[Annotation, ...]
  clip_dirs: Mapping[tuple[str, str], Path]
  sources: Mapping[str, str]
  notes: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class CompositeSample:
  """One listed sample matched with its clip: label from the list, frames from the annotation."""
  dataset: str
  subject: str
  sample: str
  label: int
  clip_dir: Path
  annotation: Annotation


@dataclasses.dataclass
class DatasetMatch:
  """The match report of one database."""
  listed: int = 0
  matched: int = 0
  label_agreement: int = 0
  unmatched: list[dict] = dataclasses.field(default_factory=list)
  label_disagreements: list[dict] = dataclasses.field(default_factory=list)
  not_listed: list[dict] = dataclasses.field(default_factory=list)
  notes: list[str] = dataclasses.field(default_factory=list)
  sources: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class MatchReport:
  """Per-database match report; `ok` when every listed sample matched with the listed label."""
  datasets: dict[str, DatasetMatch]

  @property
  def ok(self) -> bool:
    return all(not m.unmatched and not m.label_disagreements for m in self.datasets.values())

  def to_json(self) -> dict:
    per_dataset = {name: dataclasses.asdict(match) for name, match in self.datasets.items()}
    return {
        "ok": self.ok,
        "listed": sum(m.listed for m in self.datasets.values()),
        "matched": sum(m.matched for m in self.datasets.values()),
        "label_agreement": sum(m.label_agreement for m in self.datasets.values()),
        "datasets": per_dataset,
    }


def read_dataset_inputs(dataset: str, root: str | Path, *, sheet: str | Path | None = None,
                        frame_table: str | Path | None = None) -> DatasetInputs:
  """Reads one database's annotations and lists its clip folders (no image is decoded).

  Args:
    dataset: `casme2`, `samm` or `smic`.
    root: the folder holding the clips (any level above the subject folders).
    sheet: the coding sheet (required for CASME II and SAMM; the optional SMIC-E sheet for SMIC,
      whose onset, offset and `ApexF` are then used).
    frame_table: a 6-column onset/apex/offset table whose rows replace the annotated frames (the
      shipped SMIC table, or corrections for CASME II / SAMM).
  Returns:
    The inputs of `join_composite`.
  """
  sources, notes = {"root": str(root)}, []
  if dataset in SHEET_READERS:
    if sheet is None:
      raise InputError(f"--{dataset}-sheet: the {dataset} coding sheet is required")
    annotations = SHEET_READERS[dataset](sheet)
    clip_dirs = index_clips(dataset, root)
    sources["sheet"] = str(sheet)
  elif dataset == "smic":
    annotations, clip_dirs = scan_smic(root)
    if sheet is not None:
      annotations, sheet_notes = _merge_smic_sheet(annotations, read_smic_e_sheet(sheet))
      notes.extend(sheet_notes)
      sources["sheet"] = str(sheet)
  else:
    raise InputError(f"unknown dataset {dataset!r}")
  if frame_table is not None:
    table = read_frame_table(frame_table, dataset)
    known = {annotation.key for annotation in annotations}
    notes.extend(f"{row.source}: {subject}/{sample} is not among the annotated clips"
                 for (subject, sample), row in table.items() if (subject, sample) not in known)
    annotations = apply_frame_table(annotations, table)
    sources["frame_table"] = str(frame_table)
  return DatasetInputs(dataset, tuple(annotations), clip_dirs, sources, tuple(notes))


def _merge_smic_sheet(folder_annotations: Sequence[Annotation],
                      sheet_annotations: Sequence[Annotation]
                      ) -> tuple[list[Annotation], list[str]]:
  """Frames from the SMIC-E sheet, class from the folder; differing sheet emotions become notes.

  The folder is the class authority: the SMIC-E sheet is known to call s18_sur_03 negative.
  """
  by_key = {annotation.key: annotation for annotation in sheet_annotations}
  merged, notes = [], []
  for annotation in folder_annotations:
    row = by_key.get(annotation.key)
    if row is None:
      merged.append(annotation)
      continue
    if row.emotion.strip().lower() != annotation.emotion:
      notes.append(f"{row.source}: Emotion {row.emotion!r} but the clip folder says "
                   f"{annotation.emotion}; the folder's class is used")
    merged.append(dataclasses.replace(annotation, onset=row.onset, apex=row.apex,
                                      offset=row.offset,
                                      source=f"{annotation.source}; frames from {row.source}"))
  return merged, notes


def join_composite(listed: Sequence[ListedSample], inputs: Mapping[str, DatasetInputs]
                   ) -> tuple[list[CompositeSample], MatchReport]:
  """Matches each listed sample with its annotation and clip folder.

  Args:
    listed: the organisers' list (or the part for the chosen databases), in its order.
    inputs: what was read, by database; every database in `listed` must be present.
  Returns:
    The samples that matched with the listed label, in list order, and the full match report.
  """
  report = MatchReport({})
  for dataset in dict.fromkeys(sample.dataset for sample in listed):
    if dataset not in inputs:
      raise InputError(f"{dataset}: listed samples but no {dataset} inputs were given")
    report.datasets[dataset] = DatasetMatch(sources=dict(inputs[dataset].sources),
                                            notes=list(inputs[dataset].notes))
  by_key = {name: {a.key: a for a in data.annotations} for name, data in inputs.items()}
  composite = []
  for sample in listed:
    match = report.datasets[sample.dataset]
    match.listed += 1
    key = (sample.subject, sample.sample)
    annotation = by_key[sample.dataset].get(key)
    clip_dir = inputs[sample.dataset].clip_dirs.get(key)
    entry = {"subject": sample.subject, "sample": sample.sample}
    if annotation is None:
      match.unmatched.append({**entry, "reason": "not in the annotations"})
      continue
    if clip_dir is None:
      match.unmatched.append({**entry, "reason": "no clip folder"})
      continue
    match.matched += 1
    mapped = emotion_class(sample.dataset, annotation.emotion, annotation.source)
    if mapped != sample.label:
      match.label_disagreements.append({
          **entry, "listed": CLASS_NAMES[sample.label], "annotated": annotation.emotion,
          "mapped": "dropped" if mapped is None else CLASS_NAMES[mapped],
          "source": annotation.source})
      continue
    match.label_agreement += 1
    composite.append(CompositeSample(sample.dataset, sample.subject, sample.sample, sample.label,
                                     clip_dir, annotation))
  listed_keys = {(s.dataset, s.subject, s.sample) for s in listed}
  for dataset, match in report.datasets.items():
    for annotation in inputs[dataset].annotations:
      mapped = emotion_class(dataset, annotation.emotion, annotation.source)
      if mapped is not None and (dataset, *annotation.key) not in listed_keys:
        match.not_listed.append({"subject": annotation.subject, "sample": annotation.sample,
                                 "annotated": annotation.emotion, "source": annotation.source})
  return composite, report

"""Results of a run: pooled scores, per-dataset and per-seed tables, and the files in the workdir.

Files written: `results.json`, `predictions.csv`, `megc2019_seed<seed>.log` (the MEGC2019 log
format), `confusion_<scope>.png`, and a printed summary table.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rcn_jax import errors, metrics, plots
from rcn_jax.data import Composite
from rcn_jax.folds import ModelLayout

COMPOSITE = "composite"
TRAIN_LOSS = "train_loss.csv"
METRICS = {"uar": metrics.uar, "uf1": metrics.uf1}  # the pooled scores every scope reports


@dataclasses.dataclass(frozen=True)
class Predictions:
  """One row per (seed, tested sample): `[R]` arrays, seed-major, samples ascending within a seed.

  Attributes:
    seeds: `[R]` run seed.
    folds: `[R]` fold name.
    sample_indices: `[R]` index into the composite.
    probabilities: `[R, C]` softmax outputs.
  """
  seeds: np.ndarray
  folds: np.ndarray
  sample_indices: np.ndarray
  probabilities: np.ndarray

  @property
  def predictions(self) -> np.ndarray:
    return self.probabilities.argmax(axis=-1)


def gather_predictions(layout: ModelLayout, probabilities: np.ndarray, test_indices: np.ndarray,
                       test_valid: np.ndarray) -> Predictions:
  """Flattens per-slot test outputs `[slots, T, C]` into rows, dropping padding."""
  rows = []
  for slot in range(layout.num_models):
    fold = layout.folds[layout.fold_of_slot[slot]]
    valid = test_valid[slot]
    for index, probs in zip(test_indices[slot][valid], probabilities[slot][valid]):
      rows.append((layout.seed_of_slot[slot], fold.name, index, probs))
  rows.sort(key=lambda row: (layout.seeds.index(row[0]), row[2]))
  return Predictions(seeds=np.asarray([r[0] for r in rows]), folds=np.asarray([r[1] for r in rows]),
                     sample_indices=np.asarray([r[2] for r in rows]),
                     probabilities=np.stack([r[3] for r in rows]).astype(np.float64))


def summarize(composite: Composite, predictions: Predictions, class_names: Sequence[str], *,
              bootstrap_resamples: int, confidence: float) -> dict[str, Any]:
  """Pooled scores of every seed and scope, their mean and std, and subject-bootstrap intervals.

  Args:
    composite: the evaluated composite.
    predictions: every seed's predictions; each seed must test the same samples.
    class_names: names of the classes, by index.
    bootstrap_resamples: resamples of the subject bootstrap (0 skips it).
    confidence: coverage of the bootstrap interval.

  Returns:
    `{uar, uf1, uar_std, uf1_std, per_dataset, seeds, per_fold_accuracy, confusion, bootstrap}`;
    top-level scores are the mean over seeds of each seed's pooled score.
  """
  seeds = list(dict.fromkeys(predictions.seeds.tolist()))
  per_seed_rows = [np.flatnonzero(predictions.seeds == s) for s in seeds]
  tested = predictions.sample_indices[per_seed_rows[0]]
  for rows in per_seed_rows[1:]:
    if not np.array_equal(predictions.sample_indices[rows], tested):
      raise ValueError("every seed must test the same samples")
  labels = composite.labels[tested]
  preds = np.stack([predictions.predictions[rows] for rows in per_seed_rows])  # [seeds, n]
  datasets = composite.datasets[tested]
  groups = np.char.add(np.char.add(datasets.astype(str), "/"), composite.subjects[tested].astype(str))
  scopes = {COMPOSITE: np.ones(len(tested), bool)}
  scopes.update({d: datasets == d for d in dict.fromkeys(datasets.tolist())})
  num_classes = len(class_names)

  # scores[scope][metric][i]: seed i's pooled score on the scope.
  scores = {scope: {name: [metric(labels[mask], p[mask]) for p in preds] for name, metric in METRICS.items()}
            for scope, mask in scopes.items()}
  seed_results = []
  for i, (seed, seed_preds, rows) in enumerate(zip(seeds, preds, per_seed_rows)):
    folds = predictions.folds[rows]
    by_scope = {scope: {name: values[i] for name, values in entry.items()} for scope, entry in scores.items()}
    seed_results.append({
        "seed": seed,
        **by_scope[COMPOSITE],
        "per_dataset": {d: by_scope[d] for d in scopes if d != COMPOSITE},
        "per_fold_accuracy": {f: metrics.accuracy(labels[folds == f], seed_preds[folds == f])
                              for f in dict.fromkeys(folds.tolist())},
    })
  result: dict[str, Any] = {}
  for scope, mask in scopes.items():
    entry: dict[str, Any] = {"num_samples": int(mask.sum())}
    for name, metric in METRICS.items():
      entry[name], entry[f"{name}_std"] = metrics.mean_std(scores[scope][name])
      if bootstrap_resamples:
        entry[f"{name}_interval"] = list(metrics.bootstrap_interval(
            labels[mask], preds[:, mask], groups[mask], metric, num_resamples=bootstrap_resamples,
            confidence=confidence))
    entry["confusion"] = sum(metrics.confusion_matrix(labels[mask], p[mask], num_classes) for p in preds).tolist()
    if scope == COMPOSITE:
      result.update(entry)
    else:
      result.setdefault("per_dataset", {})[scope] = entry
  result["bootstrap"] = {"resamples": bootstrap_resamples, "confidence": confidence, "unit": "subject"}
  result["seeds"] = seed_results
  fold_names = list(seed_results[0]["per_fold_accuracy"])
  result["per_fold_accuracy"] = {f: float(np.mean([s["per_fold_accuracy"][f] for s in seed_results]))
                                 for f in fold_names}
  result["class_names"] = list(class_names)
  return result


def config_dict(config) -> dict[str, Any]:
  """A config (ConfigDict) as plain JSON values, tuples as lists: what `config.json` and results store."""
  return json.loads(json.dumps(config.to_dict(), default=list))


def write_train_losses(workdir: str, names: Sequence[str], history: np.ndarray) -> None:
  """`train_loss.csv`: an `epoch` column, then one column per model (`FOLD@SEED`) of its epoch-mean
  training loss; empty once the model stopped. `history` is `[models, max_epochs]`, NaN if not run."""
  with open(os.path.join(workdir, TRAIN_LOSS), "w") as stream:
    stream.write("epoch," + ",".join(names) + "\n")
    for epoch, row in enumerate(np.asarray(history).T):
      if np.isnan(row).all():
        break
      stream.write(f"{epoch + 1}," + ",".join("" if np.isnan(v) else f"{v:.6f}" for v in row) + "\n")


def read_train_losses(workdir: str | os.PathLike) -> tuple[list[str], np.ndarray]:
  """Model names and `[models, epochs]` losses (NaN where a model had stopped) of `train_loss.csv`."""
  path = Path(workdir) / TRAIN_LOSS
  if not path.is_file():
    raise errors.MissingInput(f"{path}: missing; is {workdir} a finished run folder?")
  with open(path, newline="") as stream:
    rows = list(csv.reader(stream))
  if not rows or len(rows[0]) < 2:
    raise errors.UserError(f"{path}: no models in the header")
  names = rows[0][1:]
  losses = np.full((len(names), len(rows) - 1), np.nan)
  for epoch, row in enumerate(rows[1:]):
    if len(row) != len(names) + 1:
      raise errors.UserError(f"{path}: row {epoch + 2} has {len(row)} fields, the header {len(names) + 1}")
    losses[:, epoch] = [float(v) if v else np.nan for v in row[1:]]
  return names, losses


def write_json(path: str, payload: Mapping[str, Any], *, strict: bool = False) -> None:
  """Writes JSON through a temporary file and a rename: a killed run never leaves half a file.

  `strict` refuses NaN and infinities (Python's JSON extensions, which other JSON readers reject).
  """
  temporary = f"{path}.tmp"
  with open(temporary, "w") as stream:
    json.dump(payload, stream, indent=1, sort_keys=False, default=_jsonable, allow_nan=not strict)
  os.replace(temporary, path)


def _jsonable(value):
  if isinstance(value, np.generic):
    return value.item()
  if isinstance(value, np.ndarray):
    return value.tolist()
  raise TypeError(f"cannot write {type(value).__name__} to JSON")


def write_predictions_csv(path: str, composite: Composite, predictions: Predictions,
                          class_names: Sequence[str]) -> None:
  """One row per (seed, sample): sample, dataset, subject, label, prediction, p_<class>, fold, seed."""
  with open(path, "w", newline="") as stream:
    writer = csv.writer(stream)
    writer.writerow(["sample", "dataset", "subject", "label", "prediction",
                     *(f"p_{name}" for name in class_names), "fold", "seed"])
    for row in range(len(predictions.seeds)):
      index = predictions.sample_indices[row]
      writer.writerow([composite.samples[index], composite.datasets[index], composite.subjects[index],
                       int(composite.labels[index]), int(predictions.predictions[row]),
                       *(f"{p:.6f}" for p in predictions.probabilities[row]),
                       predictions.folds[row], int(predictions.seeds[row])])


def write_megc_logs(workdir: str, composite: Composite, predictions: Predictions) -> list[str]:
  """The MEGC2019 log of each seed: per fold a `<db> <subject>` line, then `<sample> <gt> <pred>`."""
  paths = []
  for seed in dict.fromkeys(predictions.seeds.tolist()):
    rows = np.flatnonzero(predictions.seeds == seed)
    lines = []
    for fold in dict.fromkeys(predictions.folds[rows].tolist()):
      fold_rows = rows[predictions.folds[rows] == fold]
      first = predictions.sample_indices[fold_rows[0]]
      subject = composite.subjects[first] if "/" in fold else "all"
      lines.append(f"{composite.datasets[first]} {subject}")
      lines.extend(f"{composite.samples[predictions.sample_indices[r]]} "
                   f"{composite.labels[predictions.sample_indices[r]]} {predictions.predictions[r]}"
                   for r in fold_rows)
    path = os.path.join(workdir, f"megc2019_seed{seed}.log")
    with open(path, "w") as stream:
      stream.write("\n".join(lines) + "\n")
    paths.append(path)
  return paths


def write_confusion_pngs(workdir: str, results: Mapping[str, Any]) -> list[str]:
  """A labelled confusion-matrix PNG per scope (composite and each dataset), counts over seeds."""
  class_names = results["class_names"]
  scopes = {COMPOSITE: results, **results.get("per_dataset", {})}
  paths = []
  for scope, entry in scopes.items():
    counts = np.asarray(entry["confusion"])
    figure, axes = plots.pyplot().subplots(figsize=(4.2, 3.8), dpi=100)
    axes.imshow(counts, cmap="Blues")
    for (row, col), value in np.ndenumerate(counts):
      color = "white" if value > counts.max() / 2 else "black"
      axes.text(col, row, str(value), ha="center", va="center", color=color)
    axes.set_xticks(range(len(class_names)), class_names)
    axes.set_yticks(range(len(class_names)), class_names)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    seeds = len(results["seeds"])
    axes.set_title(f"{scope}: UAR {entry['uar']:.3f}, UF1 {entry['uf1']:.3f}"
                   + (f"\n(counts over {seeds} seeds)" if seeds > 1 else ""), fontsize=9)
    figure.tight_layout()
    paths.append(plots.save(figure, os.path.join(workdir, f"confusion_{scope}.png")))
  return paths


def selection_text(results: Mapping[str, Any]) -> str:
  """`search: <provenance>` and the search's workdir, e.g. `search: nested (runs/search), 3 architectures`."""
  entry = results.get("selection", {"search": "none"})
  text = f"search: {entry['search']}"
  if entry.get("search_workdir"):
    text += f" ({entry['search_workdir']})"
  if len(entry.get("architectures", {})) > 1:
    text += f", {len(entry['architectures'])} architectures over the folds"
  return text


def summary_table(results: Mapping[str, Any]) -> str:
  """A plain-text table: samples, UAR and UF1 (mean +- std over seeds, bootstrap interval) per scope."""
  scopes = {COMPOSITE: results, **results.get("per_dataset", {})}
  seeds = len(results["seeds"])
  header = f"{'scope':<10} {'samples':>7}  {'UAR':>15} {'UF1':>15}  subject-bootstrap intervals"
  protocol_name = results.get("training", {}).get("protocol", "loso").upper()
  lines = [f"pooled {protocol_name} scores, mean +- std over {seeds} seed(s); architecture selection: "
           f"{selection_text(results)}", header, "-" * len(header)]
  for scope, entry in scopes.items():
    intervals = ""
    if "uar_interval" in entry:
      intervals = "UAR [{:.3f}, {:.3f}]  UF1 [{:.3f}, {:.3f}]".format(*entry["uar_interval"], *entry["uf1_interval"])
    lines.append(f"{scope:<10} {entry['num_samples']:>7}  {entry['uar']:.4f} +- {entry['uar_std']:.4f}"
                 f" {entry['uf1']:.4f} +- {entry['uf1_std']:.4f}  {intervals}")
  return "\n".join(lines)

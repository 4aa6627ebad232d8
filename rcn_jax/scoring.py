"""Results of a run: per-model test rows, pooled scores per scope and seed, and the summary table.

What is computed here is written to the run folder by `rcn_jax.run_folder`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rcn_jax import metrics
from rcn_jax.data import Composite
from rcn_jax.folds import ModelLayout

COMPOSITE = "composite"  # the scope of every tested sample; the datasets are the other scopes
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


def merge_predictions(parts: Sequence[Predictions], seeds: Sequence[int]) -> Predictions:
  """The rows of every program group of a run in `Predictions`' order: seed-major, samples ascending."""
  if len(parts) == 1:
    return parts[0]
  merged = {name: np.concatenate([getattr(p, name) for p in parts])
            for name in ("seeds", "folds", "sample_indices", "probabilities")}
  order = np.lexsort((merged["sample_indices"], [list(seeds).index(s) for s in merged["seeds"]]))
  return Predictions(**{name: values[order] for name, values in merged.items()})


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
  masks = {COMPOSITE: np.ones(len(tested), bool)}
  masks.update({d: datasets == d for d in dict.fromkeys(datasets.tolist())})
  num_classes = len(class_names)

  # scores[scope][metric][i]: seed i's pooled score on the scope.
  scores = {scope: {name: [metric(labels[mask], p[mask]) for p in preds] for name, metric in METRICS.items()}
            for scope, mask in masks.items()}
  seed_results = []
  for i, (seed, seed_preds, rows) in enumerate(zip(seeds, preds, per_seed_rows)):
    folds = predictions.folds[rows]
    by_scope = {scope: {name: values[i] for name, values in entry.items()} for scope, entry in scores.items()}
    seed_results.append({
        "seed": seed,
        **by_scope[COMPOSITE],
        "per_dataset": {d: by_scope[d] for d in masks if d != COMPOSITE},
        "per_fold_accuracy": {f: metrics.accuracy(labels[folds == f], seed_preds[folds == f])
                              for f in dict.fromkeys(folds.tolist())},
    })
  result: dict[str, Any] = {}
  for scope, mask in masks.items():
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


def scopes(results: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
  """The entry of every scope of `summarize`'s results: `composite` first, then each dataset."""
  return {COMPOSITE: results, **results.get("per_dataset", {})}


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
  seeds = len(results["seeds"])
  header = f"{'scope':<10} {'samples':>7}  {'UAR':>15} {'UF1':>15}  subject-bootstrap intervals"
  protocol_name = results.get("training", {}).get("protocol", "loso").upper()
  lines = [f"pooled {protocol_name} scores, mean +- std over {seeds} seed(s); architecture selection: "
           f"{selection_text(results)}", header, "-" * len(header)]
  for scope, entry in scopes(results).items():
    intervals = ""
    if "uar_interval" in entry:
      intervals = "UAR [{:.3f}, {:.3f}]  UF1 [{:.3f}, {:.3f}]".format(*entry["uar_interval"], *entry["uf1_interval"])
    lines.append(f"{scope:<10} {entry['num_samples']:>7}  {entry['uar']:.4f} +- {entry['uar_std']:.4f}"
                 f" {entry['uf1']:.4f} +- {entry['uf1_std']:.4f}  {intervals}")
  return "\n".join(lines)

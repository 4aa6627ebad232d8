"""Pooled MER metrics (UAR, UF1), confusion matrices and bootstrap intervals, on the host.

Predictions of all folds are concatenated before any metric is computed (MEGC2019 protocol);
averaging per-fold scores gives different, incomparable numbers and is never done here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def confusion_matrix(labels: Sequence[int], preds: Sequence[int], num_classes: int) -> np.ndarray:
  """`[C, C]` counts: rows are ground truth, columns predictions."""
  labels = np.asarray(labels, np.int64)
  preds = np.asarray(preds, np.int64)
  if labels.shape != preds.shape:
    raise ValueError(f"labels {labels.shape} and preds {preds.shape} differ in shape")
  for name, values in (("labels", labels), ("preds", preds)):
    if values.size and (values.min() < 0 or values.max() >= num_classes):
      raise ValueError(f"{name} must lie in [0, {num_classes}), got {sorted(set(values.tolist()))}")
  counts = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(counts, (labels, preds), 1)
  return counts


def _present_classes(labels: np.ndarray, preds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  labels = np.asarray(labels, np.int64)
  preds = np.asarray(preds, np.int64)
  if labels.size == 0:
    raise ValueError("no predictions to score")
  num_classes = int(max(labels.max(), preds.max())) + 1
  return confusion_matrix(labels, preds, num_classes), np.unique(labels)


def uar(labels: Sequence[int], preds: Sequence[int]) -> float:
  """Unweighted average recall: mean over the classes present in `labels` of TP_c / N_c.

  Args:
    labels: `[N]` ground-truth class indices (pooled over folds).
    preds: `[N]` predicted class indices.

  Returns:
    UAR in [0, 1].
  """
  counts, present = _present_classes(labels, preds)
  recall = np.diag(counts)[present] / counts[present].sum(axis=1)
  return float(recall.mean())


def uf1(labels: Sequence[int], preds: Sequence[int]) -> float:
  """Unweighted F1: mean over the classes present in `labels` of 2 TP / (2 TP + FP + FN).

  Args:
    labels: `[N]` ground-truth class indices (pooled over folds).
    preds: `[N]` predicted class indices.

  Returns:
    UF1 in [0, 1].
  """
  counts, present = _present_classes(labels, preds)
  true_positive = np.diag(counts)[present]
  false_positive = counts[:, present].sum(axis=0) - true_positive
  false_negative = counts[present].sum(axis=1) - true_positive
  f1 = 2 * true_positive / (2 * true_positive + false_positive + false_negative)
  return float(f1.mean())


def accuracy(labels: Sequence[int], preds: Sequence[int]) -> float:
  """Fraction of correct predictions."""
  labels = np.asarray(labels)
  if labels.size == 0:
    raise ValueError("no predictions to score")
  return float(np.mean(labels == np.asarray(preds)))


def bootstrap_interval(labels: Sequence[int], preds: np.ndarray, groups: Sequence[str],
                       metric: Callable[[np.ndarray, np.ndarray], float], *, num_resamples: int = 1000,
                       confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
  """Percentile bootstrap interval of a pooled metric, resampling whole subjects with replacement.

  Subjects, not samples, are the independent units of LOSO: resampling samples would ignore that
  one subject's clips are correlated and give intervals that are too narrow. With predictions of
  several seeds, each resample scores every seed on the same subjects and averages the scores,
  giving the interval of the seed-mean metric.

  Args:
    labels: `[N]` ground truth.
    preds: `[N]` predictions, or `[seeds, N]`.
    groups: `[N]` subject (fold) name of each sample.
    metric: pooled metric, e.g. `uf1`.
    num_resamples: bootstrap resamples.
    confidence: two-sided coverage.
    seed: numpy RNG seed (the interval is deterministic given it).

  Returns:
    (low, high).
  """
  labels = np.asarray(labels)
  preds = np.atleast_2d(np.asarray(preds))
  groups = np.asarray(groups, dtype=str)
  if preds.shape[1] != labels.shape[0] or groups.shape != labels.shape:
    raise ValueError(f"labels {labels.shape}, preds {preds.shape} and groups {groups.shape} disagree")
  names, group_of_sample = np.unique(groups, return_inverse=True)
  members = [np.flatnonzero(group_of_sample == g) for g in range(len(names))]
  rng = np.random.default_rng(seed)
  values = np.empty(num_resamples)
  for r in range(num_resamples):
    picked = np.concatenate([members[g] for g in rng.integers(0, len(names), len(names))])
    values[r] = np.mean([metric(labels[picked], seed_preds[picked]) for seed_preds in preds])
  tail = (1.0 - confidence) / 2 * 100
  low, high = np.percentile(values, [tail, 100 - tail])
  return float(low), float(high)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
  """Mean and population standard deviation (0 for a single value)."""
  values = np.asarray(values, np.float64)
  return float(values.mean()), float(values.std())

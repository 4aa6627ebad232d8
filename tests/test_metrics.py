"""Pooled UAR/UF1 against scikit-learn (the oracle), confusion matrices, bootstrap."""

import numpy as np
import pytest
from sklearn import metrics as sk

from rcn_jax import metrics


@pytest.mark.parametrize("seed", range(6))
def test_uar_uf1_equal_sklearn_macro_on_pooled_predictions(seed):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 3, 442)
  preds = np.where(rng.random(442) < 0.6, labels, rng.integers(0, 3, 442))
  assert metrics.uar(labels, preds) == pytest.approx(sk.recall_score(labels, preds, average="macro"), abs=1e-12)
  assert metrics.uf1(labels, preds) == pytest.approx(sk.f1_score(labels, preds, average="macro"), abs=1e-12)
  assert metrics.accuracy(labels, preds) == pytest.approx(sk.accuracy_score(labels, preds))
  np.testing.assert_array_equal(metrics.confusion_matrix(labels, preds, 3), sk.confusion_matrix(labels, preds))


def test_scores_average_over_classes_present_in_the_ground_truth():
  # Class 2 is predicted but absent from the ground truth (a single dataset's subset can be so):
  # the protocol averages over classes in the labels, i.e. sklearn with labels=present classes.
  labels = np.array([0, 0, 0, 1, 1, 0])
  preds = np.array([0, 2, 0, 1, 0, 0])
  present = np.unique(labels)
  assert metrics.uar(labels, preds) == pytest.approx(sk.recall_score(labels, preds, labels=present, average="macro"))
  assert metrics.uf1(labels, preds) == pytest.approx(sk.f1_score(labels, preds, labels=present, average="macro"))
  # By hand: recall 3/4 and 1/2; F1 2*3/(6+1+1) and 2*1/(2+0+1).
  assert metrics.uar(labels, preds) == pytest.approx((3 / 4 + 1 / 2) / 2)
  assert metrics.uf1(labels, preds) == pytest.approx((6 / 8 + 2 / 3) / 2)


def test_pooled_scores_differ_from_averaged_per_fold_scores():
  labels = np.array([0, 1, 2, 0, 0, 0])
  preds = np.array([0, 1, 1, 0, 0, 1])
  fold_of = np.array([0, 0, 0, 1, 1, 1])
  per_fold = np.mean([metrics.uf1(labels[fold_of == f], preds[fold_of == f]) for f in (0, 1)])
  assert metrics.uf1(labels, preds) != pytest.approx(per_fold)


def test_bad_predictions_are_rejected():
  with pytest.raises(ValueError, match="differ in shape"):
    metrics.confusion_matrix([0, 1], [0], 3)
  with pytest.raises(ValueError, match=r"preds must lie in \[0, 3\)"):
    metrics.confusion_matrix([0, 1], [0, 3], 3)
  with pytest.raises(ValueError, match="no predictions"):
    metrics.uar([], [])


def test_subject_bootstrap_is_deterministic_and_brackets_the_estimate():
  rng = np.random.default_rng(0)
  groups = np.repeat([f"s{i}" for i in range(30)], 6)
  labels = rng.integers(0, 3, groups.size)
  preds = np.where(rng.random(groups.size) < 0.7, labels, rng.integers(0, 3, groups.size))
  low, high = metrics.bootstrap_interval(labels, preds, groups, metrics.uf1, num_resamples=300)
  assert (low, high) == metrics.bootstrap_interval(labels, preds, groups, metrics.uf1, num_resamples=300)
  assert low < metrics.uf1(labels, preds) < high
  assert 0.02 < high - low < 0.4
  # Perfect predictions give a zero-width interval at 1.
  assert metrics.bootstrap_interval(labels, labels, groups, metrics.uar, num_resamples=50) == (1.0, 1.0)
  # Two seeds: the interval of the seed mean.
  two = metrics.bootstrap_interval(labels, np.stack([preds, labels]), groups, metrics.uar, num_resamples=200)
  assert two[0] > low

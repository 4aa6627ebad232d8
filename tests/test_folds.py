"""Folds and model layout: every subject tested once and never trained on."""

import collections

import numpy as np
import pytest

from rcn_jax import folds
from rcn_jax.search import splits


def test_loso_on_the_official_list_has_68_folds_each_subject_tested_once(official):
  subjects, datasets = official
  loso = folds.make_folds(subjects, datasets)
  assert len(loso) == 68
  assert collections.Counter(f.dataset for f in loso) == {"casme2": 24, "smic": 16, "samm": 28}
  tested = np.concatenate([f.test_indices for f in loso])
  assert sorted(tested.tolist()) == list(range(442))
  for fold in loso:
    assert set(subjects[fold.test_indices]) == {fold.subject}
    assert set(datasets[fold.test_indices]) == {fold.dataset}
    assert not set(fold.train_indices.tolist()) & set(fold.test_indices.tolist())
    # Trains on every other sample, of all three datasets.
    assert len(fold.train_indices) + len(fold.test_indices) == 442
    same_subject = (subjects == fold.subject) & (datasets == fold.dataset)
    assert not same_subject[fold.train_indices].any()
  assert np.mean([len(f.train_indices) for f in loso]) == pytest.approx(442 - 442 / 68)


def test_subject_names_of_different_datasets_make_different_folds():
  loso = folds.make_folds(["s01", "s01", "006"], ["smic", "casme2", "samm"])
  assert [f.name for f in loso] == ["smic/s01", "casme2/s01", "samm/006"]
  assert len({f.stable_id for f in loso}) == 3


def test_partial_composite_and_leave_one_dataset_out(official):
  subjects, datasets = official
  keep = datasets != "smic"
  partial = folds.make_folds(subjects[keep], datasets[keep])
  assert len(partial) == 24 + 28
  lodo = folds.make_folds(subjects, datasets, "lodo")
  assert [f.name for f in lodo] == ["casme2", "smic", "samm"]
  for fold in lodo:
    assert set(datasets[fold.test_indices]) == {fold.name}
    assert fold.name not in set(datasets[fold.train_indices])
  with pytest.raises(ValueError, match="two datasets"):
    folds.make_folds(subjects[datasets == "smic"], datasets[datasets == "smic"], "lodo")
  with pytest.raises(ValueError, match="unknown protocol 'kfold'"):
    folds.make_folds(subjects, datasets, "kfold")


def test_layout_pads_slots_that_train_and_test_on_nothing():
  loso = folds.make_folds(["a", "a", "b", "c", "c", "c"], ["smic"] * 6)
  layout = folds.layout_models(loso, seeds=(7, 9), multiple=4)
  assert (layout.num_models, layout.num_slots) == (6, 8)
  assert layout.fold_of_slot.tolist() == [0, 1, 2, 0, 1, 2, -1, -1]
  assert layout.seed_of_slot.tolist() == [7, 7, 7, 9, 9, 9, -1, -1]
  mask = layout.train_mask(6)
  assert mask[0].tolist() == [False, False, True, True, True, True]
  assert not mask[6:].any()
  indices, valid = layout.test_table()
  assert indices.shape == (8, 3)
  assert valid.sum(axis=1).tolist() == [2, 1, 3, 2, 1, 3, 0, 0]
  folds.check_disjoint(mask, indices, valid)
  mask[2, 4] = True
  with pytest.raises(AssertionError, match=r"slot 2 trains on its test samples \[4\]"):
    folds.check_disjoint(mask, indices, valid)


def test_select_folds_and_layout_errors():
  loso = folds.make_folds(["a", "b", "c"], ["smic"] * 3)
  assert [f.name for f in folds.select_folds(loso, 2)] == ["smic/a", "smic/b"]
  assert len(folds.select_folds(loso, 0)) == 3
  with pytest.raises(ValueError, match="distinct"):
    folds.layout_models(loso, (1, 1), 1)


def test_stable_ids_and_subject_groups_are_shared_by_folds_and_search_tasks():
  assert folds.stable_id("casme2/sub01") == folds.make_folds(["sub01"], ["casme2"])[0].stable_id
  assert folds.stable_id("smic/s01@0") == splits.SearchTask("smic/s01@0", None, 0, *[np.zeros(0)] * 3).stable_id
  assert folds.stable_id("a") != folds.stable_id("b")
  assert folds.subject_groups(["s01", "s01"], ["smic", "casme2"]).tolist() == ["smic/s01", "casme2/s01"]

"""`rcn_jax.search.splits`: subject-disjoint search tasks that never hold a test subject."""

import numpy as np
import pytest

from fixtures.planted_search import fake_subjects
from rcn_jax import folds
from rcn_jax.search import splits


def test_nested_tasks_never_hold_their_test_subject():
  subjects, datasets = fake_subjects()
  groups = folds.subject_groups(subjects, datasets)
  tasks = splits.make_tasks(subjects, datasets, mode="nested", protocol="loso", max_folds=0,
                                   seeds=(0, 1), val_fraction=0.3)
  assert len(tasks) == 16
  for task in tasks:
    test_subjects = set(groups[task.test_indices])
    assert test_subjects == {task.fold}
    assert not test_subjects & set(groups[task.train_indices]) and not test_subjects & set(groups[task.val_indices])
    assert not set(groups[task.train_indices]) & set(groups[task.val_indices])
    assert sorted(np.concatenate([task.train_indices, task.val_indices, task.test_indices])) == list(range(24))
    # Stratified: every dataset with two or more training subjects gives one to validation.
    assert {g.partition("/")[0] for g in groups[task.val_indices]} == {"casme2", "smic"}
  (once,) = splits.make_tasks(subjects, datasets, mode="once", protocol="loso", max_folds=0, seeds=(0,),
                                     val_fraction=0.3)
  assert once.test_indices.size == 0 and once.fold is None
  assert len(once.train_indices) + len(once.val_indices) == 24
  leaking = splits.SearchTask("bad", "casme2/sub01", 0, np.arange(3, 12), np.arange(12, 24), np.arange(0, 4))
  with pytest.raises(AssertionError, match=r"test samples \[3\] in the training split"):
    splits.check_task(leaking, groups)
  with pytest.raises(ValueError, match="search.mode='twice'"):
    splits.make_tasks(subjects, datasets, mode="twice", protocol="loso", max_folds=0, seeds=(0,),
                             val_fraction=0.3)

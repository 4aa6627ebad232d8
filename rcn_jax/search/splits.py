"""Search data: subject-disjoint training/validation splits that never contain a test subject.

A search task trains the supernet's weights on `train_indices` and its architecture weights on
`val_indices`; `test_indices` are the samples the searched architecture will later be tested on
(a LOSO fold's test subject) and must reach neither. Two modes:
- `nested`: one task per LOSO fold (and seed); its training subjects are split, its test subject
  is excluded. Each fold's architecture is chosen without its test subject.
- `once`: one task (per seed) over every subject of the composite, split into training and
  validation subjects. A later LOSO evaluation of the result then tests on subjects the search
  has seen, which its report must state.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from rcn_jax import errors, folds as folds_lib

MODES = ("once", "nested")


@dataclasses.dataclass(frozen=True)
class SearchTask:
  """One search run.

  Attributes:
    name: `once` or the fold name, with `@seed`.
    fold: the LOSO fold name (None in `once` mode).
    seed: the run seed.
    train_indices: `[n_train]` composite indices for weight steps, ascending.
    val_indices: `[n_val]` composite indices for architecture steps, ascending.
    test_indices: `[n_test]` composite indices no step may touch (empty in `once` mode).
  """
  name: str
  fold: str | None
  seed: int
  train_indices: np.ndarray
  val_indices: np.ndarray
  test_indices: np.ndarray

  @property
  def stable_id(self) -> int:
    """A number derived from the task's name only, for its RNG streams."""
    return folds_lib.stable_id(self.name)


def split_subjects(indices: np.ndarray, groups: np.ndarray, val_fraction: float,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """Splits samples by subject into training and validation, stratified by dataset.

  Each dataset gives `round(val_fraction * its subjects)` subjects (at least one when it has two
  or more) to validation, drawn at random.

  Args:
    indices: `[n]` composite indices to split.
    groups: `[N]` `dataset/subject` key of every composite sample (`folds.subject_groups`).
    val_fraction: share of subjects for validation, in (0, 1).
    rng: the split's random generator.

  Returns:
    `(train_indices, val_indices)`, ascending, with no subject in both.
  """
  if not 0 < val_fraction < 1:
    raise errors.UserError(f"search.val_fraction={val_fraction} must lie in (0, 1)")
  subjects = sorted(set(groups[indices].tolist()))
  by_dataset: dict[str, list[str]] = {}
  for subject in subjects:
    by_dataset.setdefault(subject.partition("/")[0], []).append(subject)
  val_subjects = []
  for members in by_dataset.values():
    if len(members) < 2:
      continue
    count = min(len(members) - 1, max(1, round(val_fraction * len(members))))
    val_subjects += rng.choice(members, size=count, replace=False).tolist()
  if not val_subjects:
    raise errors.UserError(f"cannot split {len(subjects)} subject(s) {subjects[:4]} into training and "
                     "validation subjects: a dataset with at least two subjects is needed")
  in_val = np.isin(groups[indices], val_subjects)
  return np.sort(indices[~in_val]), np.sort(indices[in_val])


def make_tasks(subjects: Sequence[str], datasets: Sequence[str], *, mode: str, protocol: str,
               max_folds: int, seeds: Sequence[int], val_fraction: float) -> list[SearchTask]:
  """The search tasks of a config, each checked with `check_task`.

  Args:
    subjects: `[N]` subject key of every sample.
    datasets: `[N]` dataset of every sample.
    mode: `once` or `nested` (see the module docstring).
    protocol: the evaluation protocol whose folds `nested` follows (`loso`, `lodo`).
    max_folds: search only the first n folds (0: all).
    seeds: one task per seed (and fold).
    val_fraction: share of the training subjects held out for the architecture steps.

  Returns:
    The tasks.
  """
  if mode not in MODES:
    raise errors.UserError(f"search.mode={mode!r}: expected one of {MODES}")
  groups = folds_lib.subject_groups(subjects, datasets)
  if mode == "once":
    pools = [(None, np.arange(len(groups)), np.zeros(0, np.int64))]
  else:
    run_folds = folds_lib.select_folds(folds_lib.make_folds(subjects, datasets, protocol), max_folds)
    pools = [(fold.name, fold.train_indices, fold.test_indices) for fold in run_folds]
  tasks = []
  for seed in seeds:
    for fold, pool, test in pools:
      name = f"{fold or 'once'}@{seed}"
      rng = np.random.default_rng([seed, folds_lib.stable_id(name)])
      train, val = split_subjects(pool, groups, val_fraction, rng)
      task = SearchTask(name, fold, int(seed), train, val, np.asarray(test))
      check_task(task, groups)
      tasks.append(task)
  return tasks


def check_task(task: SearchTask, groups: np.ndarray) -> None:
  """Raises an AssertionError if search data overlaps the test samples or the two splits share a subject."""
  for role, indices in (("training", task.train_indices), ("validation", task.val_indices)):
    leaked = np.intersect1d(indices, task.test_indices)
    if leaked.size:
      raise AssertionError(f"task {task.name}: test samples {leaked[:5].tolist()} in the {role} split")
    test_subjects = set(groups[task.test_indices].tolist())
    shared = sorted(test_subjects & set(groups[indices].tolist()))
    if shared:
      raise AssertionError(f"task {task.name}: test subject(s) {shared} in the {role} split")
  shared = sorted(set(groups[task.train_indices].tolist()) & set(groups[task.val_indices].tolist()))
  if shared:
    raise AssertionError(f"task {task.name}: subject(s) {shared} in both training and validation")
  if not task.train_indices.size or not task.val_indices.size:
    raise AssertionError(f"task {task.name}: empty training or validation split")

"""Evaluation folds over a composite and their layout as one stacked batch of models.

A fold names the samples it tests on; it trains on every other sample of the composite. The
trainer runs every (fold, seed) pair as one model of a stacked batch whose leading axis is padded
to a multiple of the device count; padded slots train on nothing and test on nothing.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Sequence

import numpy as np

from rcn_jax import errors

PROTOCOLS = ("loso", "lodo")


def stable_id(name: str) -> int:
  """A number derived from `name` only (a fold's, a search task's), for its RNG streams."""
  return zlib.crc32(name.encode())


def subject_groups(subjects: Sequence[str], datasets: Sequence[str]) -> np.ndarray:
  """`[N]` `dataset/subject` keys: subject keys repeat across datasets (`s01`, `sub01`, `006`)."""
  return np.asarray([f"{d}/{s}" for d, s in zip(datasets, subjects)], dtype=str)


@dataclasses.dataclass(frozen=True)
class Fold:
  """One train/test split.

  Attributes:
    name: `dataset/subject` (LOSO) or `dataset` (leave-one-dataset-out).
    dataset: the dataset of the test samples.
    subject: the held-out subject (LOSO), None for leave-one-dataset-out.
    train_indices: `[n_train]` composite indices the fold trains on, ascending.
    test_indices: `[n_test]` composite indices the fold tests on, ascending.
  """
  name: str
  dataset: str
  subject: str | None
  train_indices: np.ndarray
  test_indices: np.ndarray

  @property
  def stable_id(self) -> int:
    """A number derived from the fold's name only, so its RNG streams do not depend on the others."""
    return stable_id(self.name)


def make_folds(subjects: Sequence[str], datasets: Sequence[str], protocol: str = "loso") -> list[Fold]:
  """Builds the folds of a composite, in order of first appearance.

  Args:
    subjects: `[N]` subject key of each sample (`sub01`, `s01`, `006`).
    datasets: `[N]` dataset of each sample (`casme2`, `smic`, `samm`).
    protocol: `loso` (one fold per (dataset, subject) pair) or `lodo` (one fold per dataset,
      trained on the other datasets).

  Returns:
    The folds; every sample is tested in exactly one fold and never trained on in that fold.
  """
  subjects = np.asarray(subjects, dtype=str)
  datasets = np.asarray(datasets, dtype=str)
  if subjects.shape != datasets.shape or subjects.ndim != 1:
    raise ValueError(f"subjects {subjects.shape} and datasets {datasets.shape} must be equal 1-D shapes")
  if protocol == "loso":
    groups = subject_groups(subjects, datasets)
  elif protocol == "lodo":
    groups = datasets
    if len(set(groups.tolist())) < 2:
      raise errors.UserError("protocol 'lodo' needs at least two datasets in the composite")
  else:
    raise errors.UserError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")
  folds = []
  for name in dict.fromkeys(groups.tolist()):
    test = np.flatnonzero(groups == name)
    dataset, _, subject = name.partition("/")
    folds.append(Fold(name=name, dataset=dataset, subject=subject or None,
                      train_indices=np.flatnonzero(groups != name), test_indices=test))
  return folds


def select_folds(folds: Sequence[Fold], limit: int | None) -> list[Fold]:
  """The first `limit` folds (all when None or 0): smoke runs test only a few subjects."""
  if not limit:
    return list(folds)
  if limit < 0:
    raise errors.UserError(f"protocol.max_folds must be >= 0, got {limit}")
  return list(folds[:limit])


@dataclasses.dataclass(frozen=True)
class ModelLayout:
  """Which (fold, seed) pair each slot of the stacked model axis trains.

  Slots are seed-major (all folds of the first seed, then the next seed); slots past
  `num_models` are padding with `fold_of_slot == seed_of_slot == -1`.
  """
  folds: tuple[Fold, ...]
  seeds: tuple[int, ...]
  num_slots: int
  fold_of_slot: np.ndarray
  seed_of_slot: np.ndarray

  @property
  def num_models(self) -> int:
    return len(self.folds) * len(self.seeds)

  def train_mask(self, num_samples: int) -> np.ndarray:
    """`[slots, N]` bool: which samples each slot may train on (nothing for padding)."""
    mask = np.zeros((self.num_slots, num_samples), bool)
    for slot in range(self.num_models):
      mask[slot, self.folds[self.fold_of_slot[slot]].train_indices] = True
    return mask

  def test_table(self) -> tuple[np.ndarray, np.ndarray]:
    """`[slots, T]` test indices per slot (padded with a test index of the slot) and validity."""
    width = max(len(f.test_indices) for f in self.folds)
    indices = np.zeros((self.num_slots, width), np.int32)
    valid = np.zeros((self.num_slots, width), bool)
    for slot in range(self.num_models):
      test = self.folds[self.fold_of_slot[slot]].test_indices
      indices[slot, :len(test)] = test
      indices[slot, len(test):] = test[0]
      valid[slot, :len(test)] = True
    return indices, valid


def layout_models(folds: Sequence[Fold], seeds: Sequence[int], multiple: int) -> ModelLayout:
  """Lays out every (fold, seed) pair on a model axis padded to a multiple of `multiple`.

  Args:
    folds: the folds to train.
    seeds: the run seeds; each fold is trained once per seed.
    multiple: the slot count is rounded up to a multiple of this (devices x models per call).

  Returns:
    The layout.
  """
  if not folds or not seeds:
    raise errors.UserError("a run needs at least one fold and one seed")
  if len(set(seeds)) != len(seeds):
    raise errors.UserError(f"seeds must be distinct, got {list(seeds)}")
  num_models = len(folds) * len(seeds)
  num_slots = -(-num_models // multiple) * multiple
  fold_of_slot = np.full(num_slots, -1, np.int32)
  seed_of_slot = np.full(num_slots, -1, np.int64)
  fold_of_slot[:num_models] = np.tile(np.arange(len(folds)), len(seeds))
  seed_of_slot[:num_models] = np.repeat(np.asarray(seeds), len(folds))
  return ModelLayout(tuple(folds), tuple(int(s) for s in seeds), num_slots, fold_of_slot, seed_of_slot)


def check_disjoint(train_mask: np.ndarray, test_indices: np.ndarray, test_valid: np.ndarray) -> None:
  """Raises if any slot could train on one of its own test samples."""
  for slot in range(train_mask.shape[0]):
    leaked = np.flatnonzero(train_mask[slot, test_indices[slot][test_valid[slot]]])
    if leaked.size:
      raise AssertionError(f"slot {slot} trains on its test samples {test_indices[slot][leaked].tolist()}")

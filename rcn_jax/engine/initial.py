"""Imported initial weights of a run (`config.init`): one set for every fold, or one per held-out subject.

- `init.weights=FILE`: every fold starts from the same state dict;
- `init.per_fold=DIR`: each fold starts from `DIR/<subject>.npz` (or `.pth` with torch installed),
  the weights published for the fold that held `<subject>` out (leave-one-dataset-out folds: the
  dataset's name).
A file holds an official PyTorch state dict (keys as the official classes name them, or under
`sd/`) and goes through the model's importer (`rcn_jax.models.from_torch_state_dict`). With
`train.num_epochs=0` a run evaluates the imported weights unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np

from rcn_jax import errors, folds, models, sample_list

EXTENSIONS = (".npz", ".pth")


def fold_key(fold: folds.Fold) -> str:
  """The name of a fold's weight file without extension: its held-out subject, else its dataset."""
  return fold.subject if fold.subject is not None else fold.dataset


def check_settings(init: Mapping[str, Any]) -> None:
  """Raises a UserError naming the `init.*` key of a setting no run can use; reads no weights."""
  weights, per_fold = init["weights"], init["per_fold"]
  if weights and per_fold:
    raise errors.UserError("init.weights and init.per_fold both set: give one set for every fold or one per fold")
  if weights and not (os.path.isfile(weights) and weights.endswith(EXTENSIONS)):
    raise errors.UserError(f"init.weights={weights}: expected an existing {' or '.join(EXTENSIONS)} state dict")
  if per_fold and not os.path.isdir(per_fold):
    raise errors.UserError(f"init.per_fold={per_fold}: not a folder")


def weight_files(init: Mapping[str, Any], run_folds: Sequence[folds.Fold]) -> dict[str, str] | None:
  """`{fold name: file}` of the folds' initial weights, or None when the run initialises from its seeds.

  A fold without its file in `init.per_fold` is an error naming every missing one.
  """
  check_settings(init)
  if init["weights"]:
    return {fold.name: init["weights"] for fold in run_folds}
  if not init["per_fold"]:
    return None
  files, missing = {}, []
  for fold in run_folds:
    found = [os.path.join(init["per_fold"], fold_key(fold) + ext) for ext in EXTENSIONS
             if os.path.isfile(os.path.join(init["per_fold"], fold_key(fold) + ext))]
    if found:
      files[fold.name] = found[0]
    else:
      missing.append(fold_key(fold) + ".npz")
  if missing:
    raise errors.UserError(f"init.per_fold={init['per_fold']}: no weights for {len(missing)} fold(s): "
                           f"{missing[:8]}{' ...' if len(missing) > 8 else ''}")
  return files


def read_variables(path: str, model: ml_collections.ConfigDict, expected: Any) -> dict[str, Any]:
  """`{params, batch_stats}` (float32) of the state dict in `path`, imported for `model` (the config section).

  Args:
    path: a `.npz` or `.pth` state dict.
    model: the run's `model` section (preset, features, pool size, quirks).
    expected: the abstract `{params, batch_stats}` of the run's program; the imported tree must match it.
  """
  try:
    state_dict = models.read_state_dict(path)
    _, variables = models.from_torch_state_dict(
        model.preset, state_dict, features=model.features, pool_size=model.pool_size,
        num_classes=len(sample_list.CLASS_NAMES), reference_quirks=model.reference_quirks)
  except (ImportError, OSError, ValueError, KeyError) as error:
    raise errors.UserError(f"{path}: {errors.one_line(error)}") from error
  variables = {"params": variables.get("params", {}), "batch_stats": variables.get("batch_stats", {})}
  variables = jax.tree.map(lambda leaf: np.asarray(leaf, np.float32), variables)
  got = jax.tree.map(np.shape, variables)
  want = jax.tree.map(lambda leaf: tuple(leaf.shape), expected)
  if jax.tree.structure(got) != jax.tree.structure(want) or got != want:
    raise errors.UserError(f"{path}: the imported weights do not fit model.preset={model.preset!r} "
                           f"(model.features={model.features}, model.pool_size={model.pool_size})")
  return variables


def start_variables(config: ml_collections.ConfigDict, layout: folds.ModelLayout,
                    expected: Any) -> list[dict[str, Any] | None] | None:
  """Per slot, the imported `{params, batch_stats}` it starts from, or None for the whole run (seed init).

  Every seed of a fold starts from the fold's file; padding slots initialise from their keys.
  """
  files = weight_files(config.init, layout.folds)
  if files is None:
    return None
  loaded = {path: read_variables(path, config.model, expected) for path in dict.fromkeys(files.values())}
  return [loaded[files[layout.folds[layout.fold_of_slot[slot]].name]] if slot < layout.num_models else None
          for slot in range(layout.num_slots)]

"""How a run's architecture was chosen (`config.selection`), and LOSO runs with one architecture per fold.

A run config may carry a `selection` section, written by the architecture search into the configs
it exports (`rcn_jax.search.export`):
- `search`: the provenance, one of `PROVENANCES`; absent means `none` (a preset chosen by hand).
- `search_workdir`: the search's output folder.
- `fold_architectures`: `((fold, architecture), ...)`, for a nested search's `per_fold.py`: each
  LOSO fold trains the architecture its own search (without its test subject) chose.

Folds whose architectures differ in shape cannot share one stacked program, so a per-fold run
groups the folds by architecture and trains each group as its own program (`group_runs`); the
pooled scores are computed once over every group's predictions.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import ml_collections

from rcn_jax import errors

NONE = "none"
ONCE = "once (test subjects seen)"
NESTED = "nested"
# A nested search's top-k rank on the mean over folds: every test subject weighed in.
NESTED_MEAN = "nested mean over folds (test subjects seen)"
PROVENANCES = (NONE, ONCE, NESTED, NESTED_MEAN)


def provenance(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """`{search, search_workdir}` of a run config, for `results.json` and the report."""
  selection = config.get("selection")
  if selection is None:
    return {"search": NONE, "search_workdir": None}
  if selection.search not in PROVENANCES:
    raise errors.UserError(f"selection.search={selection.search!r}: expected one of {PROVENANCES}")
  return {"search": selection.search, "search_workdir": selection.get("search_workdir") or None}


def fold_architectures(config: ml_collections.ConfigDict) -> dict[str, str]:
  """`{fold: architecture}` of a per-fold run; empty for a run of one architecture."""
  selection = config.get("selection")
  pairs = selection.get("fold_architectures", ()) if selection is not None else ()
  return {fold: architecture for fold, architecture in pairs}


def group_runs(config: ml_collections.ConfigDict,
               fold_names: Sequence[str]) -> list[tuple[ml_collections.ConfigDict, tuple[str, ...] | None]]:
  """`(config, folds)` per program to train: the config itself with all folds (None), or per architecture.

  Args:
    config: the run config.
    fold_names: the folds the run's protocol tests.

  Returns:
    One entry per distinct architecture, its folds in protocol order; the entry's config names
    the architecture as `model.preset`.
  """
  chosen = fold_architectures(config)
  if not chosen:
    return [(config, None)]
  missing = [name for name in fold_names if name not in chosen]
  if missing:
    raise errors.UserError(f"selection.fold_architectures has no architecture for fold(s) {missing[:3]}; "
                           "search them (mode=nested with the same protocol and max_folds)")
  groups: dict[str, list[str]] = {}
  for name in fold_names:
    groups.setdefault(chosen[name], []).append(name)
  runs = []
  for architecture, names in groups.items():
    group_config = copy.deepcopy(config)
    with group_config.unlocked():
      group_config.model.preset = architecture
    runs.append((group_config, tuple(names)))
  return runs

"""`rcn_jax.selection`: a run's architecture provenance and the per-architecture groups of a per-fold run."""

import ml_collections
import pytest

from rcn_jax import selection

FOLDS = ("casme2/sub01", "smic/s01", "samm/006", "casme2/sub02")


def _config(**selection_section):
  config = ml_collections.ConfigDict({"model": {"preset": "rcn_a"}})
  if selection_section:
    config.selection = selection_section
  return config


def test_provenance_is_none_without_a_selection_and_checks_its_name():
  assert selection.provenance(_config()) == {"search": "none", "search_workdir": None}
  assert selection.provenance(_config(search=selection.NESTED, search_workdir="runs/search")) == {
      "search": "nested", "search_workdir": "runs/search"}
  assert selection.provenance(_config(search=selection.ONCE, search_workdir="")) == {
      "search": "once (test subjects seen)", "search_workdir": None}
  with pytest.raises(ValueError, match=r"selection.search='twice': expected one of"):
    selection.provenance(_config(search="twice"))


def test_a_run_of_one_architecture_is_one_program_over_all_folds():
  config = _config(search=selection.ONCE)
  assert selection.fold_architectures(config) == {}
  assert selection.group_runs(config, FOLDS) == [(config, None)]


def test_per_fold_architectures_group_the_folds_in_protocol_order():
  chosen = (("casme2/sub01", "arch_x"), ("smic/s01", "arch_y"), ("samm/006", "arch_x"), ("casme2/sub02", "arch_y"))
  config = _config(search=selection.NESTED, fold_architectures=chosen)
  assert selection.fold_architectures(config) == dict(chosen)
  runs = selection.group_runs(config, FOLDS)
  assert [(group.model.preset, folds) for group, folds in runs] == [
      ("arch_x", ("casme2/sub01", "samm/006")), ("arch_y", ("smic/s01", "casme2/sub02"))]
  assert config.model.preset == "rcn_a"  # each group trains a copy
  # A protocol with fewer folds (max_folds) groups only the folds it tests.
  assert [folds for _, folds in selection.group_runs(config, FOLDS[:2])] == [("casme2/sub01",), ("smic/s01",)]


def test_a_fold_without_an_architecture_is_named():
  config = _config(search=selection.NESTED, fold_architectures=(("casme2/sub01", "arch_x"),))
  with pytest.raises(ValueError, match=r"no architecture for fold\(s\) \['smic/s01', 'samm/006', 'casme2/sub02'\]"):
    selection.group_runs(config, FOLDS)

"""`rcn_jax.search.loop`: the planted candidate wins, batches are checked for test samples, outputs."""

import importlib.util
import json
import os

import jax
import numpy as np
import pytest

from configs import search as search_config
from fixtures.planted_search import fake_subjects, planted_data, planted_program, planted_task
from rcn_jax import scoring, train
from rcn_jax.data import Composite
from rcn_jax.models import search_space
from rcn_jax.search import bilevel, export, splits
from rcn_jax.search import loop as search


@pytest.mark.parametrize("order,mixing", [(1, "normalized"), (2, "normalized"), (2, "softmax")])
def test_planted_better_candidate_is_ranked_first(order, mixing):
  x, labels, groups = planted_data()
  task = planted_task(groups)
  program = planted_program(order, mixing)
  alphas = bilevel.init_alphas({"feature": ("signal", "noise")}, mixing)
  result = search.run_task(program, task, x, labels, search.LoopSettings(epochs=12, warmup_epochs=2, batch_size=16),
                           jax.random.key(0), alphas)
  ranked = export.rank_choices(result.weights, {"feature": ("signal", "noise")}, k=2)
  assert [choices["feature"] for _, choices in ranked] == ["signal", "noise"]
  assert result.weights["feature"][0] > 0.6
  assert result.history["feature"].shape == (13, 2)
  np.testing.assert_allclose(result.history["feature"][0], [0.5, 0.5])
  assert np.isnan(result.val_loss[:2]).all() and np.isfinite(result.val_loss[2:]).all()
  # Every index a step read: all training samples, only validation samples, never the test subject.
  np.testing.assert_array_equal(result.used_indices["train"], task.train_indices)
  assert set(result.used_indices["val"]) <= set(task.val_indices)
  assert not set(result.used_indices["val"]) & set(task.test_indices)


def test_a_batch_with_a_test_sample_is_refused():
  x, labels, groups = planted_data()
  task = planted_task(groups)
  with_test_sample = np.concatenate([task.train_indices, task.test_indices[:1]])
  leaking = splits.SearchTask(task.name, task.fold, 0, with_test_sample, task.val_indices, task.test_indices)
  with pytest.raises(AssertionError, match="a search batch holds test samples"):
    search.run_task(planted_program(1, "normalized"), leaking, x, labels, search.LoopSettings(1, 0, 16),
                    jax.random.key(0), bilevel.init_alphas({"feature": ("signal", "noise")}, "normalized"))


def tiny_composite():
  subjects, datasets = fake_subjects()
  rng = np.random.default_rng(0)
  labels = np.tile([0, 1, 2], 8)
  flows = 0.5 * rng.random((24, 12, 12, 3)) + 0.25 * labels[:, None, None, None]
  return Composite(flows=flows.astype(np.float32), labels=labels, subjects=subjects, datasets=datasets,
                   samples=np.array([f"clip{i:02d}" for i in range(24)]))


def tiny_search_config():
  """A nested search over two folds in a small space (a smaller program compiles faster)."""
  config = search_config.get_config("smoke,mode=nested")
  config.model.features = 4
  config.model.pool_size = 2
  config.data.resolution = 12
  config.protocol.max_folds = 2
  config.train.batch_size = 8
  config.search.stems = ("standard",)
  config.search.steps = 2
  config.search.min_steps = 1
  config.search.max_hops = 1
  config.search.gate_output = False
  config.search.top_k = 3
  return config


def test_search_writes_its_outputs_and_the_top1_config_trains(tmp_path):
  config = tiny_search_config()
  summary = search.run_search(config, str(tmp_path / "search"), composite=tiny_composite())
  folder = tmp_path / "search"
  for name in ("architecture_weights.json", "architecture_weights.csv", "architecture_weights.png",
               "architecture_weights_history.png", "search.json"):
    assert (folder / name).stat().st_size > 0, name
  table = json.loads((folder / "architecture_weights.json").read_text())
  decisions = search.make_space(config.search).decisions()
  assert [(r["decision"], r["candidate"]) for r in table["weights"]] == [
      (name, c) for name, candidates in decisions.items() for c in candidates]
  for name in decisions:
    np.testing.assert_allclose(sum(r["weight"] for r in table["weights"] if r["decision"] == name), 1.0, rtol=1e-5)
  assert [t["name"] for t in summary["tasks"]] == ["casme2/sub01@0", "casme2/sub02@0"]
  for task in summary["tasks"]:
    assert task["test_subjects"] == [task["name"].split("@")[0]]
    assert not set(task["test_subjects"]) & (set(task["train_subjects"]) | set(task["val_subjects"]))
    assert len(task["train_loss"]) == 2 and task["val_loss"][0] is None and task["val_loss"][1] is not None
  assert len(summary["ranked"]) == 3
  assert summary["timings"]["search_s"] > 0
  assert summary["cost"]["flops"] > summary["cost"]["flops_per_arch_step"] > 0
  # Strictly valid JSON: no NaN or Infinity anywhere.
  json.loads((folder / "search.json").read_text(), parse_constant=_refuse)

  trained = _load_config(folder / "architectures" / "top1.py", "smoke")
  assert trained.model.preset == summary["ranked"][0]["architecture"]
  assert (trained.model.features, trained.data.resolution) == (4, 12)
  trained.protocol.max_folds = 1
  _small_run(trained)
  results = train.train_and_evaluate(trained, str(tmp_path / "train"), composite=tiny_composite())
  assert 0.0 <= results["uf1"] <= 1.0
  assert os.path.getsize(tmp_path / "train" / "predictions.csv") > 0
  # A nested search's top-k rank on the mean over folds: every test subject weighed in.
  assert results["selection"]["search"] == "nested mean over folds (test subjects seen)"
  assert results["selection"]["search_workdir"] == str(folder)

  # The honest protocol: each fold trains its own fold's architecture; folds with different
  # architectures train as separate programs, and the results say `nested`.
  per_fold = _load_config(folder / "architectures" / "per_fold.py", "smoke")
  assert dict(per_fold.selection.fold_architectures) == summary["per_fold"]["architectures"]
  first, second = search_space.Architecture("standard", ("recurrent",)), search_space.Architecture(
      "standard", ("recurrent", "shortcut"), (("state_0", "stem"),))
  per_fold.selection.fold_architectures = (("casme2/sub01", first.encode()), ("casme2/sub02", second.encode()))
  _small_run(per_fold)
  results = train.train_and_evaluate(per_fold, str(tmp_path / "nested"), composite=tiny_composite())
  assert results["selection"]["search"] == "nested"
  assert results["selection"]["architectures"] == {first.encode(): ["casme2/sub01"], second.encode(): ["casme2/sub02"]}
  assert results["execution"]["programs"] == 2
  assert sorted(results["per_fold_accuracy"]) == ["casme2/sub01", "casme2/sub02"]
  for index in range(2):  # each program checkpoints in its own folder
    assert (tmp_path / "nested" / f"architecture_{index}" / "checkpoints").is_dir()
  assert "architecture selection: search: nested (" in scoring.summary_table(results)


def _refuse(constant):
  raise ValueError(f"not JSON: {constant}")


def _load_config(path, arg):
  spec = importlib.util.spec_from_file_location(path.stem, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def _small_run(config):
  config.train.num_epochs = 1
  config.train.batch_size = 32
  config.parallel.strategy = "loop"
  config.parallel.models_per_call = 1
  config.report.bootstrap_resamples = 10

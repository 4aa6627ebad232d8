"""The LOSO trainer end to end on a tiny in-memory composite: strategies agree, outputs, honesty."""

import csv
import json
import os
import pathlib
import shutil

import numpy as np
import pytest

from fixtures.tiny_runs import tiny_composite, tiny_config
from rcn_jax import train
from rcn_jax.data import Composite

# The module fixture trains three runs: once, on one worker (`--dist loadgroup` in setup.cfg).
pytestmark = pytest.mark.xdist_group("train_strategies")


def read_probabilities(workdir) -> np.ndarray:
  with open(os.path.join(workdir, "predictions.csv")) as stream:
    rows = list(csv.DictReader(stream))
  return np.array([[float(r[f"p_{c}"]) for c in ("negative", "positive", "surprise")] for r in rows])


@pytest.fixture(scope="module")
def strategy_runs(tmp_path_factory):
  composite = tiny_composite()
  runs = {}
  for strategy in ("loop", "shard_map", "vmap"):
    workdir = str(tmp_path_factory.mktemp(strategy))
    runs[strategy] = (workdir, train.train_and_evaluate(tiny_config(strategy), workdir, composite=composite))
  return runs


def test_strategies_give_the_same_predictions(strategy_runs):
  loop = read_probabilities(strategy_runs["loop"][0])
  sharded = read_probabilities(strategy_runs["shard_map"][0])
  vmapped = read_probabilities(strategy_runs["vmap"][0])
  assert loop.shape == (24, 3)
  # The same single-model computation on 1 or 4 devices, compiled into programs of different block
  # sizes: equal up to float32 rounding.
  np.testing.assert_allclose(loop, sharded, atol=1e-5)
  # vmap turns convolutions into grouped ones: equal to float32 rounding after 3 epochs.
  np.testing.assert_allclose(loop, vmapped, atol=1e-4)
  assert np.abs(loop - 1 / 3).max() > 0.01  # and the models did learn something
  assert len(strategy_runs["shard_map"][1]["execution"]["devices"]) == 4


def test_results_and_output_files(strategy_runs):
  workdir, results = strategy_runs["shard_map"]
  for key in ("uar", "uf1", "per_dataset", "seeds", "config", "versions", "timings"):
    assert key in results
  assert set(results["per_dataset"]) == {"casme2", "smic"}
  assert results["execution"]["strategy"] == "shard_map"
  assert results["execution"]["slots"] == 8  # 6 folds padded to 4 devices x 1 model per call
  assert results["training"]["epochs_trained_max"] == 3
  with open(os.path.join(workdir, "results.json")) as stream:
    assert json.load(stream)["uf1"] == results["uf1"]
  with open(os.path.join(workdir, "megc2019_seed0.log")) as stream:
    lines = stream.read().splitlines()
  assert lines[0] == "casme2 sub01"
  assert lines[1].split()[:2] == ["clip00", "0"]
  assert sum(1 for line in lines if line.split()[0] in ("casme2", "smic")) == 6
  for name in ("predictions.csv", "confusion_composite.png", "confusion_smic.png", "train_loss.csv", "config.json"):
    assert os.path.getsize(os.path.join(workdir, name)) > 0
  assert os.listdir(os.path.join(workdir, "tensorboard"))


def test_same_config_and_seed_give_the_same_numbers_and_finished_runs_are_not_retrained(strategy_runs, tmp_path):
  workdir, results = strategy_runs["shard_map"]
  again = train.train_and_evaluate(tiny_config("shard_map"), str(tmp_path), composite=tiny_composite())
  np.testing.assert_array_equal(read_probabilities(tmp_path), read_probabilities(workdir))
  assert again["uf1"] == results["uf1"]
  stamp = os.path.getmtime(os.path.join(workdir, "results.json"))
  assert train.train_and_evaluate(tiny_config("shard_map"), workdir, composite=tiny_composite()) == \
      json.loads(pathlib.Path(workdir, "results.json").read_text())
  assert os.path.getmtime(os.path.join(workdir, "results.json")) == stamp
  other = tiny_config("shard_map", learning_rate=0.01)
  with pytest.raises(ValueError, match=r"another config \(sections \['train'\]"):
    train.train_and_evaluate(other, workdir, composite=tiny_composite())
  # Checkpoint settings do not change what is trained: the run goes on from its checkpoint.
  copy = tmp_path / "copy"
  shutil.copytree(workdir, copy)
  kept = tiny_config("shard_map")
  kept.checkpoint.max_to_keep = 3
  resumed = train.train_and_evaluate(kept, str(copy), composite=tiny_composite())
  assert resumed["execution"]["resumed_from_epoch"] == kept.train.num_epochs
  np.testing.assert_array_equal(read_probabilities(copy), read_probabilities(workdir))


def _loss_column(workdir, model):
  """The epoch-mean training losses of one model, up to the epoch it stopped."""
  with open(os.path.join(workdir, "train_loss.csv")) as stream:
    return [row[model] for row in csv.DictReader(stream) if row[model]]


def test_stopping_rule_and_training_never_see_the_test_subject(tmp_path):
  """Replacing fold 0's test samples by noise with other labels changes nothing in its training."""
  threshold = 1.0  # between fold 0's first and second epoch losses (1.04, 0.74)
  config = tiny_config("loop", loss_threshold=threshold)
  composite = tiny_composite()
  test = composite.subjects == "sub01"
  rng = np.random.default_rng(5)
  flows, labels = composite.flows.copy(), composite.labels.copy()
  flows[test] = rng.random(flows[test].shape, np.float32)
  labels[test] = (labels[test] + 1) % 3
  poisoned = Composite(flows, labels, composite.subjects, composite.datasets, composite.samples)
  train.train_and_evaluate(config, str(tmp_path / "clean"), composite=composite)
  train.train_and_evaluate(config, str(tmp_path / "poisoned"), composite=poisoned)
  clean_loss = _loss_column(tmp_path / "clean", "casme2/sub01@0")
  assert clean_loss == _loss_column(tmp_path / "poisoned", "casme2/sub01@0")
  # The rule stopped fold 0 before the epoch limit, on its training loss alone.
  assert len(clean_loss) < 3 and float(clean_loss[-1]) < threshold <= float(clean_loss[0])
  # Other folds train on sub01, so for them the poisoned samples do change the training.
  assert _loss_column(tmp_path / "clean", "casme2/sub02@0") != _loss_column(tmp_path / "poisoned", "casme2/sub02@0")
  clean_predictions = read_probabilities(tmp_path / "clean")
  assert not np.array_equal(clean_predictions[:4], read_probabilities(tmp_path / "poisoned")[:4])


def test_seeds_train_separate_models(tmp_path):
  config = tiny_config("shard_map")
  config.protocol.max_folds = 4  # 4 folds x 2 seeds fill the same 8 slots as 6 folds: no recompile.
  config.seeds = (0, 1)
  results = train.train_and_evaluate(config, str(tmp_path), composite=tiny_composite())
  assert [s["seed"] for s in results["seeds"]] == [0, 1]
  probabilities = read_probabilities(tmp_path)
  assert probabilities.shape == (32, 3)
  assert not np.allclose(probabilities[:16], probabilities[16:])
  assert results["uf1"] == pytest.approx(np.mean([s["uf1"] for s in results["seeds"]]))


def test_bad_settings_name_their_key(tmp_path):
  config = tiny_config("shard_map")
  config.parallel.strategy = "pmap"
  with pytest.raises(ValueError, match="parallel.strategy='pmap'"):
    train.train_and_evaluate(config, str(tmp_path), composite=tiny_composite())
  config = tiny_config("shard_map")
  config.model.preset = "rcn_z"
  with pytest.raises(ValueError, match="model.preset='rcn_z'"):
    train.train_and_evaluate(config, str(tmp_path / "b"), composite=tiny_composite())
  for section, key, value, message in (("report", "confidence", 95.0, "report.confidence=95.0"),
                                       ("report", "bootstrap_resamples", -1, "report.bootstrap_resamples=-1"),
                                       ("parallel", "steps_per_call", -2, "parallel.steps_per_call=-2")):
    config = tiny_config("shard_map")
    config[section][key] = value
    with pytest.raises(ValueError, match=message):
      train.train_and_evaluate(config, str(tmp_path / key), composite=tiny_composite())


def test_results_name_the_devices_the_strategy_used(strategy_runs):
  assert len(strategy_runs["loop"][1]["execution"]["devices"]) == 1  # loop runs on the first device only

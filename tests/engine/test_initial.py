"""Imported initial weights (`init.per_fold`, `init.weights`): each fold starts from its own subject's
official state dict, and with `train.num_epochs=0` a run scores those weights unchanged."""

import csv
import pathlib

import jax
import numpy as np
import pytest

from configs import rcn_a
from rcn_jax import data, errors, models, train
from rcn_jax.analysis import trained_run

VECTORS = pathlib.Path(__file__).parents[1] / "data" / "reference_vectors"
FOLDS = 2


def _state_dict() -> dict[str, np.ndarray]:
  return models.read_state_dict(str(VECTORS / "RCN_A_fm16_p5.npz"))


def _config(megc2019_dir, **init):
  config = rcn_a.get_config("smoke")
  config.model.features, config.model.pool_size = 16, 5
  config.data.name, config.data.data_dir, config.data.datasets = "megc2019", str(megc2019_dir), ("smic",)
  config.train.num_epochs = 0
  config.protocol.max_folds = FOLDS
  config.report.bootstrap_resamples = 0
  for key, value in init.items():
    config.init[key] = value
  return config


def _write_per_fold(folder: pathlib.Path, subjects) -> dict[str, dict[str, np.ndarray]]:
  """A different official state dict per subject (the classifier scaled by the subject's rank)."""
  folder.mkdir()
  written = {}
  for rank, subject in enumerate(subjects, start=1):
    state_dict = dict(_state_dict())
    state_dict["classifier.weight"] = state_dict["classifier.weight"] * rank
    np.savez(folder / f"{subject}.npz", **state_dict)
    written[subject] = state_dict
  return written


def _predicted(workdir) -> dict[str, list[float]]:
  with open(workdir / "predictions.csv", newline="") as stream:
    return {row["sample"]: [float(row[f"p_{name}"]) for name in ("negative", "positive", "surprise")]
            for row in csv.DictReader(stream)}


def test_per_fold_weights_are_evaluated_unchanged_with_zero_epochs(megc2019_dir, tmp_path):
  composite = data.load_composite("megc2019", data_dir=str(megc2019_dir), resolution=60, datasets=("smic",))
  subjects = list(dict.fromkeys(composite.subjects.tolist()))[:FOLDS]
  written = _write_per_fold(tmp_path / "weights", subjects)
  results = train.train_and_evaluate(_config(megc2019_dir, per_fold=str(tmp_path / "weights")), str(tmp_path / "run"))
  assert results["training"]["epochs_trained_max"] == 0
  predicted = _predicted(tmp_path / "run")
  for subject in subjects:  # each fold's own model, run by hand through the importer
    module, variables = models.from_torch_state_dict("rcn_a", written[subject], features=16, pool_size=5,
                                                     reference_quirks=False)
    held_out = np.flatnonzero(composite.subjects == subject)
    logits = module.apply(variables, composite.flows[held_out], train=False)
    expected = np.asarray(jax.nn.softmax(logits, axis=-1))
    got = np.asarray([predicted[composite.samples[i]] for i in held_out])
    np.testing.assert_allclose(got, expected, atol=2e-6)  # predictions.csv keeps 6 decimals
  # The run folder opens again with the same fold models.
  run = trained_run.load_run(tmp_path / "run")
  assert [m.fold for m in run.models] == [f"smic/{s}" for s in subjects]
  imported = models.from_torch_state_dict("rcn_a", written[subjects[1]], features=16, pool_size=5,
                                         reference_quirks=False)[1]
  np.testing.assert_array_equal(np.asarray(run.model_variables(1)["params"]["classifier_kernel"]),
                                imported["params"]["classifier_kernel"])


def test_one_weight_file_starts_every_fold_and_missing_subjects_are_named(megc2019_dir, tmp_path):
  np.savez(tmp_path / "all.npz", **_state_dict())
  results = train.train_and_evaluate(_config(megc2019_dir, weights=str(tmp_path / "all.npz")), str(tmp_path / "run"))
  assert results["training"]["folds"] == FOLDS
  (tmp_path / "partial").mkdir()
  np.savez(tmp_path / "partial" / "s01.npz", **_state_dict())
  with pytest.raises(errors.UserError, match=r"no weights for 1 fold\(s\): \['s02.npz'\]"):
    train.train_and_evaluate(_config(megc2019_dir, per_fold=str(tmp_path / "partial")), str(tmp_path / "run2"))
  with pytest.raises(errors.UserError, match="init.weights and init.per_fold both set"):
    train.train_and_evaluate(_config(megc2019_dir, weights=str(tmp_path / "all.npz"),
                                     per_fold=str(tmp_path / "partial")), str(tmp_path / "run3"))
  wrong = dict(_state_dict())
  wrong["classifier.weight"] = wrong["classifier.weight"][:, :10]
  np.savez(tmp_path / "wrong.npz", **wrong)
  with pytest.raises(errors.UserError, match=r"wrong.npz: .*classifier.weight"):
    train.train_and_evaluate(_config(megc2019_dir, weights=str(tmp_path / "wrong.npz")), str(tmp_path / "run4"))

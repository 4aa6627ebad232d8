"""Per-model test rows gathered into pooled scores per scope and seed (scikit-learn as the oracle)."""

import numpy as np
import pytest
from sklearn import metrics as sk

from rcn_jax import folds, scoring
from rcn_jax.data import Composite


def _composite():
  labels = np.array([0, 1, 2, 0, 1, 2, 0, 0, 1, 2, 2, 1])
  return Composite(flows=np.zeros((12, 2, 2, 3), np.float32), labels=labels,
                   subjects=np.array(["a", "a", "a", "b", "b", "b", "c", "c", "c", "d", "d", "d"]),
                   datasets=np.array(["smic"] * 6 + ["samm"] * 6), samples=np.array([f"x{i}" for i in range(12)]))


def test_summary_pools_per_scope_and_reports_each_seed():
  composite = _composite()
  layout = folds.layout_models(folds.make_folds(composite.subjects, composite.datasets), (0, 1), 4)
  indices, valid = layout.test_table()
  rng = np.random.default_rng(1)
  probabilities = rng.random((layout.num_slots, indices.shape[1], 3))
  predictions = scoring.gather_predictions(layout, probabilities, indices, valid)
  assert len(predictions.seeds) == 24
  results = scoring.summarize(composite, predictions, ("negative", "positive", "surprise"),
                                bootstrap_resamples=20, confidence=0.9)
  per_seed_uf1 = []
  for seed in (0, 1):
    rows = predictions.seeds == seed
    assert predictions.sample_indices[rows].tolist() == list(range(12))
    preds = predictions.predictions[rows]
    per_seed_uf1.append(sk.f1_score(composite.labels, preds, average="macro"))
    smic = composite.datasets == "smic"
    seed_entry = results["seeds"][seed]
    assert seed_entry["uf1"] == pytest.approx(per_seed_uf1[-1])
    assert seed_entry["per_dataset"]["smic"]["uar"] == pytest.approx(
        sk.recall_score(composite.labels[smic], preds[smic], average="macro"))
    assert seed_entry["per_fold_accuracy"]["samm/c"] == pytest.approx(np.mean(preds[6:9] == composite.labels[6:9]))
  assert results["uf1"] == pytest.approx(np.mean(per_seed_uf1))
  assert results["uf1_std"] == pytest.approx(np.std(per_seed_uf1))
  assert set(results["per_dataset"]) == {"smic", "samm"}
  assert np.sum(results["confusion"]) == 24
  assert len(results["uar_interval"]) == 2
  assert list(scoring.scopes(results)) == ["composite", "smic", "samm"]
  assert scoring.scopes(results)["samm"] is results["per_dataset"]["samm"]
  table = scoring.summary_table(results)
  assert "composite" in table and "samm" in table

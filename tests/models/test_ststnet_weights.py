"""Published per-subject STSTNet weights (`init.per_fold`) evaluated unchanged under configs/ststnet.py.

Each fold's predictions must equal the independent NumPy STSTNet (tests/models/test_ststnet.py) run
on the same subject's state dict, with STSTNet's input convention (BGR, 0..255) applied by hand.
"""

import csv

import numpy as np
from scipy.special import softmax

from configs import ststnet
from rcn_jax import train
from rcn_jax.data import Composite
from test_ststnet import np_forward, random_state_dict

SUBJECTS = ("sub01", "sub02", "s01", "s02")


def composite() -> Composite:
  rng = np.random.default_rng(0)
  labels = np.tile([0, 1, 2], 4)
  return Composite(flows=rng.random((12, 28, 28, 3)).astype(np.float32), labels=labels,
                   subjects=np.repeat(["sub01", "sub02", "s01", "s02"], 3),
                   datasets=np.repeat(["casme2", "smic"], 6), samples=np.array([f"clip{i:02d}" for i in range(12)]))


def test_per_fold_state_dicts_score_as_the_numpy_model(tmp_path):
  data = composite()
  folder = tmp_path / "weights"
  folder.mkdir()
  written = {}
  for rank, subject in enumerate(SUBJECTS):
    sd = random_state_dict(10 + rank)
    for b in (1, 2, 3):  # inputs reach 255: smaller kernels keep the softmax away from 0 and 1
      sd[f"conv{b}.weight"] = sd[f"conv{b}.weight"] / 100
    np.savez(folder / f"{subject}.npz", **sd)
    written[subject] = sd
  config = ststnet.get_config("smoke")
  config.train.num_epochs = 0
  config.protocol.max_folds = 0
  config.report.bootstrap_resamples = 0
  config.data.datasets = ("casme2", "smic")
  config.init.per_fold = str(folder)
  results = train.train_and_evaluate(config, str(tmp_path / "run"), composite=data)
  assert results["training"]["epochs_trained_max"] == 0
  with open(tmp_path / "run" / "predictions.csv", newline="") as stream:
    predicted = {row["sample"]: [float(row[f"p_{c}"]) for c in ("negative", "positive", "surprise")]
                 for row in csv.DictReader(stream)}
  assert len(predicted) == 12
  for subject in SUBJECTS:
    held_out = np.flatnonzero(data.subjects == subject)
    seen = data.flows[held_out].astype(np.float64)[..., ::-1] * 255.0  # BGR, 0..255
    logits, _ = np_forward(written[subject], seen.transpose(0, 3, 1, 2), train=False)
    expected = softmax(logits, axis=-1)
    got = np.asarray([predicted[data.samples[i]] for i in held_out])
    assert np.abs(expected - 1 / 3).max() > 0.05  # the weights make a difference to the scores
    np.testing.assert_allclose(got, expected, atol=2e-5)  # float32 run, 6-decimal predictions.csv


def test_imported_weights_save_and_load_as_a_model(tmp_path):
  """`python -m rcn_jax.models.convert --preset=ststnet` writes what `saved.load_model` reads back."""
  from rcn_jax import models  # pylint: disable=g-import-not-at-top
  from rcn_jax.models import saved  # pylint: disable=g-import-not-at-top
  model, variables = models.from_torch_state_dict("ststnet", random_state_dict(2), features=16, pool_size=1)
  saved.save_model(str(tmp_path / "stst"), variables, preset="ststnet", features=16, pool_size=1)
  loaded, loaded_variables = saved.load_model(str(tmp_path / "stst"))
  x = np.random.default_rng(0).random((2, 28, 28, 3)).astype(np.float32)
  np.testing.assert_allclose(np.asarray(loaded.apply(loaded_variables, x)), np.asarray(model.apply(variables, x)),
                             rtol=1e-6, atol=1e-6)

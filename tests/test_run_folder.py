"""The run folder: its files written and read back, the claim on a folder, the stored composite."""

import json

import numpy as np
import pytest

from rcn_jax import errors, run_folder, scoring
from rcn_jax.data import Composite

CLASS_NAMES = ("negative", "positive", "surprise")


def _composite() -> Composite:
  return Composite(flows=np.arange(4 * 2 * 2 * 3, dtype=np.float32).reshape(4, 2, 2, 3) / 48,
                   labels=np.array([0, 1, 2, 0]), subjects=np.array(["a", "a", "b", "b"]),
                   datasets=np.array(["smic", "smic", "samm", "samm"]), samples=np.array(["x0", "x1", "x2", "x3"]))


def test_layout_names_every_slot_and_its_checkpoint_folder(tmp_path):
  groups = [{"architecture": "rcn_a", "slots": 4, "models": [("casme2/sub01", 0), ("smic/s01", 0), ("casme2/sub01", 1)]},
            {"architecture": "rcn_s", "slots": 2, "models": [("samm/006", 0)]}]
  run_folder.write_layout(str(tmp_path), groups)
  layout = run_folder.read_layout(tmp_path)
  assert [(g["architecture"], g["slots"], g["checkpoints"], g["folds"]) for g in layout["groups"]] == [
      ("rcn_a", 4, "architecture_0/checkpoints", ["casme2/sub01", "smic/s01"]),
      ("rcn_s", 2, "architecture_1/checkpoints", ["samm/006"])]
  assert [(m["group"], m["slot"], m["fold"], m["seed"], m["architecture"]) for m in layout["models"]] == [
      (0, 0, "casme2/sub01", 0, "rcn_a"), (0, 1, "smic/s01", 0, "rcn_a"), (0, 2, "casme2/sub01", 1, "rcn_a"),
      (1, 0, "samm/006", 0, "rcn_s")]
  run_folder.write_layout(str(tmp_path), groups[:1])  # one program: the run folder itself
  assert run_folder.read_layout(tmp_path)["groups"][0]["checkpoints"] == "checkpoints"


def test_a_run_of_an_earlier_release_is_laid_out_from_its_loss_table_once(tmp_path):
  """Without `layout.json`: the `FOLD@SEED` header and the slot count of `results.json` (one program)."""
  results = {"config": {"model": {"preset": "rcn_f"}}, "execution": {"slots": 4},
             "selection": {"architectures": {"rcn_f": ["casme2/sub01", "smic/s01"]}}}
  (tmp_path / "results.json").write_text(json.dumps(results))
  (tmp_path / "train_loss.csv").write_text("epoch,casme2/sub01@0,smic/s01@0,casme2/sub01@1\n1,0.9,0.8,0.7\n")
  layout = run_folder.read_layout(tmp_path)
  assert layout["groups"] == [{"architecture": "rcn_f", "folder": "", "checkpoints": "checkpoints", "slots": 4,
                               "folds": ["casme2/sub01", "smic/s01"]}]
  assert [(m["fold"], m["seed"], m["slot"]) for m in layout["models"]] == [
      ("casme2/sub01", 0, 0), ("smic/s01", 0, 1), ("casme2/sub01", 1, 2)]
  (tmp_path / "train_loss.csv").write_text("epoch,casme2/sub01\n")
  with pytest.raises(errors.UserError, match="column 'casme2/sub01' is not FOLD@SEED"):
    run_folder.read_layout(tmp_path)
  (tmp_path / "train_loss.csv").unlink()
  with pytest.raises(errors.UserError, match="no layout.json .* run the same config again"):
    run_folder.read_layout(tmp_path)


def test_learning_curves_read_stopped_models_as_gaps(tmp_path):
  (tmp_path / "train_loss.csv").write_text("epoch,a@0,b@0\n1,1.1,1.0\n2,0.9,\n3,0.7,\n")
  names, losses = run_folder.read_train_losses(tmp_path)
  assert names == ["a@0", "b@0"]
  np.testing.assert_array_equal(losses[0], [1.1, 0.9, 0.7])
  assert losses[1][0] == 1.0 and np.isnan(losses[1][1:]).all()
  (tmp_path / "train_loss.csv").write_text("epoch,a@0,b@0\n1,1.1\n")
  with pytest.raises(ValueError, match="row 2 has 2 fields"):
    run_folder.read_train_losses(tmp_path)
  # What the engine writes reads back, up to the 6 decimals of the file; unrun epochs end the table.
  history = np.array([[0.5, 0.25, np.nan, np.nan], [0.75, np.nan, np.nan, np.nan]])
  run_folder.write_train_losses(str(tmp_path), ["smic/a@0", "samm/b@0"], history)
  names, losses = run_folder.read_train_losses(tmp_path)
  assert names == ["smic/a@0", "samm/b@0"]
  np.testing.assert_array_equal(losses, history[:, :2])
  with pytest.raises(errors.MissingInput, match="train_loss.csv: missing"):
    run_folder.read_train_losses(tmp_path / "elsewhere")


def test_a_folder_is_claimed_by_one_config(tmp_path):
  workdir = str(tmp_path)
  config = {"model": {"preset": "rcn_a"}, "report": {"confidence": 0.95}}
  run_folder.claim(workdir, config, ignore=("report",))
  assert run_folder.read_config(tmp_path) == config
  (tmp_path / "checkpoints" / "1").mkdir(parents=True)
  with pytest.raises(errors.UserError, match=r"holds a run of another config \(sections \['model'\] differ\)"):
    run_folder.claim(workdir, {**config, "model": {"preset": "rcn_f"}}, ignore=("report",))
  # Report settings do not change what is trained: the started run goes on with them.
  reported = {**config, "report": {"confidence": 0.9}}
  run_folder.claim(workdir, reported, ignore=("report",))
  assert run_folder.read_config(tmp_path) == reported
  assert run_folder.finished_results(workdir, reported) is None
  run_folder.write_json(str(tmp_path / "results.json"), {"config": reported, "uar": np.float32(0.5)})
  assert run_folder.finished_results(workdir, reported) == {"config": reported, "uar": 0.5}
  assert run_folder.finished_results(workdir, config) is None


def test_predictions_and_megc_logs_name_every_tested_sample(tmp_path):
  composite = _composite()
  probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.1, 0.6, 0.3]])
  predictions = scoring.Predictions(seeds=np.zeros(4, int), folds=np.array(["smic/a", "smic/a", "samm/b", "samm/b"]),
                                    sample_indices=np.arange(4), probabilities=probabilities)
  run_folder.write_predictions_csv(str(tmp_path / run_folder.PREDICTIONS), composite, predictions, CLASS_NAMES)
  rows = run_folder.read_predictions(tmp_path)
  assert [(r["sample"], r["dataset"], r["subject"], r["fold"], r["seed"]) for r in rows] == [
      ("x0", "smic", "a", "smic/a", "0"), ("x1", "smic", "a", "smic/a", "0"),
      ("x2", "samm", "b", "samm/b", "0"), ("x3", "samm", "b", "samm/b", "0")]
  assert [int(r["prediction"]) for r in rows] == [0, 1, 2, 1]
  assert float(rows[3]["p_positive"]) == 0.6
  paths = run_folder.write_megc_logs(str(tmp_path), composite, predictions)
  assert paths == [str(tmp_path / run_folder.megc_log(0))] and paths[0].endswith("megc2019_seed0.log")
  assert (tmp_path / "megc2019_seed0.log").read_text() == "smic a\nx0 0 0\nx1 1 1\nsamm b\nx2 2 2\nx3 0 1\n"


def test_the_stored_composite_keeps_the_configs_datasets_and_their_apex_frames(tmp_path):
  composite = _composite()
  frames = [np.full((3, 3), i, np.uint8) for i in range(4)]
  run_folder.save_composite(str(tmp_path), composite, frames)
  assert (tmp_path / "composite.npz").is_file()
  stored, stored_frames = run_folder.load_run_composite(tmp_path, {"data": {"datasets": ["samm"]}})
  assert stored.samples.tolist() == ["x2", "x3"]
  np.testing.assert_array_equal(stored.flows, composite.flows[2:])
  assert [int(f[0, 0]) for f in stored_frames] == [2, 3]


def test_json_is_written_whole_and_missing_files_are_named(tmp_path):
  path = tmp_path / "table.json"
  run_folder.write_json(str(path), {"values": np.arange(3)})
  assert json.loads(path.read_text()) == {"values": [0, 1, 2]} and not (tmp_path / "table.json.tmp").exists()
  with pytest.raises(ValueError):
    run_folder.write_json(str(path), {"score": float("nan")}, strict=True)
  with pytest.raises(errors.MissingInput, match="results.json: missing; is .* a finished run folder"):
    run_folder.read_results(tmp_path)

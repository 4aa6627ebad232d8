"""Runs whose folds train different architectures open again: the nested search's `per_fold.py` run
through launch.py, then predict, CAM and report on it; a run of two architectures (two program
groups, two checkpoint folders) loads every fold model from `layout.json` alone."""

import json

import cv2
import numpy as np

from configs import rcn
from fixtures.loso_runs import launch, tiny_overrides
from rcn_jax import data, run_folder, studies, train
from rcn_jax.analysis import cam, predict, report, trained_run


def _write_pair(directory):
  sample = studies.tiny_frame_data().samples[0]
  directory.mkdir()
  cv2.imwrite(str(directory / "onset.png"), sample.onset)
  cv2.imwrite(str(directory / "apex.png"), sample.apex)
  return str(directory / "onset.png"), str(directory / "apex.png")


def test_nested_search_per_fold_run_opens_with_predict_cam_and_report(megc2019_dir, tmp_path, capsys):
  search_dir, run_dir = tmp_path / "search", tmp_path / "per_fold"
  process = launch(["--config=configs/search.py:smoke,mode=nested", f"--workdir={search_dir}",
                    *tiny_overrides(megc2019_dir), "--config.protocol.max_folds=2"],
                   cache_dir=tmp_path / "xla", devices=1, fast_compile=True)
  _, err = process.communicate(timeout=900)
  assert process.returncode == 0, err[-3000:]
  per_fold = json.loads((search_dir / "search.json").read_text())["per_fold"]["config"]
  process = launch([f"--config={per_fold}", f"--workdir={run_dir}", *tiny_overrides(megc2019_dir)[:1],
                    "--config.train.batch_size=32", "--config.train.num_epochs=1",
                    "--config.report.bootstrap_resamples=0"], cache_dir=tmp_path / "xla", devices=1)
  # (Optimised: XLA:CPU without its optimisations trains these searched architectures into NaN.)
  _, err = process.communicate(timeout=600)
  assert process.returncode == 0, err[-3000:]
  assert json.loads((run_dir / "results.json").read_text())["selection"]["search"] == "nested"
  layout = run_folder.read_layout(run_dir)
  assert [m["fold"] for m in layout["models"]] == ["smic/s01", "smic/s02"]
  onset, apex = _write_pair(tmp_path / "pair")
  assert predict.main([f"--workdir={run_dir}", f"--onset={onset}", f"--apex={apex}", "--json"]) == 0
  assert len(json.loads(capsys.readouterr().out)["models"]) == 2
  assert cam.main([f"--workdir={run_dir}"]) == 0
  assert report.main([f"--workdir={run_dir}"]) == 0
  assert "Final losses" in (run_dir / run_folder.REPORT_MARKDOWN).read_text()  # one epoch trained
  assert (run_dir / run_folder.CAMS).is_file() and (run_dir / run_folder.REPORT_MARKDOWN).is_file()


def test_a_run_of_two_architectures_loads_from_its_layout_without_the_loss_table(megc2019_dir, tmp_path):
  config = rcn.get_config("smoke")
  config.model.features, config.model.pool_size = 4, 2
  config.data.resolution, config.data.datasets = 20, ("smic",)
  config.train.num_epochs, config.protocol.max_folds, config.report.bootstrap_resamples = 1, 3, 0
  config.selection = {"search": "nested", "search_workdir": "", "fold_architectures": (
      ("smic/s01", "rcn"), ("smic/s02", "rcn_a"), ("smic/s03", "rcn"))}
  composite = data.load_composite("megc2019", data_dir=str(megc2019_dir), resolution=20, datasets=("smic",))
  workdir = tmp_path / "run"
  train.train_and_evaluate(config, str(workdir), composite=composite)
  layout = run_folder.read_layout(workdir)
  assert [(g["architecture"], g["checkpoints"]) for g in layout["groups"]] == [
      ("rcn", "architecture_0/checkpoints"), ("rcn_a", "architecture_1/checkpoints")]
  (workdir / run_folder.TRAIN_LOSS).unlink()
  run = trained_run.load_run(workdir)
  assert [(m.fold, m.architecture) for m in run.models] == [("smic/s01", "rcn"), ("smic/s03", "rcn"),
                                                            ("smic/s02", "rcn_a")]
  # Each model scores its held-out samples as the run did (predictions.csv, 6 decimals).
  rows = run_folder.read_predictions(workdir)
  for index, model in enumerate(run.models):
    mine = [r for r in rows if r["fold"] == model.fold]
    inputs = composite.flows[[list(composite.samples).index(r["sample"]) for r in mine]]
    expected = [[float(r[f"p_{name}"]) for name in run.class_names] for r in mine]
    np.testing.assert_allclose(run.probabilities(inputs, [index])[0], expected, atol=2e-6)

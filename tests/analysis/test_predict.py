"""predict on new frames: the same probabilities as the run's own LOSO evaluation; clips; errors.

`run_dir` (conftest, `fixtures.shared_run`) is one tiny run per test session, shared with test_cam and
test_report.
"""

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from fixtures.numerics import assert_close_to_scale
from rcn_jax import studies
from data_prep import inference
from rcn_jax.analysis import predict, trained_run


def read_rows(run_dir):
  with open(run_dir / "predictions.csv", newline="") as stream:
    return list(csv.DictReader(stream))


def write_pair(directory: Path, sample) -> tuple[str, str]:
  directory.mkdir(parents=True, exist_ok=True)
  onset, apex = directory / "onset.png", directory / "apex.png"
  cv2.imwrite(str(onset), sample.onset)
  cv2.imwrite(str(apex), sample.apex)
  return str(onset), str(apex)


def test_predict_gives_the_runs_own_test_probabilities(run_dir, tmp_path, capsys):
  frames = {(s.dataset, s.subject, s.sample): s for s in studies.tiny_frame_data().samples}
  rows = read_rows(run_dir)
  assert len(rows) == 12  # 4 folds x 3 clips
  run = trained_run.load_run(run_dir)
  assert [m.fold for m in run.models] == ["casme2/sub01", "smic/s01", "samm/006", "casme2/sub02"]
  for index, row in enumerate(rows):
    sample = frames[row["dataset"], row["subject"], row["sample"]]
    onset_path, apex_path = write_pair(tmp_path / f"pair{index}", sample)
    onset, apex = inference.read_frame(onset_path), inference.read_frame(apex_path)
    result = predict.predict_pair(run, onset, apex, held_out=row["fold"])
    assert [m.fold for m in result.models] == [row["fold"]]
    expected = [float(row[f"p_{name}"]) for name in run.class_names]
    assert_close_to_scale(result.mean, expected, err_msg=row["sample"])
  # The command line prints the same numbers.
  row = rows[0]
  onset_path, apex_path = write_pair(tmp_path / "cli", frames[row["dataset"], row["subject"], row["sample"]])
  assert predict.main([f"--workdir={run_dir}", f"--onset={onset_path}", f"--apex={apex_path}",
                       f"--held_out={row['fold']}", "--per_model"]) == 0
  printed = capsys.readouterr().out
  for name in run.class_names:
    assert f"{name:<10} {float(row[f'p_{name}']):>11.6f}" in printed
  assert f"predicted class: {run.class_names[int(row['prediction'])]}" in printed


def test_clip_folder_finds_the_apex_and_uses_every_fold_model(run_dir, tmp_path, capsys):
  sample = studies.tiny_frame_data().samples[4]
  clip = tmp_path / "clip"
  clip.mkdir()
  onset, apex = sample.onset.astype(np.float64), sample.apex.astype(np.float64)
  for number, weight in enumerate((0.0, 0.4, 0.8, 1.0, 0.5), start=1):
    frame = np.round((1 - weight) * onset + weight * apex).astype(np.uint8)
    cv2.imwrite(str(clip / f"img{number}.png"), frame)
  cam_path = tmp_path / "cam.png"
  assert predict.main([f"--workdir={run_dir}", f"--clip={clip}", "--json", f"--cam={cam_path}"]) == 0
  output = json.loads(capsys.readouterr().out)
  assert output["frames"] == {"onset": "img1.png", "apex": "img4.png", "apex_method": "xia_std"}
  assert len(output["models"]) == 4
  run = trained_run.load_run(run_dir)
  expected = predict.predict_pair(run, sample.onset, sample.apex)
  np.testing.assert_allclose([output["probabilities"][n] for n in run.class_names], expected.mean, atol=1e-6)
  per_model = np.array([[m["probabilities"][n] for n in run.class_names] for m in output["models"]])
  np.testing.assert_allclose(per_model.mean(axis=0), expected.mean, atol=1e-6)
  assert output["predicted_class"] == run.class_names[int(np.argmax(expected.mean))]
  assert cam_path.stat().st_size > 0


def test_errors_name_what_is_wrong(run_dir, tmp_path, capsys):
  sample = studies.tiny_frame_data().samples[0]
  onset_path, apex_path = write_pair(tmp_path, sample)
  assert predict.main([f"--workdir={tmp_path / 'nothing'}", f"--onset={onset_path}", f"--apex={apex_path}"]) == 2
  assert "config.json: missing" in capsys.readouterr().err
  assert predict.main([f"--workdir={run_dir}", f"--onset={onset_path}", f"--apex={apex_path}",
                       "--held_out=smic/s99"]) == 2
  assert "no fold model held out 'smic/s99'" in capsys.readouterr().err
  cv2.imwrite(str(tmp_path / "small.png"), sample.apex[:40])
  assert predict.main([f"--workdir={run_dir}", f"--onset={onset_path}", f"--apex={tmp_path / 'small.png'}"]) == 2
  assert "differ in size" in capsys.readouterr().err
  assert predict.main([f"--workdir={run_dir}", f"--onset={onset_path}", f"--apex={tmp_path / 'gone.png'}"]) == 2
  assert "gone.png: frame image not found" in capsys.readouterr().err
  assert predict.main([f"--workdir={run_dir}", f"--onset={onset_path}", f"--apex={apex_path}", "--size=big"]) == 2
  assert "--size: 'big' is not ROWSxCOLS" in capsys.readouterr().err
  with pytest.raises(SystemExit):
    predict.main([f"--workdir={run_dir}", f"--onset={onset_path}"])

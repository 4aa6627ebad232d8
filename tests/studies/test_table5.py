"""The table5 study: every Table V row trained at tiny scale beside the published numbers; its full-scale runs."""

import csv
import dataclasses
import json
from pathlib import Path

from rcn_jax import studies
from rcn_jax.studies import table5
from test_studies import run_tiny, table_rows


def test_table5_at_tiny_scale_trains_every_row(tmp_path, fast_compile, monkeypatch, capsys):
  # One seed: the suite's time (seeds are model slots of the same programs).
  monkeypatch.setitem(studies.SCALES, "tiny", dataclasses.replace(studies.SCALES["tiny"], comparison_seeds=(0,)))
  figures = run_tiny(str(tmp_path), ["table5"], monkeypatch, capsys)
  assert "table5.png" in figures
  markdown = (tmp_path / "table5.md").read_text()
  rows = table_rows(markdown, "## UAR and UF1")
  assert list(rows)[1:] == [name if name in table5.ROW_OF.values() or name.startswith("RCN") else
                        f"{name} (published only)" for name in table5.ROW_ORDER]
  runs = {p.parent.name: json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*/results.json")}
  assert sorted(r["config"]["model"]["preset"] for r in runs.values()) == sorted(
      ["rcn_a", "rcn_s", "rcn_w", "rcn_f", "ststnet", "off_apexnet", "dual_inception", "resnet18", "densenet121"])
  ststnet = next(r for r in runs.values() if r["config"]["model"]["preset"] == "ststnet")
  assert ststnet["config"]["train"]["optimizer"] == "adam" and ststnet["config"]["model"]["input_order"] == "bgr"
  # Measured cells are the runs' pooled scores; published cells the paper's.
  assert rows["STSTNet"][0] == f"{ststnet['uar']:.4f}" and rows["STSTNet"][1] == "0.6724"
  assert rows["RCN-A"][3] == "0.7432" and rows["LBP-TOP (published only)"][:2] == ["–", "0.5785"]
  rcn_a = next(r for r in runs.values() if r["config"]["model"]["preset"] == "rcn_a")
  assert rcn_a["config"]["train"]["preset"] == "reference"
  with open(tmp_path / "table5.csv", newline="") as stream:
    written = {row["approach"]: row for row in csv.DictReader(stream)}
  assert list(written) == list(table5.ROW_ORDER)
  assert float(written["DenseNet121"]["device_seconds"]) > 0
  assert written["DCN-DB"]["composite_uf1_published"] == "0.5979" and written["DCN-DB"]["run"] == ""
  low, high = float(written["STSTNet"]["composite_uar_low"]), float(written["STSTNet"]["composite_uar_high"])
  assert low <= high
  costs = table_rows(markdown, "## Recipes")
  assert costs["STSTNet"][2].startswith("adam") and "no shuffling" in costs["STSTNet"][2]


def test_table5_full_scale_runs_and_seeds(tmp_path, capsys):
  assert studies.main(["--study=table5", f"--workdir={tmp_path}", "--dry_run", "--seeds=2"]) == 0
  listed = capsys.readouterr().out.splitlines()
  assert listed == [f"{name}: to train" for name in (
      "resnet18_fm64_p1_r60_s0-1", "densenet121_fm32_p1_r60_s0-1", "off_apexnet_fm16_p1_r28_s0-1",
      "ststnet_fm16_p1_r28_s0-1", "dual_inception_fm16_p1_r28_s0-1", "rcn_a_fm64_p7_r60_s0-1",
      "rcn_s_fm16_p5_r60_s0-1", "rcn_w_fm32_p7_r60_s0-1", "rcn_f_fm32_p5_r60_s0-1")]
  assert studies.main(["--study=table5", f"--workdir={tmp_path}", "--seeds=0"]) == 2
  assert not Path(tmp_path, "runs").exists()

"""Every study at tiny scale writes its plots and its tables in the paper's layout; configs; dry runs."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fixtures.loso_runs import ROOT, free_port, subprocess_env
from rcn_jax import plots, studies


def table_rows(markdown: str, heading: str) -> dict[str, list[str]]:
  """The rows (first cell -> other cells) of the first table after `heading`."""
  lines = markdown[markdown.index(heading):].splitlines()
  start = next(i for i, line in enumerate(lines) if line.startswith("|"))
  rows = {}
  for line in lines[start:]:
    if not line.startswith("|"):
      break
    if line.startswith("|---"):
      continue
    cells = [c.strip().strip("*") for c in line.strip("|").split("|")]
    rows[cells[0]] = cells[1:]
  return rows


def uar_of(workdir, name: str, scope: str = "composite", metric: str = "uar") -> str:
  results = json.loads(Path(workdir, "runs", name, "results.json").read_text())
  entry = results if scope == "composite" else results["per_dataset"][scope]
  return plots.format_mean_std(entry[metric], entry[f"{metric}_std"])


def run_tiny(workdir: str, names, monkeypatch, capsys) -> dict:
  """Runs studies at tiny scale; returns their figures by PNG name and checks the files they wrote."""
  figures = {}
  saved = plots.save
  monkeypatch.setattr(plots, "save", lambda figure, path: figures.setdefault(os.path.basename(path), figure)
                      and saved(figure, path))
  for name in names:
    assert studies.main([f"--study={name}", f"--workdir={workdir}", "--scale=tiny"]) == 0
  printed = capsys.readouterr().out
  for name in names:
    assert f"{name}: {os.path.join(workdir, name + '.md')}" in printed
    assert json.loads(Path(os.path.join(workdir, f"{name}.json")).read_text())["study"] == name
    markdown = Path(os.path.join(workdir, f"{name}.md")).read_text()
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert images
    for image in images:
      assert os.path.getsize(os.path.join(workdir, image)) > 0, image
  return figures


def axes_texts(figure):
  """x labels, y labels and legend entries of every axis of a figure."""
  axes = figure.axes
  return ([a.get_xlabel() for a in axes], [a.get_ylabel() for a in axes],
          [[t.get_text() for t in a.get_legend().get_texts()] if a.get_legend() else [] for a in axes])


def test_resolution_studies_at_tiny_scale(tmp_path, fast_compile, monkeypatch, capsys):
  """Fig. 1 and 2 (depth), Fig. 7 (resolution) and Table VI (time) share their runs."""
  workdir = str(tmp_path)
  figures = run_tiny(workdir, ("depth", "resolution", "time"), monkeypatch, capsys)
  # Fig. 1: Models 1-2 x 20/24 px; each cell is the run's pooled UAR.
  depth = Path(os.path.join(workdir, "depth.md")).read_text()
  rows = table_rows(depth, "## Fig. 1")
  assert rows["Approaches"] == ["20 × 20", "24 × 24"]
  assert rows["Model 1 (1 conv)"] == [uar_of(workdir, "depth_1_fm4_p2_r20"), uar_of(workdir, "depth_1_fm4_p2_r24")]
  assert rows["Model 2 (1 conv + 1 rconv)"][1] == uar_of(workdir, "depth_2_fm4_p2_r24")
  x_labels, y_labels, legends = axes_texts(figures["depth.png"])
  assert x_labels == ["flow-map resolution (px per side)"] and y_labels == ["UAR (pooled LOSO)"]
  assert legends == [["Model 1 (1 conv)", "Model 2 (1 conv + 1 rconv)"]]
  # Fig. 2: one sample's CAMs, models x resolutions, titled with class names.
  grid = figures["depth_cams.png"]
  assert sum("predicted " in a.get_title() for a in grid.axes) == 4 and "true class" in grid._suptitle.get_text()
  # Fig. 7.
  rows = table_rows(Path(os.path.join(workdir, "resolution.md")).read_text(), "## Fig. 7")
  assert set(rows) == {"Approaches", "RCN", "RCN-W"}
  assert rows["RCN-W"][0] == uar_of(workdir, "rcn_w_fm4_p2_r20")
  assert axes_texts(figures["resolution.png"])[2] == [["RCN", "RCN-W"]]
  # Table VI: hours per run from the engine's timings.
  rows = table_rows(Path(os.path.join(workdir, "time.md")).read_text(), "### Feature maps: 4")
  assert rows["Approaches"] == ["fs = 20", "fs = 24"]
  results = json.loads(Path(os.path.join(workdir, "runs", "rcn_w_fm4_p2_r24", "results.json")).read_text())
  assert rows["RCN-W"][1] == studies.format_duration(studies.run_hours(results))
  assert axes_texts(figures["time.png"])[1] == ["training + test time (hours)"]


def test_setting_studies_at_tiny_scale(tmp_path, fast_compile, monkeypatch, capsys):
  """Fig. 8 (pool), Fig. 9 and Table II (features), Tables III (magnification), IV (partial), V (comparison)."""
  workdir = str(tmp_path)
  figures = run_tiny(workdir, ("pool", "features", "magnification", "partial", "comparison"), monkeypatch, capsys)
  # Fig. 8: pool sizes.
  rows = table_rows(Path(os.path.join(workdir, "pool.md")).read_text(), "## Flow-map resolution: 20 × 20")
  assert rows["Approaches"] == ["P = 1 × 1", "P = 2 × 2"] and rows["RCN"][0] == uar_of(workdir, "rcn_fm4_p1_r20")
  assert axes_texts(figures["pool.png"])[0] == ["adaptive-pool size P (P × P)"]
  # Fig. 9 and Table II: feature maps.
  features = Path(os.path.join(workdir, "features.md")).read_text()
  rows = table_rows(features, "### Flow-map Resolution: 20 × 20, Pooling Size: 2 × 2")
  assert rows["Approaches"] == ["fm = 4", "fm = 8"] and rows["RCN"][1] == uar_of(workdir, "rcn_fm8_p2_r20")
  assert axes_texts(figures["features.png"])[0] == ["feature maps (fm)"]
  # Table III: the magnified runs read magnified data and record it.
  rows = table_rows(Path(os.path.join(workdir, "magnification.md")).read_text(), "### Flow-map Resolution: 20 × 20")
  assert rows["Approaches"] == ["without MM", "with MM"]
  assert rows["RCN-W"] == [uar_of(workdir, "rcn_w_fm4_p2_r20"), uar_of(workdir, "rcn_w_fm4_p2_r20_mm")]
  config = json.loads(Path(os.path.join(workdir, "runs", "rcn_fm4_p2_r20_mm", "config.json")).read_text())
  assert config["data"]["magnification"]["alpha"] == 10.0
  with np.load(os.path.join(workdir, "runs", "rcn_fm4_p2_r20", "composite.npz")) as arrays:
    plain = arrays["flows"]
  with np.load(os.path.join(workdir, "runs", "rcn_fm4_p2_r20_mm", "composite.npz")) as arrays:
    magnified = arrays["flows"]
  assert plain.shape == magnified.shape and not np.allclose(plain, magnified)
  assert axes_texts(figures["magnification.png"])[2] == [["without MM", "with MM"]]
  # Table IV: the partial composites train on their two datasets only.
  rows = table_rows(Path(os.path.join(workdir, "partial.md")).read_text(), "### Flow-map Resolution")
  assert rows["Approaches"] == ["SMIC-CASME II", "CASME II-SAMM", "SMIC-SAMM"]
  assert rows["RCN"][2] == uar_of(workdir, "rcn_fm4_p2_r20_smic+samm")
  partial = json.loads(Path(os.path.join(workdir, "runs", "rcn_fm4_p2_r20_smic+samm", "results.json")).read_text())
  assert set(partial["per_dataset"]) == {"smic", "samm"}
  # Table V: overall and per dataset, UAR and UF1, over two seeds; the paper's numbers beside.
  comparison = Path(os.path.join(workdir, "comparison.md")).read_text()
  rows = table_rows(comparison, "## Table V")
  assert rows["Approaches"][:4] == ["MEGC2019 UAR", "MEGC2019 UF1", "SMIC UAR", "SMIC UF1"]
  name = "rcn_w_fm4_p2_r20_s0-1"
  assert rows["RCN-W (fm 4, pool 2 × 2)"][:2] == [uar_of(workdir, name), uar_of(workdir, name, metric="uf1")]
  assert rows["RCN-W (fm 4, pool 2 × 2)"][4] == uar_of(workdir, name, "casme2")
  seeds = json.loads(Path(os.path.join(workdir, "runs", name, "results.json")).read_text())["seeds"]
  assert [s["seed"] for s in seeds] == [0, 1]
  assert table_rows(comparison, "### Reported in the paper")["RCN-W (paper)"][:2] == ["0.7100", "0.7422"]
  assert [a.get_xlabel() for a in figures["comparison.png"].axes] == ["evaluated samples"] * 2

  # Resuming: finished runs are reused, not retrained, and the outputs are written again.
  stamp = os.path.getmtime(os.path.join(workdir, "runs", "rcn_fm4_p2_r20", "results.json"))
  os.remove(os.path.join(workdir, "pool.md"))
  assert studies.main(["--study=pool", f"--workdir={workdir}", "--scale=tiny"]) == 0
  assert os.path.exists(os.path.join(workdir, "pool.md"))
  assert os.path.getmtime(os.path.join(workdir, "runs", "rcn_fm4_p2_r20", "results.json")) == stamp


def test_run_configs_derive_from_the_model_configs():
  data = studies.NamedData("megc2019", "/data", "dis")
  spec = studies.RunSpec("rcn_a", 16, 5, 100, datasets=("smic", "samm"), seeds=(0, 1, 2))
  config = studies.make_run_config(spec, studies.SCALES["full"], data, training="paper")
  assert (config.model.preset, config.model.features, config.model.pool_size) == ("rcn_a", 16, 5)
  assert (config.data.name, config.data.data_dir, config.data.flow_backend) == ("megc2019", "/data", "dis")
  assert config.data.resolution == 100 and tuple(config.data.datasets) == ("smic", "samm")
  assert tuple(config.seeds) == (0, 1, 2) and config.train.learning_rate == 1e-4 and config.train.loss_threshold == 0.5
  assert spec.name == "rcn_a_fm16_p5_r100_smic+samm_s0-1-2"
  depth = studies.make_run_config(studies.RunSpec("depth_3", 16, 5, 60), studies.SCALES["tiny"], data)
  assert depth.model.preset == "depth_3" and depth.train.num_epochs == 1 and depth.protocol.max_folds == 4
  with pytest.raises(ValueError, match="model 'rcn_z'"):
    studies.make_run_config(studies.RunSpec("rcn_z", 16, 5, 60), studies.SCALES["full"], data)
  with pytest.raises(ValueError, match="no key 'train.epochs'"):
    studies.make_run_config(spec, studies.SCALES["full"], data, extra={"train.epochs": 3})
  with pytest.raises(ValueError, match="--magnified_data_dir"):
    data.config_overrides(studies.RunSpec("rcn", 16, 5, 60, magnified=True))


def test_dry_run_lists_the_full_sweeps_and_bad_names_fail(tmp_path, capsys):
  assert studies.main(["--study=time", f"--workdir={tmp_path}", "--dry_run"]) == 0
  listed = capsys.readouterr().out.splitlines()
  assert len(listed) == 5 * 4 * 2  # five models x fs 60/100/200/300 x two settings, as Table VI
  assert "rcn_f_fm64_p9_r300: to train" in listed
  assert studies.main(["--study=depth", f"--workdir={tmp_path}", "--dry_run"]) == 0
  assert len(capsys.readouterr().out.splitlines()) == 4 * 9
  # The search study: 3 searches to run, then (once they exist) their top-3; 9 random picks now.
  assert studies.main(["--study=search", f"--workdir={tmp_path}", "--dry_run"]) == 0
  listed = capsys.readouterr().out.splitlines()
  assert listed[:3] == ["search_s0: to search", "search_s1: to search", "search_s2: to search"]
  assert len(listed) == 3 + 9 and all(line.endswith(": to train") for line in listed[3:])
  assert not os.path.exists(os.path.join(tmp_path, "runs"))
  assert studies.main(["--study=fig11", f"--workdir={tmp_path}"]) == 2
  assert "--study='fig11'" in capsys.readouterr().err


def test_a_study_over_two_processes_matches_one_process(tmp_path):
  """`--coordinator_address/--num_processes/--process_id` as for launch.py: every process trains each
  run together; process 0 alone writes, and the numbers equal a one-process run on as many devices."""
  def start(workdir, devices, extra=()):
    return subprocess.Popen([sys.executable, "-m", "rcn_jax.studies", "--study=pool", "--scale=tiny",
                             f"--workdir={workdir}", "--workers=1", *extra], cwd=ROOT,
                            env=subprocess_env(devices, fast_compile=True),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

  address = f"localhost:{free_port()}"
  processes = [start(tmp_path / "one", 2)]
  processes += [start(tmp_path / "two", 1, [f"--coordinator_address={address}", "--num_processes=2",
                                            f"--process_id={i}"]) for i in range(2)]
  outputs = [p.communicate(timeout=900) for p in processes]
  for process, (_, err) in zip(processes, outputs):
    assert process.returncode == 0, err[-3000:]
  assert "pool.md" in outputs[1][0] and "pool.md" not in outputs[2][0]
  one = json.loads((tmp_path / "one" / "pool.json").read_text())
  two = json.loads((tmp_path / "two" / "pool.json").read_text())
  assert one == two
  assert (tmp_path / "one" / "pool.md").read_text() == (tmp_path / "two" / "pool.md").read_text()
  run = json.loads(next((tmp_path / "two" / "runs").glob("*/results.json")).read_text())
  assert run["execution"]["processes"] == 2 and len(run["execution"]["devices"]) == 2


def test_search_study_at_tiny_scale(tmp_path, fast_compile, monkeypatch, capsys):
  """Two search seeds (top-1 each) and two random picks of the same space, all retrained under LOSO."""
  workdir = str(tmp_path)
  figures = run_tiny(workdir, ("search",), monkeypatch, capsys)
  numbers = json.loads(Path(workdir, "search.json").read_text())
  picks = numbers["picks"]
  assert [(p["label"], p["group"]) for p in picks] == [("S0#1", "searched"), ("S1#1", "searched"),
                                                       ("R1", "random"), ("R2", "random")]
  runs = {}
  for name in os.listdir(Path(workdir, "runs")):
    if name.startswith("arch_"):
      results = json.loads(Path(workdir, "runs", name, "results.json").read_text())
      runs[(results["config"]["model"]["preset"], results["selection"]["search"])] = results
  for pick in picks:
    provenance = "once (test subjects seen)" if pick["group"] == "searched" else "none"
    results = runs[(pick["architecture"], provenance)]
    assert pick["uar"][0] == results["uar"] and pick["uf1"][0] == results["uf1"]
    if pick["group"] == "searched":
      search = json.loads(Path(workdir, "runs", f"search_s{pick['label'][1]}", "search.json").read_text())
      assert search["ranked"][0]["architecture"] == pick["architecture"]
      assert pick["search_flops"] == search["cost"]["flops"] > 0
      assert pick["search_device_seconds"] == search["cost"]["device_seconds"] > 0
    else:
      assert pick["search_flops"] == 0
  groups = table_rows(Path(workdir, "search.md").read_text(), "## Groups")
  assert set(groups) == {"group", "searched top-1", "random"}  # top-1 and top-k coincide at k = 1
  assert groups["random"][0] == "2" and groups["random"][-2:] == ["0", "0"]
  random_uars = [p["uar"][0] for p in picks if p["group"] == "random"]
  assert groups["random"][1] == plots.format_mean_std(np.mean(random_uars), np.std(random_uars))
  assert axes_texts(figures["search.png"])[1] == ["UAR (pooled LOSO)", "UF1 (pooled LOSO)"]

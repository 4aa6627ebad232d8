"""launch.py end to end on a tiny flow-map dataset on disk (a LOSO run, a search and its export, every
Table V comparison model's smoke config); its default workdir; the protocol warning."""

import csv
import json

import numpy as np
import pytest

from configs import rcn_f
from rcn_jax import config as config_lib
from rcn_jax.models import comparison
from fixtures.loso_runs import launch, tiny_overrides


def test_launch_smoke_runs_end_to_end(megc2019_dir, tmp_path):
  workdir = tmp_path / "run"
  process = launch(["--config=configs/rcn_f.py:smoke", f"--workdir={workdir}", *tiny_overrides(megc2019_dir)],
                   cache_dir=tmp_path / "xla")
  out, err = process.communicate(timeout=600)
  assert process.returncode == 0, err[-3000:]
  results = json.loads((workdir / "results.json").read_text())
  for key in ("uar", "uf1", "per_dataset", "seeds", "config", "versions", "timings"):
    assert key in results
  assert set(results["per_dataset"]) == {"smic"}
  # The demonstration preset on megc2019 data says once that it is not the paper's sample_list.
  assert "not follow the paper's protocol" in results["protocol_warning"]
  assert err.count("warning: train.preset='default'") == 1
  assert results["training"]["folds"] == 4 and results["training"]["epochs_trained_max"] == 2
  assert results["config"]["model"]["preset"] == "rcn_f"
  assert results["execution"]["strategy"] == "shard_map" and len(results["execution"]["devices"]) == 4
  assert "pooled LOSO scores" in out and "composite" in out
  assert "LOSO epochs: 100%" in err  # the progress bar
  log = (workdir / "megc2019_seed0.log").read_text().splitlines()
  assert log[0] == "smic s01"


def test_search_smoke_runs_through_launch_and_its_export_says_test_subjects_seen(megc2019_dir, tmp_path):
  """`configs/search.py:smoke` (default space, `once`), then a LOSO run of its top-1 export."""
  search_dir, run_dir = tmp_path / "search", tmp_path / "top1"
  process = launch(["--config=configs/search.py:smoke", f"--workdir={search_dir}", *tiny_overrides(megc2019_dir)],
                   cache_dir=tmp_path / "xla", devices=1, fast_compile=True)
  out, err = process.communicate(timeout=900)
  assert process.returncode == 0, err[-3000:]
  summary = json.loads((search_dir / "search.json").read_text(), parse_constant=_not_json)
  assert summary["mode"] == "once" and summary["ranked"][0]["selection"] == "once (test subjects seen)"
  assert set(summary["space"]["stems"]) == {"standard", "wide", "wide_pooled", "conv5_pool"}
  top1 = summary["ranked"][0]["config"]
  process = launch([f"--config={top1}:smoke", f"--workdir={run_dir}", *tiny_overrides(megc2019_dir)[:1],
                    "--config.train.batch_size=32", "--config.report.bootstrap_resamples=0",
                    "--config.protocol.max_folds=2"], cache_dir=tmp_path / "xla", devices=1,
                   fast_compile=True)
  out, err = process.communicate(timeout=600)
  assert process.returncode == 0, err[-3000:]
  results = json.loads((run_dir / "results.json").read_text())
  assert results["selection"]["search"] == "once (test subjects seen)"
  assert results["selection"]["search_workdir"] == str(search_dir)
  assert "architecture selection: search: once (test subjects seen)" in out


def _not_json(constant):
  raise ValueError(f"not JSON: {constant}")


def test_default_workdir_is_named_after_the_config():
  import launch as launch_module  # pylint: disable=g-import-not-at-top  (importing it defines its absl flags)
  assert launch_module.default_workdir("configs/rcn_f.py") == "runs/rcn_f"
  assert launch_module.default_workdir("configs/depth.py:depth=3,smoke") == "runs/depth_depth=3_smoke"


def test_protocol_warning_only_for_the_demo_preset_on_real_data():
  from rcn_jax import train  # pylint: disable=g-import-not-at-top
  demo, paper = rcn_f.get_config(), rcn_f.get_config("paper")
  assert train.protocol_warning(demo) is None  # the built-in data
  demo.data.name = paper.data.name = "megc2019"
  assert "8-epoch demonstration preset" in train.protocol_warning(demo)
  assert train.protocol_warning(paper) is None


@pytest.mark.parametrize("name", sorted(config_lib.COMPARISON_RECIPES))
def test_comparison_configs_train_under_smoke(name, megc2019_dir, tmp_path):
  """Every Table V comparison model at full depth and standard width, by its recipe, through launch.py."""
  workdir = tmp_path / "run"
  # The tiny build's SMIC maps, two folds; ResNet18 and DenseNet121 at 32 px (DenseNet121 takes 29
  # and more) rather than 60 for the suite's time; the others at their own 28.
  side = min(comparison.MODELS[name].resolution, 32)
  process = launch([f"--config=configs/{name}.py:smoke", f"--workdir={workdir}", "--config.data.name=megc2019",
                    f"--config.data.data_dir={megc2019_dir}", "--config.data.datasets=('smic',)",
                    f"--config.data.resolution={side}", "--config.protocol.max_folds=2",
                    "--config.report.bootstrap_resamples=20"], cache_dir=tmp_path / "xla", devices=2)
  out, err = process.communicate(timeout=900)
  assert process.returncode == 0, err[-3000:]
  results = json.loads((workdir / "results.json").read_text())
  config = results["config"]
  recipe = config_lib.COMPARISON_RECIPES[name]
  assert config["model"]["preset"] == name and config["train"]["preset"] == recipe["training"]
  assert config["model"]["features"] == (comparison.MODELS[name].features or comparison.FIXED_WIDTH_FEATURES)
  assert (config["model"]["input_order"], config["model"]["input_scale"]) == (recipe["input_order"],
                                                                              recipe["input_scale"])
  assert results["training"]["folds"] == 2 and results["training"]["epochs_trained_max"] == config_lib.SMOKE_EPOCHS
  with open(workdir / "train_loss.csv", newline="") as stream:
    losses = np.asarray([[float(v) for v in row[1:]] for row in list(csv.reader(stream))[1:]])
  assert losses.shape == (config_lib.SMOKE_EPOCHS, 2) and np.isfinite(losses).all()
  assert not np.array_equal(losses[0], losses[1])  # the models trained
  assert 0 <= results["uar"] <= 1 and set(results["per_dataset"]) == {"smic"}

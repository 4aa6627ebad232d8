"""User errors on the command line: one line `error: ...`, exit status 2, no traceback (unless asked).

Each command runs in its own process, as a user runs it. The config checks come before any data
is read: the data dir of these runs stays empty (the built-in data would otherwise be built).
"""

import os
import subprocess
import sys

import pytest

from fixtures import megc_layouts as layouts
from fixtures.loso_runs import ROOT, subprocess_env
from rcn_jax import errors


def _run(args: list[str], data_dir, timeout: int = 120) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, *args], cwd=ROOT, env=subprocess_env(2, RCN_JAX_DATA_DIR=str(data_dir)),
                        capture_output=True, text=True, timeout=timeout, check=False)


def _assert_one_line_error(process: subprocess.CompletedProcess, *fragments: str) -> str:
  lines = process.stderr.strip().splitlines()
  assert process.returncode == 2, process.stderr[-3000:]
  assert "Traceback" not in process.stderr
  assert len(lines) == 1 and lines[0].startswith("error: "), process.stderr
  for fragment in fragments:
    assert fragment in lines[0]
  return lines[0]


def _launch(tmp_path, *overrides: str, config: str = "configs/rcn_f.py:smoke") -> subprocess.CompletedProcess:
  data_dir = tmp_path / "data"
  data_dir.mkdir(exist_ok=True)
  process = _run(["launch.py", f"--config={config}", f"--workdir={tmp_path / 'run'}",
                  f"--xla_cache_dir={tmp_path / 'xla'}", *overrides], data_dir)
  assert not os.listdir(data_dir), "the data was touched before the config was checked"
  return process


def test_unknown_config_key_suggests_the_right_one(tmp_path):
  line = _assert_one_line_error(_launch(tmp_path, "--config.model.featurs=32"),
                                "--config.model.featurs", "unknown config key 'model.featurs'",
                                "did you mean 'model.features'?", "rcn_jax/config.py")
  assert "\\n" not in line and "*." not in line


def test_negative_features_is_named_before_the_data_loads(tmp_path):
  _assert_one_line_error(_launch(tmp_path, "--config.model.features=-4"), "model.features=-4")


def test_model_that_cannot_take_the_resolution_is_named(tmp_path):
  _assert_one_line_error(_launch(tmp_path, "--config.model.pool_size=0"), "model.pool_size=0")


def test_missing_megc2019_dataset_says_how_to_build_it(tmp_path):
  line = _assert_one_line_error(_launch(tmp_path, "--config.data.name=megc2019"),
                                "no megc2019 flow-map dataset", "python -m data_prep.build")
  assert "README, section Real data" in line
  readme = (ROOT / "README.md").read_text()
  assert "## Real data" in readme and "python -m data_prep.build" in readme


def test_unknown_dataset_name(tmp_path):
  _assert_one_line_error(_launch(tmp_path, "--config.data.name=casme3"), "data.name='casme3'")


def test_bad_config_argument_and_missing_config_file(tmp_path):
  _assert_one_line_error(_launch(tmp_path, config="configs/rcn_f.py:smokey"), "'smokey'")
  _assert_one_line_error(_launch(tmp_path, config="configs/rcn_x.py"), "configs/rcn_x.py", "no such file")


def test_verbosity_shows_the_traceback(tmp_path):
  process = _launch(tmp_path, "--config.model.features=-4", "--verbosity=1")
  assert process.returncode == 2
  assert "Traceback" in process.stderr
  assert "error: model.features=-4 must be >= 1" in process.stderr.splitlines()


def test_malformed_annotation_sheet_through_data_prep_build(tmp_path):
  clips = layouts.casme2_clips()
  root = tmp_path / "CASME2"
  layouts.casme2_tree(root / "Cropped", clips[:3])

  def break_header(sheet):
    sheet["D1"] = "Onset"  # the release's header says OnsetFrame

  sheet = layouts.write_casme2_sheet(root / "CASME2-coding-20140508.xlsx", clips, edit=break_header)
  process = _run(["-m", "data_prep.build", "--datasets=casme2", f"--casme2={root}",
                  f"--out={tmp_path / 'out'}", "--dry-run"], tmp_path)
  _assert_one_line_error(process, sheet.name)


def test_run_main_reports_user_errors_and_lets_bugs_through(capsys):
  def user_mistake():
    raise errors.MissingInput("runs/x/config.json: missing;\n  is runs/x a finished run folder?")

  assert errors.run_main(user_mistake) == 2
  assert capsys.readouterr().err == "error: runs/x/config.json: missing; is runs/x a finished run folder?\n"
  assert errors.run_main(lambda: 1) == 1 and errors.run_main(lambda: None) == 0

  def bug():
    raise ValueError("shapes (3,) and (4,) differ")

  with pytest.raises(ValueError, match="shapes"):
    errors.run_main(bug)


def test_bad_search_setting_is_one_line_before_the_data_loads(tmp_path):
  _assert_one_line_error(_launch(tmp_path, "--config.search.arch_learning_rate=-1", config="configs/search.py:smoke"),
                         "search.arch_learning_rate=-1")


def test_per_fold_weights_folder_that_is_missing_is_named(tmp_path):
  _assert_one_line_error(_launch(tmp_path, f"--config.init.per_fold={tmp_path / 'nowhere'}"),
                         "init.per_fold=", "not a folder")

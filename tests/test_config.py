"""Run configs: the package's builders (`rcn_jax.config`), the thin `configs/*.py` files over them,
and the studies, which build their configs from the package alone (no checkout of `configs/`)."""

import importlib
import os
import pathlib
import subprocess
import sys

import pytest
from absl import flags
from ml_collections import config_flags

from rcn_jax import config as config_lib
from rcn_jax import models

ROOT = pathlib.Path(__file__).resolve().parents[1]
MODEL_CONFIGS = ("rcn", "rcn_a", "rcn_s", "rcn_w", "rcn_c", "rcn_f", "rcn_p", "depth")
# Paper Table V: rcn_a fm64 P7, rcn_s fm16 P5, rcn_w fm32 P7, rcn_f fm32 P5; the others fm16 P5.
TABLE_V = {"rcn": (16, 5), "rcn_a": (64, 7), "rcn_s": (16, 5), "rcn_w": (32, 7), "rcn_c": (16, 5),
           "rcn_f": (32, 5), "rcn_p": (16, 5), "depth": (16, 5)}


def load(name, arg=None):
  """`configs/<name>.py`'s config (the repository root is on the test path: setup.cfg)."""
  return importlib.import_module(f"configs.{name}").get_config(arg)


@pytest.mark.parametrize("name", MODEL_CONFIGS)
@pytest.mark.parametrize("arg", [None, "smoke", "paper", "reference", "paper,smoke"])
def test_every_config_loads_and_builds_its_model(name, arg):
  config = load(name, arg)
  assert (config.model.features, config.model.pool_size) == TABLE_V[name]
  assert config.data.resolution is None  # the data's own size: an import's, 60 for built maps
  assert config.data.datasets == ("casme2", "smic", "samm")
  smoke = arg is not None and "smoke" in arg
  assert config.protocol.max_folds == (config_lib.SMOKE_FOLDS if smoke else 0)
  assert config.train.num_epochs == (config_lib.SMOKE_EPOCHS if smoke else
                                     config_lib.TRAINING_PRESETS[config.train.preset]["num_epochs"])
  models.create_model(config.model.preset, features=config.model.features, pool_size=config.model.pool_size,
                      dropout_rate=config.model.dropout_rate, reference_quirks=config.model.reference_quirks,
                      pytorch_bn=config.model.pytorch_bn, steps=config.model.steps)


def test_config_files_equal_the_package_builders():
  """A config file only names its architecture: the package builds the same config."""
  built = config_lib.make_config(preset="rcn_a", features=64, pool_size=7, arg="paper,smoke")
  assert load("rcn_a", "paper,smoke").to_dict() == built.to_dict()
  depth = config_lib.make_depth_config(features=16, pool_size=5, arg="depth=3")
  assert load("depth", "depth=3").to_dict() == depth.to_dict()
  assert depth.to_dict() == config_lib.make_config(preset="depth_3", features=16, pool_size=5, arg=None).to_dict()
  search = config_lib.make_search_config(features=16, pool_size=5, arg="mode=nested")
  assert load("search", "mode=nested").to_dict() == search.to_dict()


def test_training_presets_follow_the_protocol():
  paper = load("rcn_f", "paper").train
  assert (paper.learning_rate, paper.momentum, paper.weight_decay) == (1e-4, 0.9, 5e-4)
  assert (paper.loss_threshold, paper.num_epochs) == (0.5, 500)
  reference = load("rcn_f", "reference").train
  assert (reference.learning_rate, reference.momentum, reference.weight_decay) == (5e-4, 0.9, 0.0)
  assert (reference.batch_size, reference.loss_threshold, reference.num_epochs) == (64, 0.0, 100)
  default = load("rcn_f").train
  assert default.preset == "default"
  assert (default.learning_rate, default.momentum, default.weight_decay, default.batch_size) == (5e-4, 0.9, 0.0, 64)
  assert default.loss_threshold == 0.0  # fixed epochs, as the official script


def test_depth_config_selects_models_1_to_4():
  assert [load("depth", f"depth={d}").model.preset for d in (1, 2, 3, 4)] == [f"depth_{d}" for d in (1, 2, 3, 4)]
  assert load("depth").model.preset == "depth_1"
  assert load("depth", "depth=3,smoke").protocol.max_folds == config_lib.SMOKE_FOLDS
  with pytest.raises(ValueError, match="Models 1-4"):
    load("depth", "depth=5")


def test_search_config_options_and_learning_rate():
  default = load("search")
  assert (default.search.mode, default.search.order, default.search.mixing) == ("once", 1, "normalized")
  assert default.model.preset == "supernet" and default.train.learning_rate == config_lib.SEARCH_LEARNING_RATE
  chosen = load("search", "order=2,mode=nested,mixing=softmax,paper")
  assert (chosen.search.mode, chosen.search.order, chosen.search.mixing) == ("nested", 2, "softmax")
  assert chosen.train.learning_rate == 1e-4  # a named training preset keeps its own rate
  smoke = load("search", "smoke")
  assert (smoke.model.features, smoke.data.resolution, smoke.search.epochs) == (8, 30, 2)
  assert smoke.protocol.max_folds == config_lib.SMOKE_FOLDS
  with pytest.raises(ValueError, match="unknown option 'depth'"):
    load("search", "depth=2")


def test_bad_arguments_and_keys_are_named():
  with pytest.raises(ValueError, match="token 'fast'"):
    load("rcn_f", "fast")
  with pytest.raises(ValueError, match="unknown option 'depth'"):
    load("rcn_f", "depth=2")
  with pytest.raises(ValueError, match="two training presets"):
    load("rcn_f", "paper,reference")
  config = load("rcn_f")
  config.lock()
  with pytest.raises(AttributeError, match="nope"):
    config.model.nope = 1


@pytest.mark.parametrize("name", MODEL_CONFIGS)
def test_config_files_accept_command_line_overrides(name):
  argv = ["prog", f"--config={ROOT}/configs/{name}.py:smoke", "--config.model.features=8",
          "--config.seeds=(0,1,2)", "--config.data.datasets=('smic',)", "--config.data.data_dir=/tmp/x"]
  flag_values = flags.FlagValues()
  # Override flags are discovered from the command line when the config flag is defined.
  config_flags.DEFINE_config_file("config", None, "config", flag_values=flag_values, lock_config=True,
                                  sys_argv=argv)
  flag_values(argv)
  config = flag_values.config
  assert config.model.features == 8
  assert config.seeds == (0, 1, 2)
  assert config.data.datasets == ("smic",)
  assert config.data.data_dir == "/tmp/x"
  assert config.protocol.max_folds == config_lib.SMOKE_FOLDS


def test_studies_build_their_configs_without_the_repository_configs(monkeypatch):
  from rcn_jax import studies  # pylint: disable=g-import-not-at-top
  from rcn_jax.studies import search_study  # pylint: disable=g-import-not-at-top

  expected = load("depth", "depth=3,paper")
  expected.data.resolution = 60  # a study names its resolution; a config file follows the data's
  expected_search = load("search")
  monkeypatch.setitem(sys.modules, "configs", None)  # `import configs` fails, as outside a checkout
  data = studies.NamedData()
  config = studies.make_run_config(studies.RunSpec("depth_3", 16, 5, 60), studies.SCALES["full"], data,
                                   training="paper")
  assert config.to_dict() == expected.to_dict()
  runner = studies.Runner("unused", studies.SCALES["tiny"], data)
  # pylint: disable-next=protected-access
  search = search_study._search_config(runner, studies.RunSpec("rcn", 8, 3, 20), seed=1)
  assert (search.model.features, search.model.pool_size, search.data.resolution) == (8, 3, 20)
  assert (search.search.steps, search.search.epochs, tuple(search.seeds)) == (2, 2, (1,))
  assert search.search.arch_learning_rate == expected_search.search.arch_learning_rate


def test_studies_run_from_outside_a_checkout(tmp_path):
  """`python -m rcn_jax.studies` from another folder, with only the packages importable (as installed)."""
  site = tmp_path / "site"
  site.mkdir()
  for package in ("rcn_jax", "data_prep"):
    (site / package).symlink_to(ROOT / package)
  env = dict(os.environ, PYTHONPATH=str(site))
  process = subprocess.run([sys.executable, "-m", "rcn_jax.studies", "--study=depth", "--dry_run"], cwd=tmp_path,
                           env=env, capture_output=True, text=True, timeout=300, check=False)
  assert process.returncode == 0, process.stderr[-3000:]
  listed = process.stdout.splitlines()
  assert len(listed) == 4 * 9 and "depth_1_fm16_p5_r20: to train" in listed  # Models 1-4 x 9 resolutions
  assert "depth_4_fm16_p5_r300: to train" in listed
  probe = subprocess.run([sys.executable, "-c", "import importlib.util, rcn_jax; "
                          "print(importlib.util.find_spec('configs'), rcn_jax.__file__)"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=True)
  assert probe.stdout.split() == ["None", str(site / "rcn_jax" / "__init__.py")]

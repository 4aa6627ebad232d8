"""Every config loads with and without `smoke`, accepts overrides, pins the paper's settings."""

import importlib
import pathlib
import sys

import pytest
from absl import flags
from ml_collections import config_flags

from rcn_jax import models

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from configs import base  # noqa: E402  (configs/ lives beside the package, not inside it)

MODEL_CONFIGS = ("rcn", "rcn_a", "rcn_s", "rcn_w", "rcn_c", "rcn_f", "rcn_p", "depth")
# Paper Table V: rcn_a fm64 P7, rcn_s fm16 P5, rcn_w fm32 P7, rcn_f fm32 P5; the others fm16 P5.
TABLE_V = {"rcn": (16, 5), "rcn_a": (64, 7), "rcn_s": (16, 5), "rcn_w": (32, 7), "rcn_c": (16, 5),
           "rcn_f": (32, 5), "rcn_p": (16, 5), "depth": (16, 5)}


def load(name, arg=None):
  return importlib.import_module(f"configs.{name}").get_config(arg)


@pytest.mark.parametrize("name", MODEL_CONFIGS)
@pytest.mark.parametrize("arg", [None, "smoke", "paper", "reference", "paper,smoke"])
def test_every_config_loads_and_builds_its_model(name, arg):
  config = load(name, arg)
  assert (config.model.features, config.model.pool_size) == TABLE_V[name]
  assert config.data.resolution == 60
  assert config.data.datasets == ("casme2", "smic", "samm")
  smoke = arg is not None and "smoke" in arg
  assert config.protocol.max_folds == (base.SMOKE_FOLDS if smoke else 0)
  assert config.train.num_epochs == (base.SMOKE_EPOCHS if smoke else base.TRAINING_PRESETS[config.train.preset]["num_epochs"])
  models.create_model(config.model.preset, features=config.model.features, pool_size=config.model.pool_size,
                      dropout_rate=config.model.dropout_rate, reference_quirks=config.model.reference_quirks,
                      pytorch_bn=config.model.pytorch_bn, steps=config.model.steps)


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
  assert load("depth", "depth=3,smoke").protocol.max_folds == base.SMOKE_FOLDS
  with pytest.raises(ValueError, match="Models 1-4"):
    load("depth", "depth=5")


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
  assert config.protocol.max_folds == base.SMOKE_FOLDS

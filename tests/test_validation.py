"""`rcn_jax.validation.validate`: one check of every section at the door; the launch.py path traces
each architecture once, and the library entry points validate when called directly."""

import pytest

from configs import rcn_f, search
from fixtures.loso_runs import tiny_overrides
from rcn_jax import errors, train, validation
from rcn_jax.engine import plan


@pytest.fixture
def traces(monkeypatch):
  counted = []
  original = plan.trace_model
  monkeypatch.setattr(plan, "trace_model", lambda program, size: counted.append(size) or original(program, size))
  return counted


def test_launch_path_traces_each_architecture_once(megc2019_dir, tmp_path, traces, monkeypatch):
  import launch  # pylint: disable=g-import-not-at-top  (importing it defines its absl flags)
  argv = ["launch.py", "--config=configs/rcn_f.py:smoke", f"--workdir={tmp_path / 'run'}", "--xla_cache_dir=",
          *tiny_overrides(megc2019_dir), "--config.train.num_epochs=0", "--config.protocol.max_folds=1"]
  monkeypatch.setattr("sys.argv", argv)  # config_flags reads the config file's overrides from sys.argv
  launch.parse_flags(argv)
  launch.run(["launch.py"])
  assert traces == [(20, 20)]
  assert (tmp_path / "run" / "results.json").is_file()


def test_library_entry_validates_when_called_directly(tmp_path, traces):
  config = rcn_f.get_config("smoke")
  config.train.batch_size = 0
  with pytest.raises(errors.UserError, match="train.batch_size=0"):
    train.train_and_evaluate(config, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("key, value, message", [
    ("arch_learning_rate", -1.0, "search.arch_learning_rate=-1.0 must be positive"),
    ("mode", "twice", "search.mode='twice'"),
    ("val_fraction", 1.5, "search.val_fraction=1.5"),
    ("mixing", "max", "search.mixing='max'"),
    ("epochs", 0, "search.epochs=0"),
])
def test_search_settings_are_user_errors(key, value, message):
  config = search.get_config("smoke")
  config.search[key] = value
  with pytest.raises(errors.UserError, match=message.replace("(", r"\(").replace(".", r"\.")):
    validation.validate(config)


def test_input_convention_and_init_are_checked(tmp_path):
  config = rcn_f.get_config("smoke")
  config.model.input_order = "bgra"
  with pytest.raises(errors.UserError, match="model.input_order='bgra'"):
    validation.validate(config)
  config = rcn_f.get_config("smoke")
  config.init.weights = str(tmp_path / "missing.npz")
  with pytest.raises(errors.UserError, match="init.weights=.*missing.npz"):
    validation.validate(config)

"""The Table V comparison models: standard sizes, the engine's calling convention, their configs and summary rows."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rcn_jax import config as config_lib
from rcn_jax import errors, models
from rcn_jax.engine import plan
from rcn_jax.models import comparison, densenet, resnet, summary

KEYS = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
# torchvision's resnet18 (11,689,512) and densenet121 (7,978,856) with a 3-class head; STSTNet's
# published 1,683; OFF-ApexNet and Dual-Inception from the architectures in their module docstrings
# (2.66 M and 6.45 M in the table of the Off-TANet project's README, an independent implementation).
PARAMETERS = {"ststnet": 1683, "off_apexnet": 2_664_475, "dual_inception": 6_449_867,
              "resnet18": 11_689_512 - 513_000 + 1_539, "densenet121": 7_978_856 - 1_025_000 + 3_075}


def test_summary_lists_parameters_and_flops_of_every_comparison_model():
  rows = {r["preset"]: r for r in summary.comparison_rows()}
  assert {name: r["parameters"] for name, r in rows.items()} == PARAMETERS
  # STSTNet by hand: three 3x3x3 convs on 30x30 outputs (16 channels) and a 400 x 3 classifier.
  assert rows["ststnet"]["flops"] == 2 * (30 * 30 * 16 * 27 + 400 * 3)
  assert rows["resnet18"]["flops"] / 1e6 == pytest.approx(284.6, rel=0.01)  # 60x60 input
  assert "| densenet121 | DenseNet121 | 32 | 60 | 6,956,931 |" in summary.format_comparison_table(rows.values())


# The calling convention does not depend on depth: ResNet18's and DenseNet121's modules at one
# block per stage, narrow (they train at full depth in `tests/test_launch.py` and the table5 study).
SHALLOW = {"resnet18": resnet.ResNet((1, 1, 1, 1), 4), "densenet121": densenet.DenseNet((1, 1, 1, 1), 4)}


@pytest.mark.parametrize("name", sorted(comparison.MODELS))
def test_models_train_as_the_engine_calls_them(name, fast_compile):
  """`train=` with a dropout RNG and a sample `mask`; eval is deterministic; masked samples stay out of BN."""
  model = SHALLOW.get(name) or models.create_model(name, features=4, pool_size=1)
  size = min(comparison.MODELS[name].resolution, 32)
  x = jax.random.uniform(jax.random.key(2), (4, size, size, 3))
  variables = jax.jit(lambda: model.init(KEYS, x, train=False))()
  mask = jnp.asarray([True, True, True, False])
  apply = jax.jit(lambda key, inputs: model.apply(variables, inputs, train=True, mask=mask, rngs={"dropout": key},
                                                  mutable=["batch_stats"])[0])
  logits = apply(jax.random.key(3), x)
  assert logits.shape == (4, 3) and bool(jnp.isfinite(logits).all())
  moved = x.at[3].set(5.0)  # the masked sample changes: nothing else may
  np.testing.assert_allclose(apply(jax.random.key(3), moved)[:3], logits[:3], rtol=1e-5, atol=1e-6)
  # Dropout draws from the `dropout` collection; the others have none, as their authors' code.
  assert np.allclose(apply(jax.random.key(4), x), logits) == (name not in ("ststnet", "off_apexnet"))
  evaluate = jax.jit(lambda inputs: model.apply(variables, inputs, train=False))
  np.testing.assert_array_equal(evaluate(x), evaluate(x))


def test_dual_inception_is_its_authors_keras_network():
  """Widths 6 and 16 per branch, Glorot-uniform kernels and zero biases (Keras' defaults), no dropout."""
  model = models.create_model("dual_inception", features=16, pool_size=1)
  params = jax.jit(lambda: model.init(KEYS, jnp.zeros((1, 28, 28, 3))))()["params"]
  module = params["horizontal_inception2"]
  assert module["b3_5x5"]["kernel"].shape == (5, 5, 16, 16) and module["b1_1x1"]["kernel"].shape == (1, 1, 24, 16)
  assert params["fc"]["kernel"].shape == (2 * 7 * 7 * 64, 1024)
  assert all(not np.any(leaf) for path, leaf in jax.tree_util.tree_leaves_with_path(params) if "bias" in str(path))
  fan_in, fan_out = params["fc"]["kernel"].shape
  limit = np.sqrt(6 / (fan_in + fan_out))
  kernel = np.asarray(params["fc"]["kernel"])
  assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.99 * limit  # uniform to the Glorot bound


def test_densenet121_names_the_smallest_input_it_takes():
  config = importlib.import_module("configs.densenet121").get_config()
  with pytest.raises(errors.UserError, match=r"cannot take inputs of 28x28 px \(the smallest it takes is 29x29"):
    plan.check_model(config, (28, 28))
  plan.check_model(config, (29, 29))


def test_bad_settings_are_named():
  with pytest.raises(errors.UserError, match="model.steps=2"):
    models.create_model("ststnet", features=16, pool_size=1, steps=2)
  with pytest.raises(errors.UserError, match="ststnet"):
    models.create_model("stst", features=16, pool_size=1)
  with pytest.raises(errors.UserError, match="STSTNet only"):
    models.from_torch_state_dict("resnet18", {}, features=64, pool_size=1)


@pytest.mark.parametrize("name", sorted(config_lib.COMPARISON_RECIPES))
def test_configs_carry_their_recipe_and_input_convention(name):
  recipe = config_lib.COMPARISON_RECIPES[name]
  config = importlib.import_module(f"configs.{name}").get_config()
  assert config.model.preset == name and config.train.preset == recipe["training"]
  assert config.data.resolution == comparison.MODELS[name].resolution
  assert config.model.features == (comparison.MODELS[name].features or comparison.FIXED_WIDTH_FEATURES)
  assert (config.model.input_order, config.model.input_scale) == (recipe["input_order"], recipe["input_scale"])
  assert config.train.num_epochs == config_lib.TRAINING_PRESETS[recipe["training"]]["num_epochs"]
  smoke = importlib.import_module(f"configs.{name}").get_config("smoke")
  assert (smoke.protocol.max_folds, smoke.train.num_epochs) == (config_lib.SMOKE_FOLDS, config_lib.SMOKE_EPOCHS)
  assert smoke.train.preset == recipe["training"] and smoke.parallel.steps_per_call == 1
  assert config.parallel.steps_per_call == recipe["steps_per_call"]
  assert importlib.import_module(f"configs.{name}").get_config("paper").train.preset == "paper"


def test_ststnet_recipe_is_the_published_one():
  config = importlib.import_module("configs.ststnet").get_config()
  train = config.train
  assert (train.optimizer, train.learning_rate, train.batch_size, train.num_epochs) == ("adam", 5e-5, 256, 800)
  assert (train.shuffle, train.loss_threshold, train.weight_decay) == (False, 0.0, 0.0)
  assert (config.model.input_order, config.model.input_scale, config.data.resolution) == ("bgr", 255.0, 28)

"""What a run trains, from its config and data: the programs, the folds, their slots and the executors.

`plan_groups(config, composite)` is the one place a config becomes executors: one `Plan` per
architecture (a single one, or one per group of folds of a per-fold selection, `rcn_jax.selection`),
the protocol's folds computed once. `rcn_jax.train` trains them; loading a trained run rebuilds a
group's program (`create_program`) and restores its checkpoint into `strategies.abstract_state`.
A model's keys depend on its seed and fold only (`model_keys`), so every layout, strategy and
device count trains the same models.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any

import jax
import ml_collections
import numpy as np

from rcn_jax import errors, folds, models, sample_list, selection, transform
from rcn_jax.data import Composite
from rcn_jax.engine import initial, strategies
from rcn_jax.engine.program import Data, EpochSettings, ModelProgram, SlotTables, make_optimizer


INPUT_ORDERS = ("rgb", "bgr")


def create_program(config: ml_collections.ConfigDict, max_train_size: int) -> ModelProgram:
  """The model, optimiser and epoch settings a config describes.

  Args:
    config: a run config (`model`, `train`, `parallel.steps_per_call`).
    max_train_size: the largest fold's training samples; sets the steps of every epoch.

  Returns:
    The per-model program.
  """
  module = models.create_model(
      config.model.preset, features=config.model.features, pool_size=config.model.pool_size,
      num_classes=len(sample_list.CLASS_NAMES), dropout_rate=config.model.dropout_rate,
      reference_quirks=config.model.reference_quirks, pytorch_bn=config.model.pytorch_bn,
      steps=config.model.steps)
  train = config.train
  settings = EpochSettings(
      batch_size=train.batch_size, steps_per_epoch=max(math.ceil(max_train_size / train.batch_size), 1),
      max_epochs=max(train.num_epochs, 1),  # a history entry even for num_epochs=0 (orbax saves no empty array)
      steps_per_call=config.parallel.steps_per_call, shuffle=train.shuffle)
  optimizer = make_optimizer(train.learning_rate, train.momentum, train.weight_decay, train.optimizer)
  return ModelProgram(module, optimizer, settings, config.model.input_order, float(config.model.input_scale))


def check_model(config: ml_collections.ConfigDict, size: tuple[int, int]) -> None:
  """Builds each configured architecture and traces it on one input of `size`, without compiling.

  Raises a UserError naming the `model.*` key of a model that cannot be built or take the input.
  """
  model = config.model
  if model.pool_size < 1:
    raise errors.UserError(f"model.pool_size={model.pool_size} must be >= 1")
  if not 0 <= model.dropout_rate < 1:
    raise errors.UserError(f"model.dropout_rate={model.dropout_rate} must be in [0, 1)")
  if model.steps is not None and model.steps < 1:
    raise errors.UserError(f"model.steps={model.steps} must be >= 1 (or None for the layer's default)")
  if model.input_order not in INPUT_ORDERS:
    raise errors.UserError(f"model.input_order={model.input_order!r}: expected one of {INPUT_ORDERS}")
  if not (math.isfinite(model.input_scale) and model.input_scale > 0):
    raise errors.UserError(f"model.input_scale={model.input_scale} must be finite and positive")
  selection.provenance(config)
  for architecture in sorted({model.preset, *selection.fold_architectures(config).values()}):
    architecture_config = copy.deepcopy(config)
    with architecture_config.unlocked():
      architecture_config.model.preset = architecture
    program = create_program(architecture_config, max_train_size=config.train.batch_size)
    try:
      trace_model(program, size)
    except (TypeError, ValueError) as error:
      if isinstance(error, errors.UserError):
        raise
      smallest = smallest_input(program, size[0] + 1)
      hint = (f"the smallest it takes is {smallest}x{smallest} px (data.resolution={smallest})" if smallest
              else f"it takes no square input up to {transform.MAX_RESOLUTION} px")
      raise errors.UserError(f"model.preset={architecture!r} with model.features={model.features}, "
                             f"model.pool_size={model.pool_size} cannot take inputs of {size[0]}x{size[1]} px "
                             f"({hint}): {errors.one_line(error)}") from error


def _traces(program: ModelProgram, side: int) -> bool:
  try:
    trace_model(program, (side, side))
  except (TypeError, ValueError):
    return False
  return True


def smallest_input(program: ModelProgram, low: int) -> int | None:
  """The smallest square side >= `low` (up to the largest resolution) that the model takes, or None.

  A model that takes a side takes every larger one (convolutions and pools only shrink), so a
  bisection finds it in a few abstract traces.
  """
  high = transform.MAX_RESOLUTION
  if low > high or not _traces(program, high):
    return None
  while low < high:
    middle = (low + high) // 2
    low, high = (low, middle) if _traces(program, middle) else (middle + 1, high)
  return low


def trace_model(program: ModelProgram, size: tuple[int, int]) -> Any:
  """The abstract variables of `program`'s model on one input of `size` (traced, not compiled)."""
  return jax.eval_shape(program.module.init, jax.random.PRNGKey(0), jax.ShapeDtypeStruct((1, *size, 3), np.float32))


def model_keys(layout: folds.ModelLayout) -> tuple[np.ndarray, np.ndarray]:
  """`[slots, 2]` initialisation and training keys; a model's keys depend on its seed and fold only."""
  init_keys, train_keys = [], []
  for slot in range(layout.num_slots):
    if slot < layout.num_models:
      seed_key = jax.random.PRNGKey(layout.seed_of_slot[slot])
      key = jax.random.fold_in(seed_key, layout.folds[layout.fold_of_slot[slot]].stable_id)
    else:
      key = jax.random.PRNGKey(0)
    init_key, train_key = jax.random.split(key)
    init_keys.append(np.asarray(init_key))
    train_keys.append(np.asarray(train_key))
  return np.stack(init_keys), np.stack(train_keys)


def protocol_folds(config: ml_collections.ConfigDict, composite: Composite) -> list[folds.Fold]:
  """The folds of `config.protocol` on `composite` (the first `protocol.max_folds`, 0: all)."""
  return folds.select_folds(folds.make_folds(composite.subjects, composite.datasets, config.protocol.name),
                            config.protocol.max_folds)


@dataclasses.dataclass(frozen=True)
class Plan:
  """What one program trains: its architecture, folds, their layout on the devices and the executor.

  Attributes:
    architecture: the model preset of every slot.
    folds: the folds trained.
    layout: which (fold, seed) each slot trains.
    executor: runs every slot.
    init_keys: `[slots, 2]` initialisation keys.
    start_variables: per slot, imported `{params, batch_stats}` to start from (`init.*`), or None.
    test_indices: `[slots, T]` int32 each slot's test samples (padded).
    test_valid: `[slots, T]` bool, which entries of `test_indices` are real.
    execution: how it runs (strategy, devices, models per call, models, slots), for the results.
  """
  architecture: str
  folds: list[folds.Fold]
  layout: folds.ModelLayout
  executor: strategies.Executor
  init_keys: np.ndarray
  start_variables: list[Any] | None
  test_indices: np.ndarray
  test_valid: np.ndarray
  execution: dict[str, Any]

  def init_state(self):
    """The stacked initial state: each slot from its imported weights or its key."""
    return self.executor.init(self.init_keys, self.start_variables)

  def model_names(self) -> list[tuple[str, int]]:
    """(fold, seed) of each real slot, in slot order."""
    layout = self.layout
    return [(layout.folds[layout.fold_of_slot[m]].name, int(layout.seed_of_slot[m]))
            for m in range(layout.num_models)]

  def layout_group(self) -> dict[str, Any]:
    """This program's entry of the run's `layout.json` (`rcn_jax.run_folder.write_layout`)."""
    return {"architecture": self.architecture, "slots": self.layout.num_slots, "models": self.model_names()}


def plan_run(config: ml_collections.ConfigDict, composite: Composite, devices: list[jax.Device] | None = None,
             fold_names: tuple[str, ...] | None = None, run_folds: list[folds.Fold] | None = None) -> Plan:
  """The folds, layout and executor of one program of a config's run on `composite` (over `devices`,
  default all).

  `run_folds` are the protocol's folds when already computed; `fold_names` keeps only those folds
  (one architecture's folds of a per-fold run, `rcn_jax.selection`).
  """
  run_folds = protocol_folds(config, composite) if run_folds is None else run_folds
  if fold_names is not None:
    run_folds = [fold for fold in run_folds if fold.name in fold_names]
  devices = jax.devices() if devices is None else devices
  strategy = strategies.resolve_strategy(config.parallel.strategy, devices)
  per_call = strategies.resolve_models_per_call(strategy, config.parallel.models_per_call)
  layout = folds.layout_models(run_folds, tuple(config.seeds),
                               strategies.slot_multiple(strategy, len(devices), per_call))
  train_mask = layout.train_mask(len(composite))
  test_indices, test_valid = layout.test_table()
  folds.check_disjoint(train_mask, test_indices, test_valid)
  program = create_program(config, max(len(f.train_indices) for f in run_folds))
  init_keys, train_keys = model_keys(layout)
  executor = strategies.make_executor(
      strategy, program, devices, tables=SlotTables(train_keys, train_mask, test_indices),
      data=Data(composite.flows, composite.labels), models_per_call=per_call,
      loss_threshold=config.train.loss_threshold or float("-inf"))
  expected = executor.abstract_state().variables
  one_model = jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape[1:], leaf.dtype), expected)
  start = initial.start_variables(config, layout, one_model)
  execution = {"strategy": strategy, "devices": [str(d) for d in executor.mesh.devices.flat],
               "models_per_call": executor.models_per_call, "models": layout.num_models,
               "slots": layout.num_slots}
  return Plan(config.model.preset, run_folds, layout, executor, init_keys, start, test_indices, test_valid,
              execution)


def plan_groups(config: ml_collections.ConfigDict, composite: Composite,
                devices: list[jax.Device] | None = None) -> list[Plan]:
  """One `Plan` per architecture of the run: the whole run, or each group of a per-fold selection's folds.

  The protocol's folds are computed once; each group's config names its architecture as `model.preset`.
  """
  run_folds = protocol_folds(config, composite)
  return [plan_run(group_config, composite, devices, fold_names, run_folds)
          for group_config, fold_names in selection.group_runs(config, [fold.name for fold in run_folds])]

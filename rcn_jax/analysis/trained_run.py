"""A finished run's fold models, restored from the newest checkpoint of its run folder.

`load_run(workdir)` reads the run's `layout.json` (`rcn_jax.run_folder`: each model's fold, seed,
architecture and checkpoint folder), rebuilds each program group's per-model program from
`config.json` and restores its checkpoint into the engine's abstract state of its slots
(`strategies.abstract_state`) on one device, so the same slots come back whatever devices trained the run. `TrainedRun`
scores inputs through the engine's `ModelProgram.predict`; `rcn_jax.analysis.predict`, `cam`, `report` and the studies use it.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

from rcn_jax import errors, run_folder, sample_list
from rcn_jax.engine import checkpoint, plan, strategies
from rcn_jax.engine.program import ModelProgram, model_input


@dataclasses.dataclass(frozen=True)
class FoldModel:
  """One trained model of a run.

  Attributes:
    slot: its index over the run's models (`layout.json` order: group by group).
    fold: the fold name, `dataset/subject` (LOSO) or `dataset` (leave-one-dataset-out).
    seed: the run seed it was trained with.
    architecture: its model preset (one per program group; several in a per-fold run).
  """
  slot: int
  fold: str
  seed: int
  architecture: str = ""


@dataclasses.dataclass(frozen=True)
class TrainedRun:
  """A finished run's fold models, restored from the last checkpoint of each of its program groups.

  Attributes:
    workdir: the run folder.
    config: the run's `config.json`.
    results: the run's `results.json`.
    programs: the engine's per-model program of each group (one architecture each).
    variables: per group, `{params, batch_stats}` with a leading axis over the group's models.
    models: the fold models, in layout order.
    group_of: per model, `(group, index within the group)`.
    epoch: the checkpoint's epoch count (of the first group; all groups train the same epochs).
  """
  workdir: str
  config: Mapping[str, Any]
  results: Mapping[str, Any]
  programs: tuple[ModelProgram, ...]
  variables: tuple[Mapping[str, Any], ...]
  models: tuple[FoldModel, ...]
  group_of: tuple[tuple[int, int], ...]
  epoch: int

  def program_of(self, index: int) -> ModelProgram:
    """The program (module, input convention) of model `index`."""
    return self.programs[self.group_of[index][0]]

  def module_of(self, index: int) -> Any:
    """The flax module of model `index`."""
    return self.program_of(index).module

  def model_input(self, index: int, inputs: np.ndarray) -> np.ndarray:
    """Inputs `[N, r, r, 3]` (u, v, strain in [0, 1]) as model `index` reads them (`model.input_*`)."""
    program = self.program_of(index)
    return model_input(np.asarray(inputs, np.float32), program.input_order, program.input_scale)

  @property
  def resolution(self) -> int:
    return int(self.config["data"]["resolution"])

  @property
  def class_names(self) -> tuple[str, ...]:
    return tuple(self.results.get("class_names", sample_list.CLASS_NAMES))

  @property
  def flow_backend(self) -> str:
    return str(self.config["data"]["flow_backend"])

  @property
  def magnification(self) -> Mapping[str, Any] | None:
    """The magnification the run's data was made with (recorded by `rcn_jax.studies`), or None."""
    return self.config["data"].get("magnification")

  def model_variables(self, index: int) -> dict[str, Any]:
    """The variables of model `index` (no leading axis)."""
    group, position = self.group_of[index]
    return jax.tree.map(lambda leaf: leaf[position], dict(self.variables[group]))

  def select(self, held_out: str | None = None, seeds: Sequence[int] | None = None) -> list[int]:
    """Indices of the models whose fold tested `held_out` (all folds when None), of `seeds`."""
    chosen = [i for i, m in enumerate(self.models)
              if (held_out is None or m.fold == held_out) and (seeds is None or m.seed in seeds)]
    if not chosen:
      folds = sorted({m.fold for m in self.models})
      raise errors.UserError(f"{self.workdir}: no fold model held out {held_out!r} (seeds {seeds}); "
                             f"the run's folds are {folds[:8]}{' ...' if len(folds) > 8 else ''}")
    return chosen

  def probabilities(self, inputs: np.ndarray, indices: Sequence[int] | None = None) -> np.ndarray:
    """Softmax outputs `[M, N, C]` of models `indices` (all when None) on inputs `[N, r, r, 3]`."""
    inputs = np.asarray(inputs, np.float32)
    expected = (self.resolution, self.resolution, 3)
    if inputs.ndim != 4 or inputs.shape[1:] != expected:
      raise errors.UserError(f"inputs have shape {inputs.shape}; the run's models take [N, {expected[0]}, "
                             f"{expected[1]}, 3]")
    every_input = np.arange(len(inputs), dtype=np.int32)
    indices = range(len(self.models)) if indices is None else indices
    return np.stack([np.asarray(_predict_program(self.program_of(i))(self.model_variables(i), inputs, every_input))
                     for i in indices])


@functools.lru_cache(maxsize=None)
def _predict_program(program: ModelProgram):
  return jax.jit(program.predict)


def load_run(workdir: str | os.PathLike) -> TrainedRun:
  """Restores every fold model of a finished run from the newest checkpoint of each program group.

  Args:
    workdir: a run folder written by `rcn_jax.train.train_and_evaluate` (`launch.py`); its
      `layout.json` says which fold, seed and architecture each model is and where its checkpoint is.

  Returns:
    The run; missing files or a checkpoint that does not fit the config raise naming the file.
  """
  workdir = Path(workdir)
  config_dict = run_folder.read_config(workdir)
  results = run_folder.read_results(workdir)
  layout = run_folder.read_layout(workdir)
  resolution = int(config_dict["data"]["resolution"])
  one_device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  programs, variables, epochs = [], [], []
  for group in layout["groups"]:
    group_config = ml_collections.ConfigDict(config_dict)
    with group_config.unlocked():
      group_config.model.preset = group["architecture"]
    program = plan.create_program(group_config, 1)
    directory = workdir / group["checkpoints"]
    store = checkpoint.Checkpoints(str(directory))
    try:
      if store.latest_epoch() is None:
        raise errors.MissingInput(f"{directory}: no checkpoint")
      epoch, state = store.restore(strategies.abstract_state(program, group["slots"], (resolution, resolution, 3),
                                                             one_device))
    finally:
      store.close()
    count = sum(1 for model in layout["models"] if model["group"] == len(programs))
    programs.append(program)
    variables.append(jax.tree.map(lambda leaf, count=count: leaf[:count], state.variables))
    epochs.append(int(epoch))
  models, group_of = [], []
  for index, model in enumerate(layout["models"]):
    models.append(FoldModel(index, model["fold"], int(model["seed"]), model["architecture"]))
    group_of.append((model["group"], model["slot"]))
  return TrainedRun(str(workdir), config_dict, results, tuple(programs), tuple(variables), tuple(models),
                    tuple(group_of), epochs[0])

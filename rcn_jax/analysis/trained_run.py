"""A finished run's fold models, restored from the newest checkpoint of its run folder.

`load_run(workdir)` rebuilds the run's per-model program from its `config.json` and restores the
checkpoint into the engine's abstract state of its slots (`strategies.abstract_state`) on one
device, so the same slots come back whatever devices trained the run. `TrainedRun` scores inputs through the
engine's `ModelProgram.predict`; `rcn_jax.analysis.predict`, `cam`, `report` and the studies use it.
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
from rcn_jax.engine import checkpoint, plan, steps, strategies


@dataclasses.dataclass(frozen=True)
class FoldModel:
  """One trained model of a run.

  Attributes:
    slot: its index on the run's stacked model axis.
    fold: the fold name, `dataset/subject` (LOSO) or `dataset` (leave-one-dataset-out).
    seed: the run seed it was trained with.
  """
  slot: int
  fold: str
  seed: int


@dataclasses.dataclass(frozen=True)
class TrainedRun:
  """A finished run's fold models, restored from its last checkpoint.

  Attributes:
    workdir: the run folder.
    config: the run's `config.json`.
    results: the run's `results.json`.
    program: the engine's per-model program every fold model shares.
    variables: `{params, batch_stats}` with a leading `[models]` axis, in `models` order.
    models: the fold models.
    epoch: the checkpoint's epoch count.
  """
  workdir: str
  config: Mapping[str, Any]
  results: Mapping[str, Any]
  program: steps.ModelProgram
  variables: Mapping[str, Any]
  models: tuple[FoldModel, ...]
  epoch: int

  @property
  def module(self) -> Any:
    """The flax module of every fold model."""
    return self.program.module

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
    return jax.tree.map(lambda leaf: leaf[index], dict(self.variables))

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
    predict = _predict_program(self.program)
    every_input = np.arange(len(inputs), dtype=np.int32)
    indices = range(len(self.models)) if indices is None else indices
    return np.stack([np.asarray(predict(self.model_variables(i), inputs, every_input)) for i in indices])


@functools.lru_cache(maxsize=None)
def _predict_program(program: steps.ModelProgram):
  return jax.jit(program.predict)


def load_run(workdir: str | os.PathLike) -> TrainedRun:
  """Restores every fold model of a finished run from its newest checkpoint.

  Args:
    workdir: a run folder written by `rcn_jax.train.train_and_evaluate` (`launch.py`).

  Returns:
    The run; missing files or a checkpoint that does not fit the config raise naming the file.
  """
  workdir = Path(workdir)
  config_dict = run_folder.read_config(workdir)
  results = run_folder.read_results(workdir)
  names = run_folder.read_model_names(workdir)
  slots = int(results.get("execution", {}).get("slots", len(names)))
  if slots < len(names):
    raise errors.UserError(f"{workdir / run_folder.RESULTS}: {slots} slots for {len(names)} models")
  program = plan.create_program(ml_collections.ConfigDict(config_dict), 1)
  resolution = int(config_dict["data"]["resolution"])
  one_device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  store = checkpoint.Checkpoints(str(workdir / run_folder.CHECKPOINTS))
  try:
    if store.latest_epoch() is None:
      raise errors.MissingInput(f"{workdir / run_folder.CHECKPOINTS}: no checkpoint")
    epoch, state = store.restore(strategies.abstract_state(program, slots, (resolution, resolution, 3), one_device))
  finally:
    store.close()
  count = len(names)
  variables = {"params": jax.tree.map(lambda leaf: leaf[:count], state["params"]),
               "batch_stats": jax.tree.map(lambda leaf: leaf[:count], state["batch_stats"])}
  models = tuple(FoldModel(slot, fold, seed) for slot, (fold, seed) in enumerate(names))
  return TrainedRun(str(workdir), config_dict, results, program, variables, models, int(epoch))

"""LOSO training and evaluation of every fold and seed as one stacked batch of models.

`train_and_evaluate(config, workdir)` is the library entry point behind `launch.py`: it loads the
composite, builds the folds, trains all (fold, seed) models together with the strategy chosen for
the backend (see `rcn_jax.engine.strategies`), checkpoints every epoch, tests each model on its held-out
subject only, and writes the pooled results. Re-running it on the same workdir resumes from the
last checkpoint; a finished workdir is reported, not retrained. In a multi-process run (see
`rcn_jax.engine.multihost`) every process calls it alike on a shared workdir; process 0 writes the files.
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import sys
import time
from typing import Any

import jax
import ml_collections
import numpy as np
import tqdm

from rcn_jax import errors, folds, run_folder, sample_list, scoring, selection
from rcn_jax.engine import checkpoint, multihost, plan, steps, strategies
from rcn_jax.data import Composite, check_configured, load_configured

# Config sections that do not change what is trained: a started run may go on, or a finished one be
# re-reported, with other values of them.
REPORT_ONLY = ("report", "checkpoint")


def check_config(config: ml_collections.ConfigDict, composite: Composite | None = None) -> None:
  """Checks every setting that can be checked without the samples; a UserError names the key.

  Runs before any data is read or program compiled: the model is built and traced abstractly at
  the input size, and a `megc2019` dataset must be there. With `composite` (data given in memory)
  the `data` section is not checked and the model is traced at the composite's size.
  """
  train = config.train
  for key in ("batch_size", "num_epochs"):
    if train[key] < 1:
      raise errors.UserError(f"train.{key}={train[key]} must be >= 1")
  steps.check_optimizer(train.learning_rate, train.momentum, train.weight_decay, train.optimizer)
  if not math.isfinite(train.loss_threshold) or train.loss_threshold < 0:
    raise errors.UserError(f"train.loss_threshold={train.loss_threshold} must be finite and >= 0")
  if not config.seeds or len(set(config.seeds)) != len(config.seeds):
    raise errors.UserError(f"seeds={tuple(config.seeds)} must name at least one seed, each once")
  if config.protocol.name not in folds.PROTOCOLS:
    raise errors.UserError(f"protocol.name={config.protocol.name!r}: expected one of {folds.PROTOCOLS}")
  if config.protocol.name == "lodo" and len(config.data.datasets) < 2:
    raise errors.UserError(f"protocol.name='lodo' needs at least two data.datasets, got {tuple(config.data.datasets)}")
  if config.protocol.max_folds < 0:
    raise errors.UserError(f"protocol.max_folds={config.protocol.max_folds} must be >= 0")
  for key in ("models_per_call", "steps_per_call"):
    if config.parallel[key] < 0:
      raise errors.UserError(f"parallel.{key}={config.parallel[key]} must be >= 0")
  strategies.resolve_strategy(config.parallel.strategy, jax.devices())
  if not 0 < config.report.confidence < 1:
    raise errors.UserError(f"report.confidence={config.report.confidence} must be in (0, 1)")
  if config.report.bootstrap_resamples < 0:
    raise errors.UserError(f"report.bootstrap_resamples={config.report.bootstrap_resamples} must be >= 0")
  if config.checkpoint.every_epochs < 1:
    raise errors.UserError(f"checkpoint.every_epochs={config.checkpoint.every_epochs} must be >= 1")
  if config.checkpoint.max_to_keep < 1:
    raise errors.UserError(f"checkpoint.max_to_keep={config.checkpoint.max_to_keep} must be >= 1")
  if composite is None:
    check_configured(config.data)
    plan.check_model(config, (config.data.resolution, config.data.resolution))
  else:
    plan.check_model(config, composite.flows.shape[1:3])


def protocol_warning(config: ml_collections.ConfigDict) -> str | None:
  """Why a run on real data cannot be compared with the paper's numbers, or None.

  The default preset is a demonstration on the built-in data (8 epochs of the official optimiser);
  on `megc2019` its scores are not the paper's protocol.
  """
  if config.data.name != "megc2019" or config.train.preset != "default":
    return None
  return (f"train.preset='default' is the {config.train.num_epochs}-epoch demonstration preset: these "
          "megc2019 scores do not follow the paper's protocol and cannot be compared with its tables; "
          "use the config argument :paper (Sec. V-A) or :reference (the official script)")


def _versions() -> dict[str, str]:
  import flax, jaxlib, optax, orbax.checkpoint  # pylint: disable=g-import-not-at-top,multiple-imports
  import rcn_jax  # pylint: disable=g-import-not-at-top
  return {"python": platform.python_version(), "rcn_jax": rcn_jax.__version__, "jax": jax.__version__,
          "jaxlib": jaxlib.__version__, "flax": flax.__version__, "optax": optax.__version__,
          "orbax_checkpoint": orbax.checkpoint.__version__, "numpy": np.__version__}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       composite: Composite | None = None) -> dict[str, Any]:
  """Trains every (fold, seed) model of the config's protocol and writes the pooled results.

  Args:
    config: a run config (see `rcn_jax/config.py`).
    workdir: output folder; holds checkpoints, so a killed run resumes from its last epoch.
    composite: the data to use instead of `config.data` (tests, notebooks).

  Returns:
    The content of `results.json`.
  """
  started = time.perf_counter()
  check_config(config, composite)
  os.makedirs(workdir, exist_ok=True)
  config_dict = scoring.config_dict(config)
  finished = run_folder.finished_results(workdir, config_dict)
  if finished is not None:
    if multihost.is_main():
      print(scoring.summary_table(finished))
    return finished
  # Before the data: a workdir of another run is refused at once.
  run_folder.claim(workdir, config_dict, ignore=REPORT_ONLY)
  if composite is None:
    composite = load_configured(config.data)
  else:
    composite = composite.select(config.data.datasets)
  timings = {"data_s": time.perf_counter() - started}
  warning = protocol_warning(config)
  if warning and multihost.is_main():
    print(f"warning: {warning}", file=sys.stderr)
  # One program per architecture: a single one, or one per group of a per-fold run (rcn_jax.selection).
  groups = selection.group_runs(config, [fold.name for fold in plan.protocol_folds(config, composite)])
  parts = [_run_group(group_config, composite, fold_names,
                      workdir if fold_names is None else run_folder.architecture_dir(workdir, index))
           for index, (group_config, fold_names) in enumerate(groups)]
  for key in ("train_s", "first_epoch_s", "predict_s"):
    timings[key] = sum(part.timings[key] for part in parts)
  predictions = _merged_predictions([part.predictions for part in parts], config.seeds)
  history = np.concatenate([part.history for part in parts])
  epochs_trained = np.concatenate([part.epochs_trained for part in parts])
  names = [name for part in parts for name in part.names]
  results = scoring.summarize(composite, predictions, sample_list.CLASS_NAMES,
                                bootstrap_resamples=config.report.bootstrap_resamples,
                                confidence=config.report.confidence)
  results["training"] = _training_summary(config, history, epochs_trained, sum(p.num_folds for p in parts))
  results["selection"] = {**selection.provenance(config),
                          "architectures": {part.architecture: list(part.fold_names) for part in parts}}
  execution = parts[0].execution
  if len(parts) > 1:
    execution = {**execution, "models": sum(p.execution["models"] for p in parts),
                 "slots": sum(p.execution["slots"] for p in parts), "programs": len(parts)}
  results["execution"] = {**execution, "processes": jax.process_count(),
                          "resumed_from_epoch": min(p.start_epoch for p in parts)}
  results["protocol_warning"] = warning
  results["config"] = config_dict
  results["versions"] = _versions()
  timings["total_s"] = time.perf_counter() - started
  results["timings"] = timings
  if multihost.is_main():
    run_folder.write_outputs(workdir, composite, names, predictions, results, history)
    print(scoring.summary_table(results))
  multihost.barrier("results_written")
  return results


@dataclasses.dataclass(frozen=True)
class _GroupRun:
  """What training one program (one architecture, some or all folds) produced."""
  architecture: str
  fold_names: tuple[str, ...]
  num_folds: int
  names: list[str]
  predictions: scoring.Predictions
  history: np.ndarray
  epochs_trained: np.ndarray
  execution: dict[str, Any]
  start_epoch: int
  timings: dict[str, float]


def _run_group(config, composite, fold_names, workdir) -> _GroupRun:
  """Trains and tests the folds of one program, checkpointing in `workdir`."""
  run = plan.plan_run(config, composite, fold_names=fold_names)
  checkpoints = checkpoint.Checkpoints(os.path.join(workdir, run_folder.CHECKPOINTS), config.checkpoint.max_to_keep)
  if checkpoints.latest_epoch() is not None:
    start_epoch, state = checkpoints.restore(run.executor.abstract_state())
  else:
    start_epoch, state = 0, run.executor.init(run.init_keys)
  if multihost.is_main():
    print(f"{config.model.preset}: {len(run.folds)} folds x {len(run.layout.seeds)} seed(s) = "
          f"{run.layout.num_models} models, strategy {run.execution['strategy']} on "
          f"{len(run.execution['devices'])} device(s) of {jax.process_count()} process(es); "
          f"{len(composite)} samples from {composite.source}", file=sys.stderr)
  timings = {}
  state, timings["train_s"], timings["first_epoch_s"] = _train(
      config, run.executor, checkpoints, state, start_epoch, run.layout, workdir)
  checkpoints.close()
  predict_started = time.perf_counter()
  probabilities = run.executor.predict(state)
  timings["predict_s"] = time.perf_counter() - predict_started
  history, epochs_trained = (table[:run.layout.num_models]
                             for table in multihost.to_host((state["loss_history"], state["epochs_trained"])))
  layout = run.layout
  names = [f"{layout.folds[layout.fold_of_slot[m]].name}@{layout.seed_of_slot[m]}" for m in range(layout.num_models)]
  return _GroupRun(config.model.preset, tuple(f.name for f in run.folds), len(run.folds), names,
                   scoring.gather_predictions(layout, probabilities, run.test_indices, run.test_valid),
                   history, epochs_trained, run.execution, start_epoch, timings)


def _merged_predictions(parts: list[scoring.Predictions], seeds) -> scoring.Predictions:
  """The rows of every group in `Predictions`' order: seed-major, samples ascending within a seed."""
  if len(parts) == 1:
    return parts[0]
  merged = {name: np.concatenate([getattr(p, name) for p in parts])
            for name in ("seeds", "folds", "sample_indices", "probabilities")}
  order = np.lexsort((merged["sample_indices"], [list(seeds).index(s) for s in merged["seeds"]]))
  return scoring.Predictions(**{name: values[order] for name, values in merged.items()})


def _training_summary(config, history, epochs_trained, num_folds) -> dict[str, Any]:
  last_losses = [h[e - 1] for h, e in zip(history, epochs_trained) if e]
  return {"preset": config.train.preset, "protocol": config.protocol.name, "folds": num_folds,
          "epochs_trained_min": int(epochs_trained.min()), "epochs_trained_max": int(epochs_trained.max()),
          "epochs_trained_mean": float(epochs_trained.mean()),
          "final_train_loss_mean": float(np.mean(last_losses)) if last_losses else float("nan")}


def _train(config, executor, checkpoints, state, start_epoch, layout, workdir):
  """The epoch loop: progress bar, TensorBoard scalars, checkpoints, early end once all stopped.

  Every process runs the loop (checkpoints are collective); process 0 shows and logs it.

  Returns:
    (state, seconds in the loop, seconds of its first epoch, compilation included).
  """
  num_epochs = config.train.num_epochs
  real = slice(0, layout.num_models)
  active = multihost.to_host(state["active"])[real]
  started = time.perf_counter()
  main = multihost.is_main()
  scalars = run_folder.EpochScalars(workdir, write=main)
  bar = tqdm.tqdm(total=num_epochs, initial=start_epoch, desc="LOSO epochs", unit="epoch", file=sys.stderr,
                  disable=not main)
  epoch = start_epoch
  first_epoch_s = 0.0
  try:
    with jax.transfer_guard_host_to_device("disallow"):
      while epoch < num_epochs and active.any():
        epoch_started = time.perf_counter()
        state = executor.train_epoch(state, epoch)
        history, now_active = multihost.to_host((state["loss_history"], state["active"]))
        losses = history[real, epoch]
        was_active, active = active, now_active[real]
        epoch += 1
        if epoch % config.checkpoint.every_epochs == 0 or epoch == num_epochs or not active.any():
          checkpoints.save(epoch, state)
        trained = losses[was_active]
        scalars.add(epoch, trained, int(active.sum()), time.perf_counter() - epoch_started)
        if epoch == start_epoch + 1:
          first_epoch_s = time.perf_counter() - epoch_started  # compilation included
        bar.set_postfix(loss=f"{trained.mean():.4f}", active=f"{int(active.sum())}/{layout.num_models}")
        bar.update(1)
  finally:
    bar.close()
    scalars.close()
  return state, time.perf_counter() - started, first_epoch_s

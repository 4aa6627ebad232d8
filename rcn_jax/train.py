"""LOSO training and evaluation of every fold and seed as one stacked batch of models.

`train_and_evaluate(config, workdir)` is the library entry point behind `launch.py`: it validates the
config (unless the command did), loads the composite, plans the run (`rcn_jax.engine.plan`: one
program per architecture, the folds and their slots), writes the run's `layout.json`, trains all
(fold, seed) models of each program together with the strategy chosen for the backend (see
`rcn_jax.engine.strategies`), checkpoints every epoch, tests each model on its held-out subject
only, and writes the pooled results. Re-running it on the same workdir resumes from the
last checkpoint; a finished workdir is reported, not retrained. In a multi-process run (see
`rcn_jax.engine.multihost`) every process calls it alike on a shared workdir; process 0 writes the files.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import sys
import time
from typing import Any

import jax
import ml_collections
import numpy as np
import tqdm

from rcn_jax import errors, run_folder, sample_list, scoring, selection, validation
from rcn_jax.engine import checkpoint, multihost, plan
from rcn_jax.data import Composite, load_configured

# Config sections that do not change what is trained: a started run may go on, or a finished one be
# re-reported, with other values of them.
REPORT_ONLY = ("report", "checkpoint")


def protocol_warning(config: ml_collections.ConfigDict) -> str | None:
  """Why a run on real data cannot be compared with the paper's numbers, or None.

  The default preset is a demonstration on the built-in data (8 epochs of the official optimiser);
  on `megc2019` its scores are not the paper's protocol.
  """
  if config.data.name != "megc2019" or config.train.preset != "default" or not config.train.num_epochs:
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


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, composite: Composite | None = None, *,
                       validated: bool = False) -> dict[str, Any]:
  """Trains every (fold, seed) model of the config's protocol and writes the pooled results.

  Args:
    config: a run config (see `rcn_jax/config.py`).
    workdir: output folder; holds checkpoints, so a killed run resumes from its last epoch.
    composite: the data to use instead of `config.data` (tests, notebooks).
    validated: the caller ran `rcn_jax.validation.validate(config, composite)` already (the commands do).

  Returns:
    The content of `results.json`.
  """
  started = time.perf_counter()
  if not validated:
    validation.validate(config, composite)
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
  plans = plan.plan_groups(config, composite)
  _lay_out(workdir, plans)
  parts = [_run_group(config, group, composite, os.path.join(workdir, run_folder.group_folder(index, len(plans))))
           for index, group in enumerate(plans)]
  for key in ("train_s", "first_epoch_s", "predict_s"):
    timings[key] = sum(part.timings[key] for part in parts)
  predictions = scoring.merge_predictions([part.predictions for part in parts], config.seeds)
  history = np.concatenate([part.history for part in parts])
  epochs_trained = np.concatenate([part.epochs_trained for part in parts])
  results = scoring.summarize(composite, predictions, sample_list.CLASS_NAMES,
                              bootstrap_resamples=config.report.bootstrap_resamples,
                              confidence=config.report.confidence)
  results["training"] = _training_summary(config, history, epochs_trained, sum(len(p.folds) for p in plans))
  results["selection"] = {**selection.provenance(config),
                          "architectures": {p.architecture: [f.name for f in p.folds] for p in plans}}
  execution = plans[0].execution
  if len(plans) > 1:
    execution = {**execution, "models": sum(p.execution["models"] for p in plans),
                 "slots": sum(p.execution["slots"] for p in plans), "programs": len(plans)}
  results["execution"] = {**execution, "processes": jax.process_count(),
                          "resumed_from_epoch": min(part.start_epoch for part in parts)}
  results["protocol_warning"] = warning
  results["config"] = config_dict
  results["versions"] = _versions()
  timings["total_s"] = time.perf_counter() - started
  results["timings"] = timings
  if multihost.is_main():
    names = [f"{fold}@{seed}" for group in plans for fold, seed in group.model_names()]
    run_folder.write_outputs(workdir, composite, names, predictions, results, history)
    print(scoring.summary_table(results))
  multihost.barrier("results_written")
  return results


def _lay_out(workdir: str, plans: list[plan.Plan]) -> None:
  """Writes the run's `layout.json`; a resumed run must lay its models out as it did (it reads the file)."""
  groups = [group.layout_group() for group in plans]
  if os.path.exists(os.path.join(workdir, run_folder.LAYOUT)):
    stored = run_folder.read_layout(workdir)
    planned = [(g["architecture"], g["slots"], [list(m) for m in g["models"]]) for g in groups]
    held = [(g["architecture"], g["slots"], [[m["fold"], m["seed"]] for m in stored["models"] if m["group"] == i])
            for i, g in enumerate(stored["groups"])]
    if planned != held:
      raise errors.UserError(f"{os.path.join(workdir, run_folder.LAYOUT)}: the run was laid out over other "
                             "slots (another device count or strategy); resume it as it started, or use a new --workdir")
  if multihost.is_main():
    run_folder.write_layout(workdir, groups)
  multihost.barrier("layout_written")


@dataclasses.dataclass(frozen=True)
class _GroupRun:
  """What training one program (one architecture, some or all folds) produced."""
  predictions: scoring.Predictions
  history: np.ndarray
  epochs_trained: np.ndarray
  start_epoch: int
  timings: dict[str, float]


def _run_group(config, group: plan.Plan, composite, folder) -> _GroupRun:
  """Trains and tests the folds of one program, checkpointing in `folder`."""
  checkpoints = checkpoint.Checkpoints(os.path.join(folder, run_folder.CHECKPOINTS), config.checkpoint.max_to_keep)
  if checkpoints.latest_epoch() is not None:
    start_epoch, state = checkpoints.restore(group.executor.abstract_state())
  else:
    start_epoch, state = 0, group.init_state()
  if multihost.is_main():
    print(f"{group.architecture}: {len(group.folds)} folds x {len(group.layout.seeds)} seed(s) = "
          f"{group.layout.num_models} models, strategy {group.execution['strategy']} on "
          f"{len(group.execution['devices'])} device(s) of {jax.process_count()} process(es); "
          f"{len(composite)} samples from {composite.source}", file=sys.stderr)
  timings = {}
  state, timings["train_s"], timings["first_epoch_s"] = _train(
      config, group.executor, checkpoints, state, start_epoch, group.layout, folder)
  if checkpoints.latest_epoch() is None:  # no epoch to train (train.num_epochs=0): keep the initial weights
    checkpoints.save(start_epoch, state)
  checkpoints.close()
  predict_started = time.perf_counter()
  probabilities = group.executor.predict(state)
  timings["predict_s"] = time.perf_counter() - predict_started
  history, epochs_trained = (table[:group.layout.num_models]
                             for table in multihost.to_host((state.loss_history, state.epochs_trained)))
  return _GroupRun(scoring.gather_predictions(group.layout, probabilities, group.test_indices, group.test_valid),
                   history, epochs_trained, start_epoch, timings)


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
  active = multihost.to_host(state.active)[real]
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
        history, now_active = multihost.to_host((state.loss_history, state.active))
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

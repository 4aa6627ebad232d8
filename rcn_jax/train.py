"""LOSO training and evaluation of every fold and seed as one stacked batch of models.

`train_and_evaluate(config, workdir)` is the library entry point behind `launch.py`: it loads the
composite, builds the folds, trains all (fold, seed) models together with the strategy chosen for
the backend (see `rcn_jax.strategies`), checkpoints every epoch, tests each model on its held-out
subject only, and writes the pooled results. Re-running it on the same workdir resumes from the
last checkpoint; a finished workdir is reported, not retrained. In a multi-process run (see
`rcn_jax.multihost`) every process calls it alike on a shared workdir; process 0 writes the files.
"""

from __future__ import annotations

import dataclasses
import json
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
from tensorboardX import SummaryWriter

from rcn_jax import checkpoint, folds, models, multihost, protocol, reporting, steps, strategies
from rcn_jax.data import Composite, load_configured

RESULTS = "results.json"
CONFIG = "config.json"
CHECKPOINTS = "checkpoints"
# Config sections that do not change what is trained: a started run may go on, or a finished one be
# re-reported, with other values of them.
REPORT_ONLY = ("report", "checkpoint")


def create_program(config: ml_collections.ConfigDict, max_train_size: int) -> steps.ModelProgram:
  """The model, optimiser and epoch settings a config describes."""
  module = models.create_model(
      config.model.preset, features=config.model.features, pool_size=config.model.pool_size,
      num_classes=len(protocol.CLASS_NAMES), dropout_rate=config.model.dropout_rate,
      reference_quirks=config.model.reference_quirks, pytorch_bn=config.model.pytorch_bn,
      steps=config.model.steps)
  train = config.train
  settings = steps.EpochSettings(
      batch_size=train.batch_size, steps_per_epoch=math.ceil(max_train_size / train.batch_size),
      max_epochs=train.num_epochs,
      steps_per_call=config.parallel.steps_per_call)
  optimizer = steps.make_optimizer(train.learning_rate, train.momentum, train.weight_decay)
  return steps.ModelProgram(module, optimizer, settings)


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


def check_config(config: ml_collections.ConfigDict) -> None:
  """Raises a ValueError naming the key of an impossible setting."""
  train = config.train
  for key in ("batch_size", "num_epochs"):
    if train[key] < 1:
      raise ValueError(f"train.{key}={train[key]} must be >= 1")
  if train.learning_rate <= 0:
    raise ValueError(f"train.learning_rate={train.learning_rate} must be positive")
  if not config.seeds:
    raise ValueError("seeds must name at least one seed")
  if config.protocol.name not in folds.PROTOCOLS:
    raise ValueError(f"protocol.name={config.protocol.name!r}: expected one of {folds.PROTOCOLS}")
  if config.parallel.strategy not in strategies.STRATEGIES:
    raise ValueError(f"parallel.strategy={config.parallel.strategy!r}: expected one of {strategies.STRATEGIES}")
  for key in ("models_per_call", "steps_per_call"):
    if config.parallel[key] < 0:
      raise ValueError(f"parallel.{key}={config.parallel[key]} must be >= 0")
  if not 0 < config.report.confidence < 1:
    raise ValueError(f"report.confidence={config.report.confidence} must be in (0, 1)")
  if config.report.bootstrap_resamples < 0:
    raise ValueError(f"report.bootstrap_resamples={config.report.bootstrap_resamples} must be >= 0")
  if config.checkpoint.every_epochs < 1:
    raise ValueError(f"checkpoint.every_epochs={config.checkpoint.every_epochs} must be >= 1")


def _claim_workdir(workdir: str, config_dict: dict[str, Any]) -> None:
  """Refuses a workdir that holds checkpoints or results of a different training config."""
  path = os.path.join(workdir, CONFIG)
  checkpoints = os.path.join(workdir, CHECKPOINTS)
  started = os.path.exists(os.path.join(workdir, RESULTS)) or (os.path.isdir(checkpoints) and bool(os.listdir(checkpoints)))
  if started and os.path.exists(path):
    with open(path) as stream:
      stored = json.load(stream)
    differing = sorted(k for k in set(stored) | set(config_dict)
                       if k not in REPORT_ONLY and stored.get(k) != config_dict.get(k))
    if differing:
      raise ValueError(f"{workdir} holds a run of another config (sections {differing} differ); "
                       "use a new --workdir")
  if multihost.is_main():
    reporting.write_json(path, config_dict)
  multihost.barrier("claim_workdir")


def _finished_results(workdir: str, config_dict: dict[str, Any]) -> dict[str, Any] | None:
  path = os.path.join(workdir, RESULTS)
  if not os.path.exists(path):
    return None
  with open(path) as stream:
    results = json.load(stream)
  return results if results.get("config") == config_dict else None


def _versions() -> dict[str, str]:
  import flax, jaxlib, optax, orbax.checkpoint  # pylint: disable=g-import-not-at-top,multiple-imports
  import rcn_jax  # pylint: disable=g-import-not-at-top
  return {"python": platform.python_version(), "rcn_jax": rcn_jax.__version__, "jax": jax.__version__,
          "jaxlib": jaxlib.__version__, "flax": flax.__version__, "optax": optax.__version__,
          "orbax_checkpoint": orbax.checkpoint.__version__, "numpy": np.__version__}


@dataclasses.dataclass(frozen=True)
class Plan:
  """What a run trains: the folds, their layout on the devices and the executor that runs them."""
  folds: list[folds.Fold]
  layout: folds.ModelLayout
  executor: strategies.Executor
  init_keys: np.ndarray
  test_indices: np.ndarray
  test_valid: np.ndarray
  execution: dict[str, Any]


def plan_run(config: ml_collections.ConfigDict, composite: Composite,
             devices: list[jax.Device] | None = None) -> Plan:
  """The folds, layout and executor of a config's run on `composite` (over `devices`, default all)."""
  run_folds = folds.select_folds(folds.make_folds(composite.subjects, composite.datasets, config.protocol.name),
                                 config.protocol.max_folds)
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
      strategy, program, devices, models_per_call=per_call, stem_windows=config.parallel.stem_windows,
      inputs=composite.flows, labels=composite.labels, keys=train_keys, train_mask=train_mask, test_indices=test_indices,
      loss_threshold=config.train.loss_threshold or float("-inf"))
  execution = {"strategy": strategy, "devices": [str(d) for d in executor.mesh.devices.flat],
               "models_per_call": executor.models_per_call, "stem_patches": executor.program.stem_patches,
               "models": layout.num_models, "slots": layout.num_slots}
  return Plan(run_folds, layout, executor, init_keys, test_indices, test_valid, execution)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       composite: Composite | None = None) -> dict[str, Any]:
  """Trains every (fold, seed) model of the config's protocol and writes the pooled results.

  Args:
    config: a run config (see `configs/base.py`).
    workdir: output folder; holds checkpoints, so a killed run resumes from its last epoch.
    composite: the data to use instead of `config.data` (tests, notebooks).

  Returns:
    The content of `results.json`.
  """
  started = time.perf_counter()
  check_config(config)
  os.makedirs(workdir, exist_ok=True)
  config_dict = reporting.config_dict(config)
  finished = _finished_results(workdir, config_dict)
  if finished is not None:
    if multihost.is_main():
      print(reporting.summary_table(finished))
    return finished
  _claim_workdir(workdir, config_dict)  # before the data: a workdir of another run is refused at once
  if composite is None:
    composite = load_configured(config.data)
  else:
    composite = composite.select(config.data.datasets)
  timings = {"data_s": time.perf_counter() - started}
  plan = plan_run(config, composite)

  checkpoints = checkpoint.Checkpoints(os.path.join(workdir, CHECKPOINTS), config.checkpoint.max_to_keep)
  if checkpoints.latest_epoch() is not None:
    start_epoch, state = checkpoints.restore(plan.executor.abstract_state())
  else:
    start_epoch, state = 0, plan.executor.init(plan.init_keys)
  if multihost.is_main():
    print(f"{len(plan.folds)} folds x {len(plan.layout.seeds)} seed(s) = {plan.layout.num_models} models, "
          f"strategy {plan.execution['strategy']} on {len(plan.execution['devices'])} device(s) of "
          f"{jax.process_count()} process(es); {len(composite)} samples from {composite.source}", file=sys.stderr)
  state, timings["train_s"], timings["first_epoch_s"] = _train(
      config, plan.executor, checkpoints, state, start_epoch, plan.layout, workdir)
  checkpoints.close()
  predict_started = time.perf_counter()
  probabilities = plan.executor.predict(state)
  timings["predict_s"] = time.perf_counter() - predict_started

  history, epochs_trained = (table[:plan.layout.num_models]
                             for table in multihost.to_host((state["loss_history"], state["epochs_trained"])))
  predictions = reporting.gather_predictions(plan.layout, probabilities, plan.test_indices, plan.test_valid)
  results = reporting.summarize(composite, predictions, protocol.CLASS_NAMES,
                                bootstrap_resamples=config.report.bootstrap_resamples,
                                confidence=config.report.confidence)
  results["training"] = _training_summary(config, history, epochs_trained, len(plan.folds))
  results["execution"] = {**plan.execution, "processes": jax.process_count(), "resumed_from_epoch": start_epoch}
  results["config"] = config_dict
  results["versions"] = _versions()
  timings["total_s"] = time.perf_counter() - started
  results["timings"] = timings
  if multihost.is_main():
    _write_outputs(workdir, composite, plan.layout, predictions, results, history)
    reporting.write_json(os.path.join(workdir, RESULTS), results)
    print(reporting.summary_table(results))
  multihost.barrier("results_written")
  return results


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
  writer = SummaryWriter(os.path.join(workdir, "tensorboard"), write_to_disk=main)
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
        writer.add_scalar("train/loss_mean", float(trained.mean()), epoch)
        writer.add_scalar("train/loss_max", float(trained.max()), epoch)
        writer.add_scalar("train/active_models", int(active.sum()), epoch)
        writer.add_scalar("time/epoch_s", time.perf_counter() - epoch_started, epoch)
        if epoch == start_epoch + 1:
          first_epoch_s = time.perf_counter() - epoch_started  # compilation included
        bar.set_postfix(loss=f"{trained.mean():.4f}", active=f"{int(active.sum())}/{layout.num_models}")
        bar.update(1)
  finally:
    bar.close()
    writer.close()
  return state, time.perf_counter() - started, first_epoch_s


def _write_outputs(workdir, composite, layout, predictions, results, history):
  reporting.write_predictions_csv(os.path.join(workdir, "predictions.csv"), composite, predictions,
                                  protocol.CLASS_NAMES)
  reporting.write_megc_logs(workdir, composite, predictions)
  reporting.write_confusion_pngs(workdir, results)
  names = [f"{layout.folds[layout.fold_of_slot[m]].name}@{layout.seed_of_slot[m]}" for m in range(layout.num_models)]
  reporting.write_train_losses(workdir, names, history)
  with SummaryWriter(os.path.join(workdir, "tensorboard")) as writer:
    writer.add_scalar("test/uar", results["uar"], 0)
    writer.add_scalar("test/uf1", results["uf1"], 0)
    for dataset, entry in results.get("per_dataset", {}).items():
      writer.add_scalar(f"test/{dataset}_uar", entry["uar"], 0)
      writer.add_scalar(f"test/{dataset}_uf1", entry["uf1"], 0)

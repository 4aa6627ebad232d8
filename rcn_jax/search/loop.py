"""Bilevel architecture search over the module-integration space, from a config to launchable configs.

`run_search(config, workdir)` is the entry point behind `launch.py` for configs with a `search`
section (`configs/search.py`). It builds the search tasks (`rcn_jax.search.splits`: subject-disjoint
training/validation subjects, never a test subject), alternates architecture and weight steps
(`rcn_jax.search.bilevel`) on each task with a progress bar, and writes to the workdir:
`architecture_weights.{json,csv,png}` (the weight table, mean and std over tasks),
`architecture_weights_history.png`, `search.json` (tasks, subjects, losses, ranking, ties, timings,
cost in device-seconds and FLOPs; strict JSON), `architectures/top<i>.py`, the top-k discrete
architectures as configs `launch.py` trains, and for `mode=nested` `architectures/per_fold.py`, a
LOSO config in which each fold trains the top-1 of its own search (`rcn_jax.selection`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm

from rcn_jax import folds, run_folder, scoring, selection
from rcn_jax.engine.program import cut_batches
from rcn_jax import validation
from rcn_jax.models import search_space
from rcn_jax.search import bilevel, export, splits
from rcn_jax.search.settings import LoopSettings, make_program, make_space

SEARCH_JSON = "search.json"


@dataclasses.dataclass(frozen=True)
class TaskResult:
  """What one task's search produced.

  Attributes:
    task: the task.
    alphas: `{decision: [candidates]}` final architecture weights.
    weights: `{decision: [candidates]}` final normalised mixing weights.
    history: `{decision: [epochs + 1, candidates]}` mixing weights, initial first.
    train_loss: `[epochs]` mean training loss of each epoch's weight steps.
    val_loss: `[epochs]` mean validation loss of each epoch's architecture steps (NaN in warm-up).
    used_indices: `{'train', 'val'}` -> every composite index a step has read, ascending.
  """
  task: splits.SearchTask
  alphas: dict[str, np.ndarray]
  weights: dict[str, np.ndarray]
  history: dict[str, np.ndarray]
  train_loss: np.ndarray
  val_loss: np.ndarray
  used_indices: dict[str, np.ndarray]


def host_epoch_batches(indices: np.ndarray, batch_size: int,
                       rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
  """A shuffled pass over `indices` in `(indices [B], valid [B])` batches, on the host; the last is padded.

  Unlike the training program's `program.epoch_batches` (traced, a fixed number of steps for every
  fold), the search draws its batches in NumPy from its own generator, as many as `indices` need,
  and checks each for test samples before it reaches the device; both cut with `cut_batches`.
  """
  order = rng.permutation(indices)
  indices, valid = cut_batches(order, len(order), batch_size, -(-len(order) // batch_size))
  return list(zip(indices, valid))


def _checked_batch(inputs, labels, indices, valid, forbidden, task_name):
  """The arrays of a batch, gathered on the device, after asserting that none of its samples is a test sample.

  `inputs` and `labels` are already on the device: only the indices travel per step.
  """
  leaked = np.intersect1d(indices[valid], forbidden)
  if leaked.size:
    raise AssertionError(f"task {task_name}: a search batch holds test samples {leaked[:5].tolist()}")
  at = jnp.asarray(indices)
  return inputs[at], labels[at], jnp.asarray(valid)


def run_task(program: bilevel.BilevelProgram, task: splits.SearchTask, inputs: np.ndarray,
             labels: np.ndarray, settings: LoopSettings, key: jax.Array, alphas: Mapping[str, jax.Array],
             bar: tqdm.tqdm | None = None) -> TaskResult:
  """Searches one task: per training batch an architecture step (after warm-up), then a weight step.

  Args:
    program: the supernet and its optimisers.
    task: training, validation and (forbidden) test indices.
    inputs: `[N, H, W, 3]` every sample of the composite.
    labels: `[N]` int.
    settings: the schedule.
    key: the task's key (initialisation and dropout).
    alphas: initial architecture weights.
    bar: progress bar advanced once per training batch.

  Returns:
    The result.
  """
  init, weight_step, arch_step, weights_of = program.compiled
  init_key, dropout_root = jax.random.split(key)
  inputs, labels = jnp.asarray(inputs), jnp.asarray(labels, jnp.int32)  # no copy when already on the device
  state = init(init_key, inputs[:1], alphas)
  # A third entry: `make_tasks` drew the validation subjects from `[seed, stable_id]`.
  rng = np.random.default_rng([task.seed, task.stable_id, 1])
  val_queue: list[tuple[np.ndarray, np.ndarray]] = []
  used = {role: np.zeros(labels.shape[0], bool) for role in ("train", "val")}
  history = [weights_of(state["alphas"])]
  train_loss, val_loss = [], []
  step = 0
  for epoch in range(settings.epochs):
    sums = {"train": [], "val": []}
    for indices, valid in host_epoch_batches(task.train_indices, settings.batch_size, rng):
      batch = _checked_batch(inputs, labels, indices, valid, task.test_indices, task.name)
      used["train"][indices[valid]] = True
      dropout_key = jax.random.fold_in(dropout_root, step)
      if epoch >= settings.warmup_epochs:
        if not val_queue:
          val_queue = host_epoch_batches(task.val_indices, settings.batch_size, rng)
        val_indices, val_valid = val_queue.pop(0)
        val_batch = _checked_batch(inputs, labels, val_indices, val_valid, task.test_indices, task.name)
        used["val"][val_indices[val_valid]] = True
        state, value = arch_step(state, batch, val_batch, dropout_key)
        sums["val"].append((value, val_valid.sum()))
      state, value = weight_step(state, batch, dropout_key)
      sums["train"].append((value, valid.sum()))
      step += 1
      if bar is not None:
        bar.update(1)
    train_loss.append(_weighted_mean(sums["train"]))
    val_loss.append(_weighted_mean(sums["val"]))
    history.append(weights_of(state["alphas"]))
    if bar is not None:
      bar.set_postfix(task=task.name, loss=f"{train_loss[-1]:.3f}", val=f"{val_loss[-1]:.3f}")
  history = jax.device_get(history)
  return TaskResult(
      task=task, alphas={k: np.asarray(v) for k, v in jax.device_get(state["alphas"]).items()},
      weights={k: np.asarray(v) for k, v in history[-1].items()},
      history={k: np.stack([h[k] for h in history]) for k in history[0]},
      train_loss=np.asarray(train_loss), val_loss=np.asarray(val_loss),
      used_indices={role: np.flatnonzero(mask) for role, mask in used.items()})


def _weighted_mean(pairs) -> float:
  if not pairs:
    return float("nan")
  values = np.asarray(jax.device_get([v for v, _ in pairs]), np.float64)
  counts = np.asarray([c for _, c in pairs], np.float64)
  return float((values * counts).sum() / counts.sum())


def _note(mode: str, num_folds: int) -> str:
  if mode == "once":
    return ("Searched once on a held-out subject split of every subject: a LOSO evaluation of this "
            "architecture tests on subjects the search has seen (training or validation).")
  return (f"Searched nested in {num_folds} fold(s), each without its test subject, but ranked on the mean "
          "weights over the folds, so every test subject weighed in; architectures/per_fold.py trains "
          "each fold with its own fold's choice instead (the honest protocol).")


def step_flops(program: bilevel.BilevelProgram, example: jax.Array, batch_size: int,
               alphas: Mapping[str, jax.Array]) -> dict[str, float]:
  """XLA's FLOP count of one weight step and one architecture step on `[batch_size, H, W, 3]` batches."""
  init, weight_step, arch_step, _ = program.compiled
  key = jax.ShapeDtypeStruct((2,), jnp.uint32)
  state = jax.eval_shape(init, key, jax.ShapeDtypeStruct((1,) + example.shape[1:], example.dtype), alphas)
  batch = (jax.ShapeDtypeStruct((batch_size,) + example.shape[1:], example.dtype),
           jax.ShapeDtypeStruct((batch_size,), jnp.int32), jax.ShapeDtypeStruct((batch_size,), jnp.bool_))

  def flops(lowered) -> float:
    analysis = lowered.cost_analysis()
    analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
    return float((analysis or {}).get("flops", float("nan")))

  return {"weight_step": flops(weight_step.lower(state, batch, key)),
          "arch_step": flops(arch_step.lower(state, batch, batch, key))}


def run_search(config: ml_collections.ConfigDict, workdir: str, composite=None, *,
               validated: bool = False) -> dict[str, Any]:
  """Runs the architecture search a config describes and writes its outputs.

  Args:
    config: a search config (`configs/search.py`): `model`, `data`, `protocol`, `train` (the
      weight optimiser and batch size), `seeds` and `search`.
    workdir: output folder.
    composite: the data to use instead of `config.data` (tests, notebooks).
    validated: the caller ran `rcn_jax.validation.validate(config, composite)` already (the commands do).

  Returns:
    The content of `search.json`.
  """
  from rcn_jax import data as data_lib  # pylint: disable=g-import-not-at-top

  started = time.perf_counter()
  if not validated:
    validation.validate(config, composite)
  search = config.search
  space = make_space(search)
  program = make_program(config, space)
  settings = LoopSettings(search.epochs, search.warmup_epochs, config.train.batch_size)
  if composite is None:
    composite = data_lib.load_configured(config.data)
  else:
    composite = composite.select(config.data.datasets)
  tasks = splits.make_tasks(composite.subjects, composite.datasets, mode=search.mode,
                                   protocol=config.protocol.name, max_folds=config.protocol.max_folds,
                                   seeds=tuple(config.seeds), val_fraction=search.val_fraction)
  data_s = time.perf_counter() - started
  os.makedirs(workdir, exist_ok=True)
  alphas = bilevel.init_alphas(space.decisions(), search.mixing)
  steps_per_epoch = [-(-len(t.train_indices) // settings.batch_size) for t in tasks]
  print(f"search ({search.mode}, order {search.order}, {search.mixing}): {len(tasks)} task(s), "
        f"{len(space.decisions())} decisions, {len(composite)} samples from {composite.source}", file=sys.stderr)
  bar = tqdm.tqdm(total=settings.epochs * sum(steps_per_epoch), desc="search", unit="step", file=sys.stderr)
  results = []
  inputs, labels = jnp.asarray(composite.flows), jnp.asarray(composite.labels, jnp.int32)  # on the device once
  try:
    for task in tasks:
      key = jax.random.fold_in(jax.random.PRNGKey(task.seed), task.stable_id)
      results.append(run_task(program, task, inputs, labels, settings, key, alphas, bar))
  finally:
    bar.close()
  search_s = time.perf_counter() - started - data_s
  summary = _export(config, workdir, space, composite, results)
  summary["timings"] = {"data_s": data_s, "search_s": search_s, "total_s": time.perf_counter() - started}
  per_step = step_flops(program, inputs, settings.batch_size, alphas)
  weight_steps = settings.epochs * sum(steps_per_epoch)
  arch_steps = (settings.epochs - settings.warmup_epochs) * sum(steps_per_epoch)
  summary["cost"] = {
      "devices": 1, "device_seconds": search_s, "weight_steps": weight_steps, "arch_steps": arch_steps,
      "flops_per_weight_step": per_step["weight_step"], "flops_per_arch_step": per_step["arch_step"],
      "flops": weight_steps * per_step["weight_step"] + arch_steps * per_step["arch_step"]}
  run_folder.write_json(os.path.join(workdir, SEARCH_JSON), summary, strict=True)
  print(_summary_text(summary), file=sys.stderr)
  return summary


def _export(config, workdir, space, composite, results: list[TaskResult]) -> dict[str, Any]:
  """Weight table, plots, ranking and launchable configs; returns the summary."""
  search = config.search
  decisions = space.decisions()
  per_task = {r.task.name: r.weights for r in results}
  rows = export.weight_table(space, per_task)
  meta = {"mixing": search.mixing, "order": search.order, "mode": search.mode, "tasks": list(per_task)}
  export.write_weight_table(workdir, rows, meta)
  export.plot_weights(os.path.join(workdir, export.WEIGHTS_PNG), space, rows, len(results))
  history = {name: np.mean([r.history[name] for r in results], axis=0) for name in decisions}
  export.plot_history(os.path.join(workdir, export.HISTORY_PNG), space, history)
  best = lambda weights, k: [(score, search_space.Architecture.from_choices(space, choices)) for score, choices in
                             export.rank_choices(weights, decisions, k, search.max_gates, search.min_gates)]
  mean_weights = {name: np.mean([r.weights[name] for r in results], axis=0) for name in decisions}
  ranked = best(mean_weights, search.top_k)
  model = {key: config.model[key] for key in ("features", "pool_size", "dropout_rate", "pytorch_bn")}
  data = {key: config.data[key] for key in ("name", "data_dir", "flow_backend", "resolution", "datasets")}
  fold_names = list(dict.fromkeys(r.task.fold for r in results if r.task.fold is not None))
  provenance = selection.ONCE if search.mode == "once" else selection.NESTED_MEAN
  paths = export.write_configs(workdir, ranked, model, data, provenance, _note(search.mode, len(fold_names)))
  per_fold = {}
  for fold in fold_names:  # each fold's own choice: the mean over its seeds' weights, its test subject unseen
    fold_results = [r for r in results if r.task.fold == fold]
    per_fold[fold] = best({n: np.mean([r.weights[n] for r in fold_results], axis=0) for n in decisions}, 1)[0][1]
  per_fold_path = None
  if per_fold:
    common = max(per_fold.values(), key=list(per_fold.values()).count)
    per_fold_path = export.write_config(
        os.path.join(workdir, export.CONFIG_DIR, "per_fold.py"),
        title=f"LOSO with each fold's own searched architecture (nested search in {workdir}).",
        body=(f"{len(set(per_fold.values()))} distinct architecture(s) over {len(per_fold)} fold(s); each fold "
              "trains the top-1 of its own search, which never saw its test subject. `model.preset` is the "
              "most common one, for display; `selection.fold_architectures` decides."),
        architecture=common, provenance=selection.NESTED, workdir=workdir, model=model, data=data,
        fold_architectures=tuple((fold, arch.encode()) for fold, arch in per_fold.items()),
        protocol_lines=(f"  config.protocol.name = {config.protocol.name!r}\n"
                        f"  config.protocol.max_folds = {config.protocol.max_folds!r}\n"))
  groups = folds.subject_groups(composite.subjects, composite.datasets)
  tasks = []
  for r in results:
    (score, top1), = best(r.weights, 1)
    tasks.append({
        "name": r.task.name, "fold": r.task.fold, "seed": r.task.seed,
        "train_subjects": sorted(set(groups[r.task.train_indices].tolist())),
        "val_subjects": sorted(set(groups[r.task.val_indices].tolist())),
        "test_subjects": sorted(set(groups[r.task.test_indices].tolist())),
        "train_samples": int(r.task.train_indices.size), "val_samples": int(r.task.val_indices.size),
        "train_loss": r.train_loss.tolist(), "val_loss": [None if np.isnan(v) else v for v in r.val_loss.tolist()],
        "weights": {k: v.tolist() for k, v in r.weights.items()},
        "alphas": {k: v.tolist() for k, v in r.alphas.items()},
        "top1": top1.encode(), "ties": export.tied_decisions(r.weights, decisions)})
  return {
      "mode": search.mode, "order": search.order, "mixing": search.mixing,
      "space": {"stems": list(space.stems), "states": [list(c) for c in space.states],
                "decisions": {k: list(v) for k, v in decisions.items()}},
      "ranked": [{"rank": i + 1, "score": score if math.isfinite(score) else None,
                  "architecture": arch.encode(), "description": arch.describe(),
                  "paper_preset": arch.paper_name(), "config": path, "selection": provenance}
                 for i, ((score, arch), path) in enumerate(zip(ranked, paths))],
      "tie_rule": "exact ties go to the simpler candidate: " + " < ".join(search_space.SIMPLICITY),
      "ties": export.tied_decisions(mean_weights, decisions),
      "per_fold": {"config": per_fold_path, "selection": selection.NESTED,
                   "architectures": {fold: arch.encode() for fold, arch in per_fold.items()}} if per_fold else None,
      "folds_agree_on_top1": len({t["top1"] for t in tasks}) == 1,
      "tasks": tasks, "data_source": composite.source,
      "config": scoring.config_dict(config)}


def _summary_text(summary: Mapping[str, Any]) -> str:
  lines = [f"{'rank':>4}  {'score':>8}  architecture"]
  for entry in summary["ranked"]:
    preset = f" (= {entry['paper_preset']})" if entry["paper_preset"] else ""
    score = "-inf" if entry["score"] is None else f"{entry['score']:.4f}"
    lines.append(f"{entry['rank']:>4}  {score:>8}  {entry['description']}{preset}")
    lines.append(f"{'':>16}{entry['config']}")
  if summary["per_fold"]:
    lines.append(f"each fold's own architecture: {summary['per_fold']['config']}")
  lines.append(f"search took {summary['timings']['search_s']:.1f} s, {summary['cost']['flops']:.3g} FLOPs")
  return "\n".join(lines)

"""The run folder: the name of every file in it, and their writers and readers.

What `rcn_jax.train.train_and_evaluate(config, workdir)` leaves in `workdir`:

  config.json             the run's config; it claims the folder (another config is refused)
  layout.json             what each model slot holds: fold, seed, architecture, checkpoint folder,
                          and the program groups (one per architecture); written before training
  checkpoints/            the stacked training state, one orbax checkpoint per saved epoch
  tensorboard/            per-epoch training scalars and the test scores
  architecture_<i>/       checkpoints/ and tensorboard/ of one architecture's folds (per-fold selection)
  predictions.csv         one row per (seed, tested sample)
  train_loss.csv          the epoch-mean training loss of every model (`FOLD@SEED` columns)
  megc2019_seed<S>.log    the MEGC2019 log of seed S
  confusion_<scope>.png   a confusion matrix per scope (`composite` and each dataset)
  results.json            the pooled results; written last, so its presence marks a finished run

and what the studies and the analysis add: `composite.npz` (in-memory samples and their apex
frames), `cams.png`, `learning_curves.png`, `report.md`, `report.html`. The fold models are
restored from the checkpoint folders `layout.json` names by `rcn_jax.analysis.trained_run.load_run`.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rcn_jax import errors, plots, sample_list, scoring
from rcn_jax.data import Composite, load_configured
from rcn_jax.engine import multihost

CONFIG = "config.json"
LAYOUT = "layout.json"
LAYOUT_FORMAT = 1
RESULTS = "results.json"
CHECKPOINTS = "checkpoints"
TENSORBOARD = "tensorboard"
PREDICTIONS = "predictions.csv"
TRAIN_LOSS = "train_loss.csv"
COMPOSITE_FILE = "composite.npz"
CAMS = "cams.png"
LEARNING_CURVES = "learning_curves.png"
REPORT_MARKDOWN = "report.md"
REPORT_HTML = "report.html"


def megc_log(seed: int) -> str:
  return f"megc2019_seed{seed}.log"


def confusion_png(scope: str) -> str:
  return f"confusion_{scope}.png"


def group_folder(index: int, num_groups: int) -> str:
  """The folder, relative to the run folder, of program group `index` of `num_groups`: the run folder
  itself for a run of one architecture, `architecture_<index>` for each of a per-fold selection's."""
  return "" if num_groups == 1 else f"architecture_{index}"


def write_layout(workdir: str, groups: Sequence[Mapping[str, Any]]) -> None:
  """`layout.json` from the program groups of a run (`rcn_jax.engine.plan.Plan.layout_group`).

  Each group gives `architecture`, `slots` (its stacked models, padding included) and `models`:
  `(fold, seed)` of its real slots in slot order. The file lists the groups (with their folder
  and checkpoint folder) and every model with its group, slot, fold, seed and architecture.
  """
  entries, models = [], []
  for index, group in enumerate(groups):
    folder = group_folder(index, len(groups))
    entries.append({"architecture": group["architecture"], "folder": folder,
                    "checkpoints": os.path.join(folder, CHECKPOINTS), "slots": int(group["slots"]),
                    "folds": list(dict.fromkeys(fold for fold, _ in group["models"]))})
    models += [{"group": index, "slot": slot, "fold": fold, "seed": int(seed), "architecture": group["architecture"],
                "checkpoints": os.path.join(folder, CHECKPOINTS)}
               for slot, (fold, seed) in enumerate(group["models"])]
  write_json(os.path.join(workdir, LAYOUT), {"format": LAYOUT_FORMAT, "groups": entries, "models": models},
             strict=True)


def read_layout(workdir: str | os.PathLike) -> dict[str, Any]:
  """The run's `layout.json`; a run of an earlier release (without it) is read from its old files once:
  the `FOLD@SEED` header of `train_loss.csv` and the slot count of `results.json` (one program)."""
  workdir = Path(workdir)
  path = workdir / LAYOUT
  if path.is_file():
    layout = read_json(path)
    if layout.get("format") != LAYOUT_FORMAT:
      raise errors.UserError(f"{path}: layout format {layout.get('format')!r}, this release reads {LAYOUT_FORMAT}")
    return layout
  results = read_results(workdir)
  if not (workdir / TRAIN_LOSS).is_file() or len(results.get("selection", {}).get("architectures", {})) > 1:
    raise errors.UserError(f"{workdir}: no {LAYOUT} (a run of an earlier release); run the same config again "
                           "in a new --workdir to open it")
  names = _legacy_model_names(workdir)
  architecture = results["config"]["model"]["preset"]
  slots = int(results.get("execution", {}).get("slots", len(names)))
  if slots < len(names):
    raise errors.UserError(f"{workdir / RESULTS}: {slots} slots for {len(names)} models")
  return {"format": LAYOUT_FORMAT,
          "groups": [{"architecture": architecture, "folder": "", "checkpoints": CHECKPOINTS, "slots": slots,
                      "folds": list(dict.fromkeys(fold for fold, _ in names))}],
          "models": [{"group": 0, "slot": slot, "fold": fold, "seed": seed, "architecture": architecture,
                      "checkpoints": CHECKPOINTS} for slot, (fold, seed) in enumerate(names)]}


def write_json(path: str, payload: Mapping[str, Any], *, strict: bool = False) -> None:
  """Writes JSON through a temporary file and a rename: a killed run never leaves half a file.

  `strict` refuses NaN and infinities (Python's JSON extensions, which other JSON readers reject).
  """
  temporary = f"{path}.tmp"
  with open(temporary, "w") as stream:
    json.dump(payload, stream, indent=1, sort_keys=False, default=_jsonable, allow_nan=not strict)
  os.replace(temporary, path)


def _jsonable(value):
  if isinstance(value, np.generic):
    return value.item()
  if isinstance(value, np.ndarray):
    return value.tolist()
  raise TypeError(f"cannot write {type(value).__name__} to JSON")


def _existing(path: Path) -> Path:
  if not path.is_file():
    raise errors.MissingInput(f"{path}: missing; is {path.parent} a finished run folder?")
  return path


def read_json(path: str | os.PathLike) -> dict[str, Any]:
  """A JSON file of a run folder; a missing one is an error naming it."""
  with open(_existing(Path(path))) as stream:
    return json.load(stream)


def read_config(workdir: str | os.PathLike) -> dict[str, Any]:
  return read_json(Path(workdir) / CONFIG)


def read_results(workdir: str | os.PathLike) -> dict[str, Any]:
  return read_json(Path(workdir) / RESULTS)


def claim(workdir: str, config_dict: dict[str, Any], *, ignore: Sequence[str] = ()) -> None:
  """Writes `config.json`, refusing a folder that holds checkpoints or results of another config.

  Sections in `ignore` may differ (they do not change what is trained). Collective: every process
  calls it; process 0 writes.
  """
  path = os.path.join(workdir, CONFIG)
  checkpoints = os.path.join(workdir, CHECKPOINTS)
  started = (os.path.exists(os.path.join(workdir, RESULTS))
             or (os.path.isdir(checkpoints) and bool(os.listdir(checkpoints))))
  if started and os.path.exists(path):
    stored = read_json(path)
    differing = sorted(k for k in set(stored) | set(config_dict)
                       if k not in ignore and stored.get(k) != config_dict.get(k))
    if differing:
      raise errors.UserError(f"{workdir} holds a run of another config (sections {differing} differ); "
                             "use a new --workdir")
  if multihost.is_main():
    write_json(path, config_dict)
  multihost.barrier("claim_workdir")


def finished_results(workdir: str, config_dict: dict[str, Any]) -> dict[str, Any] | None:
  """The results of a finished run of exactly `config_dict` in `workdir`, else None."""
  path = os.path.join(workdir, RESULTS)
  if not os.path.exists(path):
    return None
  results = read_json(path)
  return results if results.get("config") == config_dict else None


def _summary_writer(workdir: str, **options):
  # tensorboardX imports torch where it is installed (seconds): only a training run pays for it.
  from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
  return SummaryWriter(os.path.join(workdir, TENSORBOARD), **options)


class EpochScalars:
  """The training loop's TensorBoard scalars (`tensorboard/`); a process with `write=False` writes nothing."""

  def __init__(self, workdir: str, *, write: bool = True):
    self._writer = _summary_writer(workdir, write_to_disk=write)

  def add(self, epoch: int, losses: np.ndarray, active_models: int, seconds: float) -> None:
    """The scalars of epoch `epoch` (counted from 1); `losses` `[M]` of the models that trained in it."""
    self._writer.add_scalar("train/loss_mean", float(losses.mean()), epoch)
    self._writer.add_scalar("train/loss_max", float(losses.max()), epoch)
    self._writer.add_scalar("train/active_models", int(active_models), epoch)
    self._writer.add_scalar("time/epoch_s", seconds, epoch)

  def close(self) -> None:
    self._writer.close()


def write_outputs(workdir: str, composite: Composite, names: Sequence[str], predictions: scoring.Predictions,
                  results: Mapping[str, Any], history: np.ndarray) -> None:
  """Every output of a finished run: predictions, MEGC2019 logs, confusion PNGs, training losses, the
  test scores in TensorBoard, and `results.json` last."""
  write_predictions_csv(os.path.join(workdir, PREDICTIONS), composite, predictions, sample_list.CLASS_NAMES)
  write_megc_logs(workdir, composite, predictions)
  write_confusion_pngs(workdir, results)
  write_train_losses(workdir, names, history)
  with _summary_writer(workdir) as writer:
    writer.add_scalar("test/uar", results["uar"], 0)
    writer.add_scalar("test/uf1", results["uf1"], 0)
    for dataset, entry in results.get("per_dataset", {}).items():
      writer.add_scalar(f"test/{dataset}_uar", entry["uar"], 0)
      writer.add_scalar(f"test/{dataset}_uf1", entry["uf1"], 0)
  write_json(os.path.join(workdir, RESULTS), results)


def write_train_losses(workdir: str, names: Sequence[str], history: np.ndarray) -> None:
  """`train_loss.csv`: an `epoch` column, then one column per model (`FOLD@SEED`) of its epoch-mean
  training loss; empty once the model stopped. `history` is `[models, max_epochs]`, NaN if not run."""
  with open(os.path.join(workdir, TRAIN_LOSS), "w") as stream:
    stream.write("epoch," + ",".join(names) + "\n")
    for epoch, row in enumerate(np.asarray(history).T):
      if np.isnan(row).all():
        break
      stream.write(f"{epoch + 1}," + ",".join("" if np.isnan(v) else f"{v:.6f}" for v in row) + "\n")


def read_train_losses(workdir: str | os.PathLike) -> tuple[list[str], np.ndarray]:
  """Model names and `[models, epochs]` losses (NaN where a model had stopped) of `train_loss.csv`."""
  path = _existing(Path(workdir) / TRAIN_LOSS)
  with open(path, newline="") as stream:
    rows = list(csv.reader(stream))
  if not rows or len(rows[0]) < 2:
    raise errors.UserError(f"{path}: no models in the header")
  names = rows[0][1:]
  losses = np.full((len(names), len(rows) - 1), np.nan)
  for epoch, row in enumerate(rows[1:]):
    if len(row) != len(names) + 1:
      raise errors.UserError(f"{path}: row {epoch + 2} has {len(row)} fields, the header {len(names) + 1}")
    losses[:, epoch] = [float(v) if v else np.nan for v in row[1:]]
  return names, losses


def _legacy_model_names(workdir: Path) -> list[tuple[str, int]]:
  """(fold, seed) of each model, from the header of `train_loss.csv` (runs without `layout.json`)."""
  names = []
  for column in read_train_losses(workdir)[0]:
    fold, separator, seed = column.rpartition("@")
    if not separator or not seed.lstrip("-").isdigit():
      raise errors.UserError(f"{Path(workdir) / TRAIN_LOSS}: column {column!r} is not FOLD@SEED")
    names.append((fold, int(seed)))
  return names


def write_predictions_csv(path: str, composite: Composite, predictions: scoring.Predictions,
                          class_names: Sequence[str]) -> None:
  """One row per (seed, sample): sample, dataset, subject, label, prediction, p_<class>, fold, seed."""
  with open(path, "w", newline="") as stream:
    writer = csv.writer(stream)
    writer.writerow(["sample", "dataset", "subject", "label", "prediction",
                     *(f"p_{name}" for name in class_names), "fold", "seed"])
    for row in range(len(predictions.seeds)):
      index = predictions.sample_indices[row]
      writer.writerow([composite.samples[index], composite.datasets[index], composite.subjects[index],
                       int(composite.labels[index]), int(predictions.predictions[row]),
                       *(f"{p:.6f}" for p in predictions.probabilities[row]),
                       predictions.folds[row], int(predictions.seeds[row])])


def read_predictions(workdir: str | os.PathLike) -> list[dict[str, str]]:
  """The rows of a run's `predictions.csv`."""
  with open(_existing(Path(workdir) / PREDICTIONS), newline="") as stream:
    return list(csv.DictReader(stream))


def write_megc_logs(workdir: str, composite: Composite, predictions: scoring.Predictions) -> list[str]:
  """The MEGC2019 log of each seed: per fold a `<db> <subject>` line, then `<sample> <gt> <pred>`."""
  paths = []
  for seed in dict.fromkeys(predictions.seeds.tolist()):
    rows = np.flatnonzero(predictions.seeds == seed)
    lines = []
    for fold in dict.fromkeys(predictions.folds[rows].tolist()):
      fold_rows = rows[predictions.folds[rows] == fold]
      first = predictions.sample_indices[fold_rows[0]]
      subject = composite.subjects[first] if "/" in fold else "all"
      lines.append(f"{composite.datasets[first]} {subject}")
      lines.extend(f"{composite.samples[predictions.sample_indices[r]]} "
                   f"{composite.labels[predictions.sample_indices[r]]} {predictions.predictions[r]}"
                   for r in fold_rows)
    path = os.path.join(workdir, megc_log(seed))
    with open(path, "w") as stream:
      stream.write("\n".join(lines) + "\n")
    paths.append(path)
  return paths


def write_confusion_pngs(workdir: str, results: Mapping[str, Any]) -> list[str]:
  """A labelled confusion-matrix PNG per scope (composite and each dataset), counts over seeds."""
  class_names = results["class_names"]
  paths = []
  for scope, entry in scoring.scopes(results).items():
    counts = np.asarray(entry["confusion"])
    figure, axes = plots.pyplot().subplots(figsize=(4.2, 3.8), dpi=100)
    axes.imshow(counts, cmap="Blues")
    for (row, col), value in np.ndenumerate(counts):
      color = "white" if value > counts.max() / 2 else "black"
      axes.text(col, row, str(value), ha="center", va="center", color=color)
    axes.set_xticks(range(len(class_names)), class_names)
    axes.set_yticks(range(len(class_names)), class_names)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    seeds = len(results["seeds"])
    axes.set_title(f"{scope}: UAR {entry['uar']:.3f}, UF1 {entry['uf1']:.3f}"
                   + (f"\n(counts over {seeds} seeds)" if seeds > 1 else ""), fontsize=9)
    figure.tight_layout()
    paths.append(plots.save(figure, os.path.join(workdir, confusion_png(scope))))
  return paths


def save_composite(workdir: str, composite: Composite, apex_frames: Sequence[np.ndarray] | None = None) -> None:
  """Stores an in-memory composite (and its apex frames) in the run folder, for CAMs and reports."""
  arrays = {"flows": composite.flows, "labels": composite.labels, "subjects": composite.subjects,
            "datasets": composite.datasets, "samples": composite.samples}
  if apex_frames is not None:
    arrays["apex_frames"] = np.stack(apex_frames)
  np.savez_compressed(os.path.join(workdir, COMPOSITE_FILE), **arrays)


def load_run_composite(workdir: str | os.PathLike, config: Mapping[str, Any]
                       ) -> tuple[Composite, list[np.ndarray | None]]:
  """The samples of the run in `workdir` with config `config` and, where stored, their apex frames.

  A run folder with `composite.npz` (in-memory data saved by `rcn_jax.studies`) is read from it;
  otherwise the config's data is loaded (without apex frames).
  """
  stored = Path(workdir) / COMPOSITE_FILE
  if not stored.is_file():
    composite = load_configured(config["data"])
    return composite, [None] * len(composite)
  with np.load(stored) as arrays:
    composite = Composite(arrays["flows"], arrays["labels"], arrays["subjects"], arrays["datasets"],
                          arrays["samples"], source=str(stored))
    frames = list(arrays["apex_frames"]) if "apex_frames" in arrays else [None] * len(composite)
  # The file holds what the run was given; the engine kept the config's datasets of it.
  keep = np.isin(composite.datasets, list(config["data"]["datasets"]))
  return composite.select(config["data"]["datasets"]), [f for f, k in zip(frames, keep) if k]

"""Search outputs: the ranked architectures, the weight table (JSON, CSV), plots, launchable configs."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rcn_jax import plots, reporting
from rcn_jax.models import supernet

WEIGHTS_JSON = "architecture_weights.json"
WEIGHTS_CSV = "architecture_weights.csv"
WEIGHTS_PNG = "architecture_weights.png"
HISTORY_PNG = "architecture_weights_history.png"
CONFIG_DIR = "architectures"


def rank_choices(weights: Mapping[str, np.ndarray], decisions: Mapping[str, Sequence[str]], k: int,
                 max_gates: int = -1, min_gates: int = 0) -> list[tuple[float, dict[str, str]]]:
  """The k discrete choices with the largest product of their mixing weights.

  Decisions are independent, so the best product under bounds on the number of gates follows from
  keeping, decision by decision, the k best partial choices for every gate count (exact).

  Args:
    weights: `{decision: [candidates]}` normalised mixing weights.
    decisions: `{decision: candidate labels}`; decisions named `gate_*` count a gate unless `none`.
    k: how many to return.
    max_gates: at most this many gated nodes (-1: any number).
    min_gates: at least this many gated nodes.

  Returns:
    `(log score, {decision: label})`, best first; ties keep candidate order. Fewer than k when
    fewer choices satisfy the bounds.
  """
  check_ranking(k, max_gates, min_gates)
  beams: dict[int, list[tuple[float, tuple[int, ...]]]] = {0: [(0.0, ())]}
  names = list(decisions)
  for name in names:
    labels = decisions[name]
    with np.errstate(divide="ignore"):
      logs = np.log(np.asarray(weights[name], np.float64))
    extended: dict[int, list[tuple[float, tuple[int, ...]]]] = {}
    for gates, entries in beams.items():
      for score, picks in entries:
        for index, label in enumerate(labels):
          count = gates + int(name.startswith("gate_") and label != supernet.NO_GATE)
          if 0 <= max_gates < count:
            continue
          extended.setdefault(count, []).append((score + float(logs[index]), picks + (index,)))
    beams = {gates: sorted(entries, key=lambda e: (-e[0], e[1]))[:k] for gates, entries in extended.items()}
  best = sorted((e for gates, entries in beams.items() if gates >= min_gates for e in entries),
                key=lambda e: (-e[0], e[1]))[:k]
  return [(score, {name: decisions[name][i] for name, i in zip(names, picks)}) for score, picks in best]


def check_ranking(k: int, max_gates: int, min_gates: int) -> None:
  """Raises a ValueError naming the `search.*` key of an impossible ranking request."""
  if k < 1:
    raise ValueError(f"search.top_k={k} must be >= 1")
  if max_gates < -1 or min_gates < 0 or 0 <= max_gates < min_gates:
    raise ValueError(f"search.min_gates={min_gates}, search.max_gates={max_gates}: need 0 <= min_gates <= "
                     "max_gates, or max_gates=-1 for no upper bound")


def weight_table(space: supernet.SearchSpace, per_task: Mapping[str, Mapping[str, np.ndarray]]) -> list[dict[str, Any]]:
  """One row per (decision, candidate): mean and std of the mixing weight over tasks, rank in decision."""
  rows = []
  for name, candidates in space.decisions().items():
    stacked = np.stack([np.asarray(w[name], np.float64) for w in per_task.values()])
    mean, std = stacked.mean(axis=0), stacked.std(axis=0)
    ranks = np.argsort(np.argsort(-mean, kind="stable"), kind="stable") + 1
    for index, candidate in enumerate(candidates):
      node = name[len("gate_"):] if name.startswith("gate_") else None
      hops = space.hops(node, candidate) if node and candidate != supernet.NO_GATE else None
      rows.append({"decision": name, "candidate": candidate, "hops": hops, "weight": float(mean[index]),
                   "std": float(std[index]), "rank": int(ranks[index]),
                   "per_task": {task: float(w[name][index]) for task, w in per_task.items()}})
  return rows


def write_weight_table(workdir: str, rows: Sequence[Mapping[str, Any]], meta: Mapping[str, Any]) -> None:
  """`architecture_weights.json` (rows and meta) and `architecture_weights.csv` (the rows, without per-task)."""
  reporting.write_json(os.path.join(workdir, WEIGHTS_JSON), {**meta, "weights": list(rows)})
  with open(os.path.join(workdir, WEIGHTS_CSV), "w", newline="") as stream:
    writer = csv.writer(stream)
    writer.writerow(["decision", "candidate", "hops", "weight", "std", "rank"])
    for row in rows:
      writer.writerow([row["decision"], row["candidate"], "" if row["hops"] is None else row["hops"],
                       f"{row['weight']:.6f}", f"{row['std']:.6f}", row["rank"]])


def _grid(count: int):
  """A figure with one panel per decision, four to a row; returns (figure, panels)."""
  columns = min(4, count)
  rows = math.ceil(count / columns)
  figure, axes = plots.pyplot().subplots(rows, columns, figsize=(4 * columns, 3.2 * rows), squeeze=False)
  for extra in axes.flat[count:]:
    extra.set_visible(False)
  return figure, axes.flat


def _label(axis, x_label: str, decision: str) -> None:
  axis.set_xlabel(x_label)
  axis.set_ylabel("mixing weight")
  axis.set_title(decision)
  axis.legend(fontsize="small")


def _save(figure, path: str, title: str) -> None:
  figure.suptitle(title)
  figure.tight_layout()
  plots.save(figure, path)


def plot_weights(path: str, space: supernet.SearchSpace, rows: Sequence[Mapping[str, Any]], num_tasks: int) -> None:
  """Bar chart per decision of the final mixing weights (mean and std over tasks)."""
  decisions = space.decisions()
  figure, axes = _grid(len(decisions))
  for axis, (name, candidates) in zip(axes, decisions.items()):
    entries = [r for r in rows if r["decision"] == name]
    positions = np.arange(len(candidates))
    axis.bar(positions, [r["weight"] for r in entries], yerr=[r["std"] for r in entries], capsize=3,
             color="tab:blue", label=f"mean over {num_tasks} task(s)")
    axis.axhline(1.0 / len(candidates), color="tab:gray", linestyle="--", label="uniform")
    axis.set_xticks(positions, candidates, rotation=30, ha="right")
    _label(axis, "candidate", name)
  _save(figure, path, "Architecture weights per decision")


def plot_history(path: str, space: supernet.SearchSpace, history: Mapping[str, np.ndarray]) -> None:
  """Mixing weight of every candidate over the epochs (mean over tasks), one panel per decision.

  Args:
    path: the PNG to write.
    space: the search space.
    history: `{decision: [epochs + 1, candidates]}`, the initial weights first.
  """
  decisions = space.decisions()
  figure, axes = _grid(len(decisions))
  for axis, (name, candidates) in zip(axes, decisions.items()):
    curve = np.asarray(history[name])
    epochs = np.arange(curve.shape[0])
    for index, candidate in enumerate(candidates):
      axis.plot(epochs, curve[:, index], marker=".", label=candidate)
    _label(axis, "epoch (0: initial)", name)
  _save(figure, path, "Architecture weights during the search")


_CONFIG_TEMPLATE = '''"""Top-{rank} architecture of the search in {workdir}: {description}.

Score (sum of log mixing weights): {score:.4f}. Same network as preset: {preset}.
{provenance}
Run: `python launch.py --config={path}` (arguments as in configs/base.py: paper, reference, smoke).
"""

from configs import base

ARCHITECTURE = "{encoded}"


def get_config(arg: str | None = None):
  config = base.make_config(preset=ARCHITECTURE, features={features}, pool_size={pool_size}, arg=arg)
  config.model.dropout_rate = {dropout_rate!r}
  config.model.pytorch_bn = {pytorch_bn!r}
{data_lines}  return config
'''


def write_configs(workdir: str, ranked: Sequence[tuple[float, supernet.Architecture]],
                  model: Mapping[str, Any], data: Mapping[str, Any], provenance: str) -> list[str]:
  """Writes `architectures/top<i>.py`, one launchable config per ranked architecture.

  Args:
    workdir: the search's output folder.
    ranked: `(score, architecture)`, best first.
    model: `features`, `pool_size`, `dropout_rate`, `pytorch_bn` of the search.
    data: the search's `config.data` entries, so the architecture trains on the same data.
    provenance: how the search chose it (mode, subjects), quoted in the docstring.

  Returns:
    The written paths.
  """
  folder = os.path.join(workdir, CONFIG_DIR)
  os.makedirs(folder, exist_ok=True)
  data_lines = "".join(f"  config.data.{key} = {value!r}\n" for key, value in data.items() if value is not None)
  paths = []
  for rank, (score, architecture) in enumerate(ranked, start=1):
    path = os.path.join(folder, f"top{rank}.py")
    text = _CONFIG_TEMPLATE.format(
        rank=rank, workdir=workdir, description=architecture.describe(), score=score,
        preset=architecture.paper_name() or "none", provenance=provenance, path=path,
        encoded=architecture.encode(), data_lines=data_lines, **model)
    with open(path, "w") as stream:
      stream.write(text)
    paths.append(path)
  return paths

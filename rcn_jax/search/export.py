"""Search outputs: the ranked architectures, the weight table (JSON, CSV), plots, launchable configs."""

from __future__ import annotations

import csv
import itertools
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rcn_jax import errors, plots
from rcn_jax import run_folder
from rcn_jax.models import search_space

WEIGHTS_JSON = "architecture_weights.json"
WEIGHTS_CSV = "architecture_weights.csv"
WEIGHTS_PNG = "architecture_weights.png"
HISTORY_PNG = "architecture_weights_history.png"
CONFIG_DIR = "architectures"


# A ranked choice: (zero-weight picks, sum of log weights of the others, {decision: candidate}).
Ranked = tuple[int, float, dict[str, str]]


def rank_choices(weights: Mapping[str, np.ndarray], decisions: Mapping[str, Sequence[str]], k: int,
                 max_gates: int = -1, min_gates: int = 0) -> list[tuple[float, dict[str, str]]]:
  """The k valid discrete choices with the largest product of their mixing weights (a constrained argmax).

  Without bounds the best is the per-decision argmax (the paper's rule). The constraints are the
  network's (a skipped state is followed by skipped states and neither gated nor a gate source:
  `search_space.choice_problem`) and the optional bounds on the gate count. A pick of weight exactly 0
  (a collapsed decision) counts before the product: the best choice has the fewest such picks,
  so a decision forced onto a zero weight by a bound cannot hand the choice of another decision
  to list order. Exact ties go to the simpler candidate (`search_space.SIMPLICITY`), decision by
  decision in network order, never to the order of the candidates in the config.

  Args:
    weights: `{decision: [candidates]}` normalised mixing weights.
    decisions: `{decision: candidate labels}`; `gate_*` count a gate unless `none`, `state_*` may `skip`.
    k: how many to return.
    max_gates: at most this many gated nodes (-1: any number).
    min_gates: at least this many gated nodes.

  Returns:
    `(log score, {decision: label})`, best first; the score is -inf for a choice with a zero
    weight. Fewer than k when fewer choices satisfy the constraints.
  """
  check_ranking(k, max_gates, min_gates)
  names = list(decisions)
  structure = [n for n in names if not n.startswith("gate_")]
  gates = [n for n in names if n.startswith("gate_")]
  steps = max((int(n.split("_")[1]) for n in structure if n.startswith("state_")), default=0)
  found: list[tuple[tuple, Ranked]] = []
  for picks in itertools.product(*(range(len(decisions[n])) for n in structure)):
    fixed = {n: decisions[n][i] for n, i in zip(structure, picks)}
    if search_space.choice_problem(fixed, steps):
      continue
    base = [_pick_score(weights[n][i]) for n, i in zip(structure, picks)]
    zeros, logs = sum(z for z, _ in base), sum(l for _, l in base)
    for gate_zeros, gate_logs, gate_choice in _rank_gates(weights, decisions, gates, fixed, k, max_gates,
                                                          min_gates):
      choice = {**fixed, **gate_choice}
      entry = (zeros + gate_zeros, logs + gate_logs, {n: choice[n] for n in names})
      found.append((_order_key(entry, names), entry))
  found.sort(key=lambda e: e[0])
  return [(-math.inf if zeros else logs, choice) for _, (zeros, logs, choice) in found[:k]]


def _pick_score(weight: float) -> tuple[int, float]:
  return (1, 0.0) if weight <= 0 else (0, math.log(float(weight)))


def _simplicity(label: str) -> int:
  return search_space.SIMPLICITY.index(label) if label in search_space.SIMPLICITY else len(search_space.SIMPLICITY)


def _order_key(entry: Ranked, names: Sequence[str]) -> tuple:
  zeros, logs, choice = entry
  return (zeros, -logs, tuple((_simplicity(choice[n]), choice[n]) for n in names))


def _rank_gates(weights, decisions, gates, fixed, k, max_gates, min_gates) -> list[Ranked]:
  """The k best gate choices for fixed stem and states, per gate count (exact: gates are independent)."""
  skipped = {n for n, op in fixed.items() if op == search_space.SKIP}
  beams: dict[int, list[Ranked]] = {0: [(0, 0.0, {})]}
  for name in gates:
    extended: dict[int, list[Ranked]] = {}
    for count, entries in beams.items():
      for zeros, logs, choice in entries:
        for index, label in enumerate(decisions[name]):
          gated = label != search_space.NO_GATE
          if gated and (name[len("gate_"):] in skipped or label in skipped):
            continue
          total = count + int(gated)
          if 0 <= max_gates < total:
            continue
          pick_zeros, pick_log = _pick_score(weights[name][index])
          extended.setdefault(total, []).append((zeros + pick_zeros, logs + pick_log, {**choice, name: label}))
    beams = {count: sorted(entries, key=lambda e: _order_key(e, list(e[2])))[:k]
             for count, entries in extended.items()}
  return [e for count, entries in beams.items() if count >= min_gates for e in entries]


def tied_decisions(weights: Mapping[str, np.ndarray], decisions: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
  """`{decision: candidates}` where two or more candidates share the largest weight exactly."""
  tied = {}
  for name, labels in decisions.items():
    values = np.asarray(weights[name])
    best = [labels[i] for i in np.flatnonzero(values == values.max())]
    if len(best) > 1:
      tied[name] = best
  return tied


def check_ranking(k: int, max_gates: int, min_gates: int) -> None:
  """Raises a ValueError naming the `search.*` key of an impossible ranking request."""
  if k < 1:
    raise errors.UserError(f"search.top_k={k} must be >= 1")
  if max_gates < -1 or min_gates < 0 or 0 <= max_gates < min_gates:
    raise errors.UserError(f"search.min_gates={min_gates}, search.max_gates={max_gates}: need 0 <= min_gates <= "
                     "max_gates, or max_gates=-1 for no upper bound")


def weight_table(space: search_space.SearchSpace, per_task: Mapping[str, Mapping[str, np.ndarray]]) -> list[dict[str, Any]]:
  """One row per (decision, candidate): mean and std of the mixing weight over tasks, rank in decision."""
  rows = []
  for name, candidates in space.decisions().items():
    stacked = np.stack([np.asarray(w[name], np.float64) for w in per_task.values()])
    mean, std = stacked.mean(axis=0), stacked.std(axis=0)
    ranks = np.argsort(np.argsort(-mean, kind="stable"), kind="stable") + 1
    for index, candidate in enumerate(candidates):
      node = name[len("gate_"):] if name.startswith("gate_") else None
      hops = space.hops(node, candidate) if node and candidate != search_space.NO_GATE else None
      rows.append({"decision": name, "candidate": candidate, "hops": hops, "weight": float(mean[index]),
                   "std": float(std[index]), "rank": int(ranks[index]),
                   "per_task": {task: float(w[name][index]) for task, w in per_task.items()}})
  return rows


def write_weight_table(workdir: str, rows: Sequence[Mapping[str, Any]], meta: Mapping[str, Any]) -> None:
  """`architecture_weights.json` (rows and meta) and `architecture_weights.csv` (the rows, without per-task)."""
  run_folder.write_json(os.path.join(workdir, WEIGHTS_JSON), {**meta, "weights": list(rows)}, strict=True)
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


def plot_weights(path: str, space: search_space.SearchSpace, rows: Sequence[Mapping[str, Any]], num_tasks: int) -> None:
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


def plot_history(path: str, space: search_space.SearchSpace, history: Mapping[str, np.ndarray]) -> None:
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


_CONFIG_TEMPLATE = '''"""{title}

{body}
Architecture selection recorded in results.json: `search: {provenance}` (see README, "Architecture search").
Run: `python launch.py --config={path}` (arguments as in rcn_jax/config.py: paper, reference, smoke).
"""

import ml_collections

from rcn_jax import config as config_lib

ARCHITECTURE = "{encoded}"
FOLD_ARCHITECTURES = {fold_architectures!r}


def get_config(arg: str | None = None):
  config = config_lib.make_config(preset=ARCHITECTURE, features={features}, pool_size={pool_size}, arg=arg)
  config.model.dropout_rate = {dropout_rate!r}
  config.model.pytorch_bn = {pytorch_bn!r}
{data_lines}  config.selection = ml_collections.ConfigDict()
  config.selection.search = {provenance!r}
  config.selection.search_workdir = {workdir!r}
  config.selection.fold_architectures = FOLD_ARCHITECTURES
  return config
'''


def write_config(path: str, *, title: str, body: str, architecture: search_space.Architecture, provenance: str,
                 workdir: str, model: Mapping[str, Any], data: Mapping[str, Any],
                 fold_architectures: Sequence[tuple[str, str]] = (), protocol_lines: str = "") -> str:
  """Writes a config `launch.py` trains: one architecture, or (with `fold_architectures`) one per fold.

  Args:
    path: the file to write.
    title: the docstring's first line.
    body: the docstring's explanation.
    architecture: the architecture (`model.preset`; a per-fold run uses it for nothing but display).
    provenance: `rcn_jax.selection.PROVENANCES` entry.
    workdir: the search's output folder.
    model: `features`, `pool_size`, `dropout_rate`, `pytorch_bn` of the search.
    data: the search's `config.data` entries, so the architecture trains on the same data.
    fold_architectures: `((fold, encoded architecture), ...)` of a nested search.
    protocol_lines: extra config lines (the nested search's protocol).

  Returns:
    The path.
  """
  data_lines = "".join(f"  config.data.{key} = {value!r}\n" for key, value in data.items() if value is not None)
  text = _CONFIG_TEMPLATE.format(title=title, body=body, provenance=provenance, path=path,
                                 encoded=architecture.encode(), fold_architectures=tuple(fold_architectures),
                                 data_lines=data_lines + protocol_lines, workdir=workdir, **model)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as stream:
    stream.write(text)
  return path


def write_configs(workdir: str, ranked: Sequence[tuple[float, search_space.Architecture]],
                  model: Mapping[str, Any], data: Mapping[str, Any], provenance: str, note: str) -> list[str]:
  """Writes `architectures/top<i>.py`, one launchable config per ranked architecture.

  Args:
    workdir: the search's output folder.
    ranked: `(score, architecture)`, best first.
    model: `features`, `pool_size`, `dropout_rate`, `pytorch_bn` of the search.
    data: the search's `config.data` entries.
    provenance: `rcn_jax.selection.PROVENANCES` entry.
    note: how the search chose it (mode, subjects), quoted in the docstring.

  Returns:
    The written paths.
  """
  paths = []
  for rank, (score, architecture) in enumerate(ranked, start=1):
    score_text = f"{score:.4f}" if math.isfinite(score) else "-inf (a zero-weight pick was forced)"
    body = (f"{architecture.describe()}.\nScore (sum of log mixing weights): {score_text}. Same network as "
            f"preset: {architecture.paper_name() or 'none'}.\n{note}")
    paths.append(write_config(os.path.join(workdir, CONFIG_DIR, f"top{rank}.py"),
                              title=f"Top-{rank} architecture of the search in {workdir}.", body=body,
                              architecture=architecture, provenance=provenance, workdir=workdir, model=model,
                              data=data))
  return paths

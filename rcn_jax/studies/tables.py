"""Reading the runs' results into the studies' tables, and the `Outputs` a study writes."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rcn_jax import plots, run_folder
from rcn_jax.studies.runner import Runner
from rcn_jax.studies.sources import DataSource, NamedData
from rcn_jax.studies.specs import RunSpec

PAPER_NAMES = {"rcn": "RCN", "rcn_a": "RCN-A", "rcn_s": "RCN-S", "rcn_w": "RCN-W", "rcn_p": "RCN-P",
               "rcn_c": "RCN-C", "rcn_f": "RCN-F", "depth_1": "Model 1 (1 conv)",
               "depth_2": "Model 2 (1 conv + 1 rconv)", "depth_3": "Model 3 (1 conv + 2 rconv)",
               "depth_4": "Model 4 (1 conv + 3 rconv)"}
DATASET_NAMES = {"smic": "SMIC", "casme2": "CASME II", "samm": "SAMM"}


def score(results: Mapping[str, Any] | None, metric: str = "uar", scope: str = "composite"
          ) -> tuple[float | None, float | None]:
  """(mean, std over seeds) of a pooled metric in a scope (`composite` or a dataset)."""
  if results is None:
    return None, None
  entry = results if scope == "composite" else results.get("per_dataset", {}).get(scope)
  if entry is None:
    return None, None
  return float(entry[metric]), float(entry.get(f"{metric}_std", 0.0))


def run_hours(results: Mapping[str, Any] | None) -> float | None:
  """Training and test time of a run in hours (the engine's `train_s + predict_s`)."""
  if results is None:
    return None
  timings = results["timings"]
  return (timings["train_s"] + timings["predict_s"]) / 3600.0


def format_duration(hours: float | None) -> str:
  """Hours as `1.2h`, `3.4 min` or `5.6 s`, whichever reads best; `plots.MISSING` for None."""
  if hours is None:
    return plots.MISSING
  seconds = hours * 3600.0
  if hours >= 0.1:
    return f"{hours:.1f}h"
  if seconds >= 60:
    return f"{seconds / 60:.1f} min"
  return f"{seconds:.1f} s"


def score_grid(results: Mapping[str, Mapping[str, Any] | None], rows: Sequence[Any], cols: Sequence[Any],
               spec_of: Callable[[Any, Any], RunSpec], metric: str = "uar"
               ) -> tuple[list[list[float | None]], list[list[float | None]]]:
  """`[rows][cols]` means and stds of a metric, each cell from `spec_of(row, col)`'s run."""
  means, stds = [], []
  for row in rows:
    pairs = [score(results.get(spec_of(row, col).name), metric) for col in cols]
    means.append([m for m, _ in pairs])
    stds.append([s for _, s in pairs])
  return means, stds


def grid_table(row_names: Sequence[str], col_names: Sequence[str], means: Sequence[Sequence[float | None]],
               stds: Sequence[Sequence[float | None]], corner: str = "Approaches") -> str:
  """A Markdown table of a score grid with the top two of each column in bold (paper style)."""
  bold = []
  for col in range(len(col_names)):
    bold.extend((row, col + 1) for row in plots.top_two([m[col] for m in means]))
  cells = [[name] + [plots.format_mean_std(m, s) for m, s in zip(mrow, srow)]
           for name, mrow, srow in zip(row_names, means, stds)]
  return plots.markdown_table([corner, *col_names], cells, bold=bold)


def paper_name(model: str) -> str:
  """The paper's name of a model preset (`rcn_a` -> `RCN-A`); unknown presets as they are."""
  return PAPER_NAMES.get(model, model)


def px(resolution: int) -> str:
  """A flow-map side as the paper writes it (`60 × 60`)."""
  return f"{resolution} × {resolution}"


@dataclasses.dataclass
class Outputs:
  """What a study writes: Markdown sections, PNG paths and the numbers behind them."""
  study: str
  title: str
  sections: list[str] = dataclasses.field(default_factory=list)
  figures: list[str] = dataclasses.field(default_factory=list)
  numbers: dict[str, Any] = dataclasses.field(default_factory=dict)

  def write(self, workdir: str, runner: Runner) -> str:
    """Writes `<workdir>/<study>.md` and `<workdir>/<study>.json`; returns the Markdown path."""
    lines = [f"# {self.title}", "",
             f"Scale `{runner.scale.name}`, training preset `{runner.training}`, data: "
             f"{describe_data(runner.data)}. Scores are pooled LOSO scores of each run (mean ± std over "
             "seeds when a run has several); the top two of each column are in bold. Runs: `runs/<name>/`.",
             ""]
    for figure in self.figures:
      lines += [f"![{Path(figure).stem}]({os.path.relpath(figure, workdir)})", ""]
    for section in self.sections:
      lines += [section, ""]
    path = os.path.join(workdir, f"{self.study}.md")
    Path(path).write_text("\n".join(lines))
    run_folder.write_json(os.path.join(workdir, f"{self.study}.json"), {"study": self.study, **self.numbers})
    return path


def describe_data(data: DataSource) -> str:
  """One line on the data of the runs, for the head of a study's Markdown."""
  if isinstance(data, NamedData):
    return f"`{data.name}` ({data.flow_backend} flow)"
  return f"{len(data.samples)} built-in synthetic clips ({data.flow_backend} flow)"

"""Figures and tables shared by the studies, the run report and the CAM grids.

Every figure has labelled axes and, where several series share axes, a legend; class names go
into the titles of image panels. Matplotlib runs headless (Agg). Tables are Markdown text.
"""

from __future__ import annotations

import dataclasses
import math
import textwrap
from collections.abc import Mapping, Sequence

import numpy as np

MISSING = "–"


def pyplot():
  """matplotlib's pyplot on the file-only Agg backend (no display needed)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot  # pylint: disable=g-import-not-at-top
  return pyplot


@dataclasses.dataclass(frozen=True, kw_only=True)
class Panel:
  """One panel of a line or grouped-bar plot: for each x, one value per named series.

  Attributes:
    title: the panel title.
    x_label: the x axis label.
    y_label: the y axis label.
    x: `[X]` positions (numbers) of a line plot's points, or a bar plot's group names.
    series: name -> `[X]` values (None where a run is missing).
    errors: name -> `[X]` half-heights of error bars (e.g. std over seeds), optional.
  """
  title: str
  x_label: str
  y_label: str
  x: Sequence[float] | Sequence[str]
  series: Mapping[str, Sequence[float | None]]
  errors: Mapping[str, Sequence[float | None]] | None = None

  def values(self, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """A series' values (NaN where missing) and its error bars (None without)."""
    values = np.asarray([np.nan if v is None else v for v in self.series[name]], float)
    if not self.errors or name not in self.errors:
      return values, None
    return values, np.asarray([0.0 if e is None else e for e in self.errors[name]], float)


def _panels_figure(panels: Sequence[Panel], width: float, draw, suptitle: str):
  """Side-by-side panels, each drawn by `draw(axis, panel)` and labelled alike."""
  figure, axes = pyplot().subplots(1, len(panels), figsize=(width * len(panels), 4.0), dpi=100, squeeze=False)
  for axis, panel in zip(axes[0], panels):
    draw(axis, panel)
    axis.set_title(panel.title, fontsize=10)
    axis.set_xlabel(panel.x_label)
    axis.set_ylabel(panel.y_label)
    axis.legend(fontsize=8)
  if suptitle:
    figure.suptitle(suptitle, fontsize=11)
  figure.tight_layout()
  return figure


def line_plot(path: str, panels: Sequence[Panel], *, suptitle: str = "") -> str:
  """Writes side-by-side line panels (one line per series, markers at the points) to a PNG."""
  return save(line_figure(panels, suptitle=suptitle), path)


def line_figure(panels: Sequence[Panel], *, suptitle: str = ""):
  """The figure of `line_plot`."""
  def draw(axis, panel):
    for name in panel.series:
      values, error = panel.values(name)
      axis.errorbar(panel.x, values, yerr=error, marker="o", capsize=3, label=name)
    axis.set_xticks(list(panel.x))
    axis.grid(alpha=0.3)
  return _panels_figure(panels, 5.2, draw, suptitle)


def save(figure, path: str) -> str:
  """Writes a figure to a PNG and releases it."""
  figure.savefig(path)
  pyplot().close(figure)
  return path


def bar_plot(path: str, panels: Sequence[Panel], *, suptitle: str = "") -> str:
  """Writes side-by-side grouped bar panels (one bar per series in each x group) to a PNG."""
  return save(bar_figure(panels, suptitle=suptitle), path)


def bar_figure(panels: Sequence[Panel], *, suptitle: str = ""):
  """The figure of `bar_plot`."""
  def draw(axis, panel):
    names = list(panel.series)
    width = 0.8 / max(len(names), 1)
    positions = np.arange(len(panel.x))
    for index, name in enumerate(names):
      values, error = panel.values(name)
      axis.bar(positions + (index - (len(names) - 1) / 2) * width, values, width, yerr=error, capsize=2, label=name)
    axis.set_xticks(positions, list(panel.x))
    axis.grid(axis="y", alpha=0.3)
  return _panels_figure(panels, 5.6, draw, suptitle)


@dataclasses.dataclass(frozen=True)
class ImagePanel:
  """One image of a grid, optionally with a heat map blended over it.

  Attributes:
    image: `[H, W]` grey or `[H, W, 3]` RGB, floats in [0, 1] or uint8.
    title: the panel title (class names go here).
    heat: `[H, W]` values in [0, 1] drawn over the image with a colour map, or None.
  """
  image: np.ndarray
  title: str = ""
  heat: np.ndarray | None = None


def image_grid(path: str, rows: Sequence[Sequence[ImagePanel | None]], *,
               column_titles: Sequence[str] = (), row_titles: Sequence[str] = (),
               suptitle: str = "", heat_label: str = "activation (min-max per map)") -> str:
  """Writes a grid of images (None leaves a cell empty) with a colour bar for the heat maps."""
  return save(grid_figure(rows, column_titles=column_titles, row_titles=row_titles, suptitle=suptitle,
                          heat_label=heat_label), path)


def grid_figure(rows: Sequence[Sequence[ImagePanel | None]], *, column_titles: Sequence[str] = (),
                row_titles: Sequence[str] = (), suptitle: str = "",
                heat_label: str = "activation (min-max per map)"):
  """The figure of `image_grid`."""
  plt = pyplot()
  num_rows, num_cols = len(rows), max(len(r) for r in rows)
  figure, axes = plt.subplots(num_rows, num_cols, figsize=(2.6 * num_cols + 0.8, 2.7 * num_rows),
                                 dpi=100, squeeze=False)
  heat_image = None
  for row_index, row in enumerate(rows):
    for col_index in range(num_cols):
      axis = axes[row_index][col_index]
      axis.set_xticks([])
      axis.set_yticks([])
      panel = row[col_index] if col_index < len(row) else None
      if panel is None:
        axis.axis("off")
        continue
      image = np.asarray(panel.image)
      axis.imshow(image, cmap="gray" if image.ndim == 2 else None,
                  vmin=0 if image.ndim == 2 else None,
                  vmax=(255 if image.dtype == np.uint8 else 1) if image.ndim == 2 else None)
      if panel.heat is not None:
        heat_image = axis.imshow(panel.heat, cmap="jet", alpha=0.45, vmin=0.0, vmax=1.0)
      axis.set_title(panel.title, fontsize=8)
      if row_index == 0 and col_index < len(column_titles):
        axis.set_title(f"{column_titles[col_index]}\n{panel.title}".strip(), fontsize=8)
      if col_index == 0 and row_index < len(row_titles):
        axis.set_ylabel(row_titles[row_index], fontsize=8)
  if suptitle:
    figure.suptitle(textwrap.fill(suptitle, width=int(22 * num_cols + 10)), fontsize=9)
  figure.tight_layout()
  if heat_image is not None:
    bar = figure.colorbar(heat_image, ax=axes.ravel().tolist(), shrink=0.8 if num_rows > 1 else 0.9)
    bar.set_label(heat_label, fontsize=8)
  return figure


def learning_curves(path: str, losses: np.ndarray, *, names: Sequence[str] = (),
                    threshold: float | None = None, title: str = "") -> str:
  """Writes the training loss per epoch: every model thin, the mean over models thick.

  Args:
    path: the PNG to write.
    losses: `[models, epochs]` epoch-mean training losses, NaN after a model stopped.
    names: model names (a legend is drawn only for a handful of models).
    threshold: the stopping rule's loss threshold, drawn as a dashed line.
    title: the title.

  Returns:
    `path`.
  """
  return save(learning_figure(losses, names=names, threshold=threshold, title=title), path)


def learning_figure(losses: np.ndarray, *, names: Sequence[str] = (), threshold: float | None = None,
                    title: str = ""):
  """The figure of `learning_curves`."""
  plt = pyplot()
  losses = np.asarray(losses, float)
  epochs = np.arange(1, losses.shape[1] + 1)
  figure, axis = plt.subplots(figsize=(6.0, 4.0), dpi=100)
  few = 0 < len(names) <= 8
  for index, row in enumerate(losses):
    axis.plot(epochs, row, linewidth=0.8, alpha=0.8 if few else 0.25,
              label=names[index] if few else None, color=None if few else "tab:blue")
  with np.errstate(invalid="ignore"):
    counts = np.sum(np.isfinite(losses), axis=0)
    mean = np.where(counts > 0, np.nansum(losses, axis=0) / np.maximum(counts, 1), np.nan)
  axis.plot(epochs, mean, color="black", linewidth=2.0, label="mean over models")
  if threshold is not None and math.isfinite(threshold) and threshold > 0:
    axis.axhline(threshold, color="tab:red", linestyle="--", label=f"stopping threshold {threshold}")
  axis.set_xlabel("epoch")
  axis.set_ylabel("training loss (cross-entropy, epoch mean)")
  axis.set_title(title, fontsize=10)
  axis.grid(alpha=0.3)
  axis.legend(fontsize=8)
  figure.tight_layout()
  return figure


def format_mean_std(mean: float | None, std: float | None = None, *, digits: int = 4) -> str:
  """`0.7190 ± 0.0123` (the std only when given and positive), or the missing mark."""
  if mean is None or not math.isfinite(mean):
    return MISSING
  if std is None or not math.isfinite(std) or std <= 0:
    return f"{mean:.{digits}f}"
  return f"{mean:.{digits}f} ± {std:.{digits}f}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]], *,
                   bold: Sequence[tuple[int, int]] = ()) -> str:
  """A pipe table; `bold` lists (row, column) cells to embolden (the paper's top-two marks)."""
  marked = {tuple(cell) for cell in bold}
  width = len(headers)
  lines = ["| " + " | ".join(str(h) for h in headers) + " |",
           "|" + "|".join(["---"] + ["---:"] * (width - 1)) + "|"]
  for row_index, row in enumerate(rows):
    if len(row) != width:
      raise ValueError(f"table row {row_index} has {len(row)} cells, the header {width}")
    cells = [f"**{cell}**" if (row_index, col) in marked and str(cell) != MISSING else str(cell)
             for col, cell in enumerate(row)]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def top_two(values: Sequence[float | None]) -> list[int]:
  """Indices of the two largest values (the paper's bold marks), ignoring missing ones."""
  present = [(v, i) for i, v in enumerate(values) if v is not None and math.isfinite(v)]
  return [i for _, i in sorted(present, key=lambda item: -item[0])[:2]]

"""A finished run as one readable document: `report.md` (and optionally `report.html`).

  python -m rcn_jax.analysis.report --workdir=RUN [--html] [--no_cams]

Sections: the setup (model, data, protocol, training, execution, versions), pooled results per
scope (mean ± std over seeds, subject-bootstrap intervals), every seed, confusion matrices
(tables and the engine's PNGs), learning curves (from `train_loss.csv`), class activation maps
(`rcn_jax.analysis.cam`), and per-fold accuracy. Everything is read from the run folder; the CAM grid also
needs the run's samples (see `rcn_jax.run_folder.load_run_composite`), and is left out with a note when
they cannot be loaded.
"""

from __future__ import annotations

import argparse
import dataclasses
import html
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rcn_jax import errors, plots, run_folder, scoring
from rcn_jax.analysis import cam

SCOPE_NAMES = {"composite": "composite (all tested samples)", "smic": "SMIC", "casme2": "CASME II",
               "samm": "SAMM"}


@dataclasses.dataclass(frozen=True)
class Heading:
  text: str
  level: int = 2


@dataclasses.dataclass(frozen=True)
class Paragraph:
  text: str


@dataclasses.dataclass(frozen=True)
class Table:
  headers: Sequence[str]
  rows: Sequence[Sequence[object]]


@dataclasses.dataclass(frozen=True)
class Image:
  path: str  # relative to the run folder
  caption: str


Block = Heading | Paragraph | Table | Image


def render_markdown(blocks: Sequence[Block]) -> str:
  """The blocks as Markdown."""
  lines = []
  for block in blocks:
    if isinstance(block, Heading):
      lines.append(f"{'#' * block.level} {block.text}")
    elif isinstance(block, Paragraph):
      lines.append(block.text)
    elif isinstance(block, Table):
      lines.append(plots.markdown_table(block.headers, block.rows))
    else:
      lines.append(f"![{block.caption}]({block.path})")
    lines.append("")
  return "\n".join(lines)


def render_html(blocks: Sequence[Block], title: str) -> str:
  """The blocks as a self-contained HTML page (images referenced beside it)."""
  body = []
  for block in blocks:
    if isinstance(block, Heading):
      body.append(f"<h{block.level}>{html.escape(block.text)}</h{block.level}>")
    elif isinstance(block, Paragraph):
      body.append(f"<p>{_inline_code(html.escape(block.text))}</p>")
    elif isinstance(block, Table):
      header = "".join(f"<th>{html.escape(str(h))}</th>" for h in block.headers)
      rows = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                     for row in block.rows)
      body.append(f"<table><thead><tr>{header}</tr></thead><tbody>{rows}</tbody></table>")
    else:
      body.append(f'<figure><img src="{html.escape(block.path)}" alt="{html.escape(block.caption)}">'
                  f"<figcaption>{html.escape(block.caption)}</figcaption></figure>")
  style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.4}"
           "table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;"
           "text-align:right}td:first-child,th:first-child{text-align:left}img{max-width:100%}"
           "code{background:#f3f3f3}")
  return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
          f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def _inline_code(text: str) -> str:
  parts = text.split("`")
  return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def _interval(entry: Mapping[str, Any], metric: str) -> str:
  interval = entry.get(f"{metric}_interval")
  return f"[{interval[0]:.3f}, {interval[1]:.3f}]" if interval else plots.MISSING


def setup_blocks(results: Mapping[str, Any]) -> list[Block]:
  """Model, data, protocol, training and execution, from `results.json`."""
  config = results["config"]
  model, data, train = config["model"], config["data"], config["train"]
  training, execution, timings = results["training"], results["execution"], results["timings"]
  magnification = data.get("magnification")
  rows = [
      ["model", f"{model['preset']}: fm {model['features']}, pool {model['pool_size']} × {model['pool_size']}, "
                f"dropout {model['dropout_rate']}"],
      ["architecture selection", scoring.selection_text(results)],
      ["data", f"{data['name']} ({data['flow_backend']} flow), datasets {', '.join(data['datasets'])}, "
               f"input {data['resolution']} × {data['resolution']}"
               + (f", motion magnified (alpha {magnification['alpha']})" if magnification else "")],
      ["protocol", f"{training['protocol']}: {training['folds']} folds × {len(results['seeds'])} seed(s) "
                   f"({', '.join(str(s['seed']) for s in results['seeds'])})"],
      ["training", f"preset {train['preset']}: SGD lr {train['learning_rate']}, momentum {train['momentum']}, "
                   f"weight decay {train['weight_decay']}, batch {train['batch_size']}, at most "
                   f"{train['num_epochs']} epochs" + (f", stop below training loss {train['loss_threshold']}"
                                                      if train["loss_threshold"] else "")],
      ["epochs trained", f"{training['epochs_trained_min']}..{training['epochs_trained_max']} "
                         f"(mean {training['epochs_trained_mean']:.1f}); final training loss "
                         f"{training['final_train_loss_mean']:.4f} (mean over models)"],
      ["execution", f"{execution['strategy']} on {len(execution['devices'])} device(s), "
                    f"{execution['models']} models in {execution['slots']} slots"],
      ["time", f"data {timings['data_s']:.1f} s, training {timings['train_s']:.1f} s"
               + (f" (first epoch, with compilation, {timings['first_epoch_s']:.1f} s)"
                  if "first_epoch_s" in timings else "")
               + f", test {timings['predict_s']:.1f} s, total {timings.get('total_s', 0.0):.1f} s"],
      ["versions", ", ".join(f"{k} {v}" for k, v in results.get("versions", {}).items())],
  ]
  return [Heading("Setup"), Table(["", "value"], rows)]


def results_blocks(results: Mapping[str, Any]) -> list[Block]:
  """Pooled scores per scope and per seed."""
  bootstrap = results.get("bootstrap", {})
  rows = [[SCOPE_NAMES.get(s, s), e["num_samples"], plots.format_mean_std(e["uar"], e.get("uar_std")),
           plots.format_mean_std(e["uf1"], e.get("uf1_std")), _interval(e, "uar"), _interval(e, "uf1")]
          for s, e in scoring.scopes(results).items()]
  blocks: list[Block] = [
      Heading("Results"),
      Paragraph("Pooled LOSO scores: the test predictions of all folds are concatenated before UAR and UF1 are "
                "computed; mean ± std over seeds. Intervals: subject-level bootstrap "
                f"({bootstrap.get('resamples', 0)} resamples, {bootstrap.get('confidence', 0.95):.0%})."),
      Table(["scope", "samples", "UAR", "UF1", "UAR interval", "UF1 interval"], rows)]
  datasets = list(results.get("per_dataset", {}))
  seed_rows = [[s["seed"], f"{s['uar']:.4f}", f"{s['uf1']:.4f}"]
               + [f"{s['per_dataset'][d]['uar']:.4f} / {s['per_dataset'][d]['uf1']:.4f}"
                  if d in s["per_dataset"] else plots.MISSING for d in datasets] for s in results["seeds"]]
  blocks += [Heading("Every seed", 3),
             Table(["seed", "UAR", "UF1"] + [f"{SCOPE_NAMES.get(d, d)} UAR / UF1" for d in datasets], seed_rows)]
  return blocks


def confusion_blocks(results: Mapping[str, Any], workdir: str) -> list[Block]:
  """A count table per scope (rows true, columns predicted), with the engine's PNG beside it."""
  names = results["class_names"]
  seeds = len(results["seeds"])
  blocks: list[Block] = [Heading("Confusion matrices"),
                         Paragraph("Rows: true class; columns: predicted class"
                                   + (f"; counts summed over {seeds} seeds." if seeds > 1 else "."))]
  for scope, entry in scoring.scopes(results).items():
    counts = entry["confusion"]
    blocks += [Heading(SCOPE_NAMES.get(scope, scope), 3),
               Table(["true \\ predicted", *names], [[name, *row] for name, row in zip(names, counts)])]
    if os.path.exists(os.path.join(workdir, run_folder.confusion_png(scope))):
      blocks.append(Image(run_folder.confusion_png(scope), f"confusion matrix, {scope}"))
  return blocks


def learning_blocks(results: Mapping[str, Any], workdir: str) -> list[Block]:
  """The learning-curve PNG (written here) and its reading."""
  names, losses = run_folder.read_train_losses(workdir)
  final = [row[np.isfinite(row)][-1] for row in losses if np.isfinite(row).any()]
  if not final:
    return [Heading("Learning curves"),
            Paragraph(f"No training loss in `{run_folder.TRAIN_LOSS}`: the run trained no epoch (its models are "
                      "the initial weights, `train.num_epochs=0`).")]
  threshold = results["config"]["train"]["loss_threshold"]
  plots.learning_curves(os.path.join(workdir, run_folder.LEARNING_CURVES), losses, names=names, threshold=threshold,
                        title=f"training loss of {len(names)} fold models")
  return [Heading("Learning curves"),
          Paragraph(f"Epoch-mean training loss of every fold model (`{run_folder.TRAIN_LOSS}`); thick: the mean over "
                    f"models. Final losses: min {min(final):.4f}, median {np.median(final):.4f}, "
                    f"max {max(final):.4f}."),
          Image(run_folder.LEARNING_CURVES, "learning curves")]


def cam_blocks(workdir: str, cams: bool) -> list[Block]:
  """The CAM grid (written if missing), or a note why there is none."""
  blocks: list[Block] = [Heading("Class activation maps")]
  path = os.path.join(workdir, run_folder.CAMS)
  if cams and not os.path.exists(path):
    try:
      cam.write_run_cams(workdir, path)
    except (FileNotFoundError, ValueError) as error:
      return blocks + [Paragraph(f"No CAM grid: {error}")]
  if not os.path.exists(path):
    return blocks + [Paragraph(f"No CAM grid (write one with `python -m rcn_jax.analysis.cam --workdir={workdir}`).")]
  return blocks + [Paragraph("Per true class, the most confident correct and failed test samples, each explained "
                             "by the fold model that held its subject out: the CAM of the predicted class "
                             "over the flow map and the apex frame."),
                   Image(run_folder.CAMS, "class activation maps")]


def fold_blocks(results: Mapping[str, Any]) -> list[Block]:
  accuracy = results.get("per_fold_accuracy", {})
  return [Heading("Per-fold accuracy"),
          Paragraph("Accuracy on each held-out subject (mean over seeds); single subjects have few samples, "
                    "so these are for spotting outliers, not for averaging."),
          Table(["fold", "accuracy"], [[fold, f"{value:.3f}"] for fold, value in accuracy.items()])]


def build_report(workdir: str, *, cams: bool = True) -> list[Block]:
  """Every section of a run's report.

  Args:
    workdir: a finished run folder.
    cams: write the CAM grid when it is missing (needs the run's samples).

  Returns:
    The blocks.
  """
  results = run_folder.read_results(workdir)
  config = results["config"]
  title = f"Run report: {config['model']['preset']} ({Path(workdir).resolve().name})"
  return [Heading(title, 1),
          Paragraph(f"Run folder `{workdir}`. Metrics follow the MEGC2019 composite protocol (pooled UAR and UF1 "
                    "over the classes present in each scope)."),
          *setup_blocks(results), *results_blocks(results), *confusion_blocks(results, workdir),
          *learning_blocks(results, workdir), *cam_blocks(workdir, cams), *fold_blocks(results)]


def write_report(workdir: str, *, html_too: bool = False, cams: bool = True) -> list[str]:
  """Writes `report.md` (and `report.html`) into the run folder; returns their paths."""
  blocks = build_report(workdir, cams=cams)
  paths = [os.path.join(workdir, run_folder.REPORT_MARKDOWN)]
  Path(paths[0]).write_text(render_markdown(blocks))
  if html_too:
    paths.append(os.path.join(workdir, run_folder.REPORT_HTML))
    Path(paths[1]).write_text(render_html(blocks, blocks[0].text))
  return paths


def main(argv: Sequence[str] | None = None) -> int:
  """Runs the command line; returns the exit status."""
  parser = argparse.ArgumentParser(prog="python -m rcn_jax.analysis.report", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--workdir", required=True, help="a finished run folder")
  parser.add_argument("--html", action="store_true", help="also write report.html")
  parser.add_argument("--no_cams", action="store_true", help="do not compute the CAM grid")
  errors.add_verbosity_argument(parser)
  args = parser.parse_args(argv)
  return errors.run_main(
      lambda: print("\n".join(write_report(args.workdir, html_too=args.html, cams=not args.no_cams))),
      verbose=args.verbosity > 0)


if __name__ == "__main__":
  sys.exit(main())

"""report.md / report.html of a finished run: results, confusion matrices, learning curves, CAMs."""

import json
import re

from rcn_jax import plots
from rcn_jax.analysis import report
from fixtures.shared_run import shared_tiny_run


def test_report_of_a_tiny_run(tmp_path_factory, fast_compile, monkeypatch):
  run_dir = shared_tiny_run(tmp_path_factory)
  figures = {}
  saved = plots.save
  monkeypatch.setattr(plots, "save", lambda figure, path: figures.setdefault(path, figure) and saved(figure, path))
  paths = report.write_report(str(run_dir), html_too=True)
  assert [p.rsplit("/", 1)[-1] for p in paths] == ["report.md", "report.html"]
  text = (run_dir / "report.md").read_text()
  results = json.loads((run_dir / "results.json").read_text())
  for heading in ("## Setup", "## Results", "## Confusion matrices", "## Learning curves",
                  "## Class activation maps", "## Per-fold accuracy"):
    assert heading in text
  # How the architecture was chosen: a preset, no search.
  assert results["selection"] == {"search": "none", "search_workdir": None, "architectures": {"rcn": [
      f for f in results["per_fold_accuracy"]]}}
  assert "| architecture selection | search: none |" in text
  # The pooled scores of every scope, as results.json holds them.
  assert f"| composite (all tested samples) | 12 | {results['uar']:.4f} | {results['uf1']:.4f} |" in text
  for dataset, name in (("casme2", "CASME II"), ("smic", "SMIC"), ("samm", "SAMM")):
    entry = results["per_dataset"][dataset]
    assert f"| {name} | {entry['num_samples']} | {entry['uar']:.4f} | {entry['uf1']:.4f} |" in text
  # Confusion counts with class names on both axes.
  counts = results["confusion"]
  assert "| true \\ predicted | negative | positive | surprise |" in text
  assert f"| negative | {counts[0][0]} | {counts[0][1]} | {counts[0][2]} |" in text
  # Every image the report shows exists beside it.
  images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
  assert {"learning_curves.png", "cams.png", "confusion_composite.png"} <= set(images)
  for image in images:
    assert (run_dir / image).stat().st_size > 0
  curve = figures[str(run_dir / "learning_curves.png")]
  axis = curve.axes[0]
  assert axis.get_xlabel() == "epoch" and axis.get_ylabel().startswith("training loss")
  assert "mean over models" in [t.get_text() for t in axis.get_legend().get_texts()]
  assert f"| {next(iter(results['per_fold_accuracy']))} |" in text
  page = (run_dir / "report.html").read_text()
  tables = sum(line.startswith("|---") for line in text.splitlines())
  assert page.startswith("<!DOCTYPE html>") and page.count("<table>") == tables
  for image in images:
    assert f'src="{image}"' in page


def test_renderers_escape_and_align():
  blocks = [report.Heading("A <b> & c", 1), report.Paragraph("uses `x < y`"),
            report.Table(["a", "b"], [["<1>", 2]]), report.Image("x.png", "caption")]
  markdown = report.render_markdown(blocks)
  assert markdown.splitlines()[:3] == ["# A <b> & c", "", "uses `x < y`"]
  assert "| <1> | 2 |" in markdown and "![caption](x.png)" in markdown
  page = report.render_html(blocks, "t")
  assert "<h1>A &lt;b&gt; &amp; c</h1>" in page and "<code>x &lt; y</code>" in page
  assert "<td>&lt;1&gt;</td>" in page


def test_a_missing_run_folder_is_an_error(tmp_path, capsys):
  assert report.main([f"--workdir={tmp_path / 'none'}"]) == 2
  assert "results.json: missing" in capsys.readouterr().err

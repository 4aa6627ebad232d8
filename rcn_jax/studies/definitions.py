"""The studies, one function each from a `Runner` to its `Outputs`, and `run_study`."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rcn_jax import errors, plots
from rcn_jax import sample_list
from rcn_jax.analysis import cam
from rcn_jax.analysis.trained_run import load_run
from rcn_jax.studies.runner import Runner
from rcn_jax.studies.search_study import search_study
from rcn_jax.studies.specs import RunSpec
from rcn_jax.studies.table5 import table5_study
from rcn_jax.studies.tables import (DATASET_NAMES, Outputs, format_duration, grid_table, paper_name, px,
                                    run_hours, score, score_grid)

PARTIAL_COMPOSITES = (("smic", "casme2"), ("casme2", "samm"), ("smic", "samm"))
# Paper Table V (LOSO, MEGC2019): (UAR, UF1) overall, SMIC, CASME II, SAMM.
PAPER_TABLE_V = {
    "rcn_a": {"composite": (0.7190, 0.7432), "smic": (0.6441, 0.6326), "casme2": (0.8123, 0.8512),
              "samm": (0.6715, 0.7601)},
    "rcn_s": {"composite": (0.7106, 0.7466), "smic": (0.6572, 0.6519), "casme2": (0.7914, 0.8360),
              "samm": (0.6565, 0.7647)},
    "rcn_w": {"composite": (0.7100, 0.7422), "smic": (0.6600, 0.6584), "casme2": (0.8131, 0.8522),
              "samm": (0.6164, 0.7164)},
    "rcn_f": {"composite": (0.7052, 0.7164), "smic": (0.5980, 0.5991), "casme2": (0.8087, 0.8563),
              "samm": (0.6771, 0.6976)},
}
EXEMPLAR = ("casme2", "sub02", "EP09_01")  # the sample of paper Fig. 2 ("negative")


def _resolution_study(runner: Runner, study: str, title: str, models: Sequence[str], figure: str) -> Outputs:
  scale = runner.scale
  fm, pool, _ = scale.base
  spec_of = lambda model, res: RunSpec(model, fm, pool, res)  # noqa: E731
  results = {spec_of(m, r).name: runner.run(spec_of(m, r)) for m in models for r in scale.resolutions}
  outputs = Outputs(study, title)
  if not runner.writes:
    return outputs
  means, stds = score_grid(results, models, scale.resolutions, spec_of)
  names = [paper_name(m) for m in models]
  path = os.path.join(runner.workdir, f"{study}.png")
  plots.line_plot(path, [plots.Panel(
      title=f"{figure}: UAR by flow-map resolution (fm {fm}, pool {pool} × {pool})",
      x_label="flow-map resolution (px per side)", y_label="UAR (pooled LOSO)", x=list(scale.resolutions),
      series=dict(zip(names, means)), errors=dict(zip(names, stds)))])
  outputs.figures.append(path)
  outputs.sections += [f"## {figure}: UAR, feature maps {fm}, pooling size {pool} × {pool}",
                       grid_table(names, [px(r) for r in scale.resolutions], means, stds)]
  uf1_means, uf1_stds = score_grid(results, models, scale.resolutions, spec_of, "uf1")
  outputs.sections += ["### UF1 of the same runs", grid_table(names, [px(r) for r in scale.resolutions],
                                                             uf1_means, uf1_stds)]
  outputs.numbers = {"models": list(models), "resolutions": list(scale.resolutions), "uar": means,
                     "uar_std": stds, "uf1": uf1_means, "runs": sorted(results)}
  return outputs


def depth_study(runner: Runner) -> Outputs:
  """Fig. 1 (UAR of Models 1-4 by resolution) and Fig. 2 (their CAMs of one sample)."""
  outputs = _resolution_study(runner, "depth", "Depth x resolution (paper Fig. 1, Fig. 2)",
                              runner.scale.depth_models, "Fig. 1")
  if not runner.writes:
    return outputs
  path = _depth_cams(runner)
  if path:
    outputs.figures.append(path)
  return outputs


def _depth_cams(runner: Runner) -> str | None:
  scale = runner.scale
  fm, pool, _ = scale.base
  specs = [[RunSpec(m, fm, pool, r) for r in scale.cam_resolutions] for m in scale.depth_models]
  runs = [[load_run(runner.run_dir(s)) for s in row] for row in specs]
  composites = [[runner.composite(s) for s in row] for row in specs]
  trained = set.intersection(*({m.fold for m in run.models} for row in runs for run in row))
  first = composites[0][0]
  keys = list(zip(first.datasets, first.subjects, first.samples))
  tested = [k for k in keys if f"{k[0]}/{k[1]}" in trained]
  if not tested:
    return None
  exemplar = EXEMPLAR if EXEMPLAR in tested else next(
      (k for k in tested if first.labels[keys.index(k)] == 0), tested[0])
  cells = [[(run, composite, list(zip(composite.datasets, composite.subjects, composite.samples)).index(exemplar))
            for run, composite in zip(run_row, composite_row)] for run_row, composite_row in zip(runs, composites)]
  label = int(first.labels[keys.index(exemplar)])
  apex = runner.data.apex_frame(exemplar, label)
  path = os.path.join(runner.workdir, "depth_cams.png")
  return cam.comparison_grid(path, cells, row_titles=[paper_name(m) for m in scale.depth_models],
                             column_titles=[f"flow map {px(r)}" for r in scale.cam_resolutions],
                             suptitle=f"Fig. 2: CAMs of the predicted class, sample {'/'.join(exemplar)} "
                             f"(true class {sample_list.CLASS_NAMES[label]}), by its held-out fold models",
                             apex_frame=apex)


def resolution_study(runner: Runner) -> Outputs:
  """Fig. 7: UAR of the RCN variants by flow-map resolution."""
  return _resolution_study(runner, "resolution", "Flow-map resolution of the RCN variants (paper Fig. 7)",
                           runner.scale.variant_models, "Fig. 7")


def pool_study(runner: Runner) -> Outputs:
  """Fig. 8: UAR by adaptive-pool size at the block resolutions."""
  scale = runner.scale
  fm = scale.base[0]
  models = scale.sweep_models
  outputs = Outputs("pool", "Pooling size (paper Fig. 8)")
  panels, numbers = [], {}
  names = [paper_name(m) for m in models]
  for resolution in scale.block_resolutions:
    spec_of = lambda model, pool, r=resolution: RunSpec(model, fm, pool, r)  # noqa: E731
    results = {spec_of(m, p).name: runner.run(spec_of(m, p)) for m in models for p in scale.pool_sizes}
    if not runner.writes:
      continue
    means, stds = score_grid(results, models, scale.pool_sizes, spec_of)
    panels.append(plots.Panel(title=f"flow map {px(resolution)}, fm {fm}", x_label="adaptive-pool size P (P × P)",
                              y_label="UAR (pooled LOSO)", x=list(scale.pool_sizes), series=dict(zip(names, means)),
                              errors=dict(zip(names, stds))))
    outputs.sections += [f"## Flow-map resolution: {px(resolution)}, feature maps: {fm}",
                         grid_table(names, [f"P = {p} × {p}" for p in scale.pool_sizes], means, stds)]
    numbers[str(resolution)] = {"uar": means, "uar_std": stds}
  if runner.writes:
    path = os.path.join(runner.workdir, "pool.png")
    plots.line_plot(path, panels, suptitle="Fig. 8: UAR by pooling size")
    outputs.figures.append(path)
    outputs.numbers = {"models": list(models), "pool_sizes": list(scale.pool_sizes), "by_resolution": numbers}
  return outputs


def features_study(runner: Runner) -> Outputs:
  """Fig. 9 (UAR by feature maps at the block resolutions) and Table II (models x fm x pool)."""
  scale = runner.scale
  _, base_pool, base_resolution = scale.base
  outputs = Outputs("features", "Feature maps (paper Fig. 9, Table II)")
  panels, numbers = [], {"fig9": {}, "table2": {}}
  names = [paper_name(m) for m in scale.sweep_models]
  for resolution in scale.block_resolutions:
    spec_of = lambda model, fm, r=resolution: RunSpec(model, fm, base_pool, r)  # noqa: E731
    results = {spec_of(m, f).name: runner.run(spec_of(m, f)) for m in scale.sweep_models for f in scale.features}
    if not runner.writes:
      continue
    means, stds = score_grid(results, scale.sweep_models, scale.features, spec_of)
    panels.append(plots.Panel(title=f"flow map {px(resolution)}, pool {base_pool} × {base_pool}",
                              x_label="feature maps (fm)", y_label="UAR (pooled LOSO)", x=list(scale.features),
                              series=dict(zip(names, means)), errors=dict(zip(names, stds))))
    numbers["fig9"][str(resolution)] = {"uar": means, "uar_std": stds}
  table_names = [paper_name(m) for m in scale.table2_models]
  table_sections = []
  for pool in scale.table2_pools:
    spec_of = lambda model, fm, p=pool: RunSpec(model, fm, p, base_resolution)  # noqa: E731
    results = {spec_of(m, f).name: runner.run(spec_of(m, f)) for m in scale.table2_models for f in scale.features}
    if not runner.writes:
      continue
    means, stds = score_grid(results, scale.table2_models, scale.features, spec_of)
    table_sections += [f"### Flow-map Resolution: {px(base_resolution)}, Pooling Size: {pool} × {pool}",
                       grid_table(table_names, [f"fm = {f}" for f in scale.features], means, stds)]
    numbers["table2"][str(pool)] = {"uar": means, "uar_std": stds}
  if runner.writes:
    path = os.path.join(runner.workdir, "features.png")
    plots.line_plot(path, panels, suptitle="Fig. 9: UAR by number of feature maps")
    outputs.figures.append(path)
    outputs.sections += ["## Table II: UAR of the models by feature maps (fm) and pooling size", *table_sections]
    outputs.numbers = {"fig9_models": list(scale.sweep_models), "table2_models": list(scale.table2_models),
                       "features": list(scale.features), **numbers}
  return outputs


def magnification_study(runner: Runner) -> Outputs:
  """Table III: UAR without and with motion magnification."""
  scale = runner.scale
  fm, pool, _ = scale.base
  models = scale.variant_models
  names = [paper_name(m) for m in models]
  outputs = Outputs("magnification", "Motion magnification (paper Table III)")
  panels, numbers = [], {}
  for resolution in scale.block_resolutions:
    spec_of = lambda model, magnified, r=resolution: RunSpec(model, fm, pool, r, magnified=magnified)  # noqa: E731
    results = {spec_of(m, mm).name: runner.run(spec_of(m, mm)) for m in models for mm in (False, True)}
    if not runner.writes:
      continue
    means, stds = score_grid(results, models, (False, True), spec_of)
    outputs.sections += [f"### Flow-map Resolution: {px(resolution)}",
                         grid_table(names, ["without MM", "with MM"], means, stds)]
    panels.append(plots.Panel(title=f"flow map {px(resolution)}", x_label="model", y_label="UAR (pooled LOSO)",
                              x=names, series={"without MM": [m[0] for m in means], "with MM": [m[1] for m in means]},
                              errors={"without MM": [s[0] for s in stds], "with MM": [s[1] for s in stds]}))
    numbers[str(resolution)] = {"uar": means, "uar_std": stds}
  if runner.writes:
    path = os.path.join(runner.workdir, "magnification.png")
    plots.bar_plot(path, panels, suptitle="Table III: UAR without and with motion magnification (MM)")
    outputs.figures.append(path)
    magnification = getattr(runner.data, "magnification", None)
    outputs.sections.insert(0, "Magnification: linear Eulerian (data_prep.magnify), "
                            f"{json.dumps(magnification.to_json()) if magnification else 'default'}.")
    outputs.numbers = {"models": list(models), "columns": ["without MM", "with MM"], "by_resolution": numbers}
  return outputs


def partial_study(runner: Runner) -> Outputs:
  """Table IV: UAR on the three two-dataset composites."""
  scale = runner.scale
  resolution = scale.base[2]
  models = scale.sweep_models
  names = [paper_name(m) for m in models]
  columns = ["-".join(DATASET_NAMES[d] for d in pair) for pair in PARTIAL_COMPOSITES]
  outputs = Outputs("partial", "Partially composite datasets (paper Table IV)")
  panels, numbers = [], {}
  for fm, pool in scale.partial_blocks:
    spec_of = lambda model, pair, f=fm, p=pool: RunSpec(model, f, p, resolution, datasets=pair)  # noqa: E731
    results = {spec_of(m, pair).name: runner.run(spec_of(m, pair)) for m in models for pair in PARTIAL_COMPOSITES}
    if not runner.writes:
      continue
    means, stds = score_grid(results, models, PARTIAL_COMPOSITES, spec_of)
    outputs.sections += [f"### Flow-map Resolution: {px(resolution)}, Feature Maps: {fm}, "
                         f"Pooling Size: {pool} × {pool}",
                         grid_table(names, columns, means, stds)]
    panels.append(plots.Panel(title=f"fm {fm}, pool {pool} × {pool}", x_label="partial composite",
                              y_label="UAR (pooled LOSO)", x=columns, series=dict(zip(names, means)),
                              errors=dict(zip(names, stds))))
    numbers[f"fm{fm}_p{pool}"] = {"uar": means, "uar_std": stds}
  if runner.writes:
    path = os.path.join(runner.workdir, "partial.png")
    plots.bar_plot(path, panels, suptitle="Table IV: UAR on partially composite datasets")
    outputs.figures.append(path)
    outputs.numbers = {"models": list(models), "composites": columns, "blocks": numbers}
  return outputs


def comparison_study(runner: Runner) -> Outputs:
  """Table V: overall and per-dataset UAR and UF1 of RCN-A/S/W/F, mean ± std over seeds."""
  scale = runner.scale
  resolution = scale.base[2]
  specs = [RunSpec(m, fm, pool, resolution, seeds=scale.comparison_seeds) for m, fm, pool in scale.comparison]
  results = {s.name: runner.run(s, scale.comparison_overrides) for s in specs}
  outputs = Outputs("comparison", "Comparison table (paper Table V)")
  if not runner.writes:
    return outputs
  scopes = ("composite", "smic", "casme2", "samm")
  headers = ["Approaches"] + [f"{'MEGC2019' if s == 'composite' else DATASET_NAMES[s]} {m}"
                              for s in scopes for m in ("UAR", "UF1")]
  rows, values, numbers = [], [], {}
  for spec in specs:
    entry = results[spec.name]
    cells = [score(entry, metric, scope) for scope in scopes for metric in ("uar", "uf1")]
    rows.append([f"{paper_name(spec.model)} (fm {spec.features}, pool {spec.pool_size} × {spec.pool_size})"]
                + [plots.format_mean_std(m, s) for m, s in cells])
    values.append([m for m, _ in cells])
    numbers[spec.model] = {f"{scope}_{metric}": list(score(entry, metric, scope)) for scope in scopes
                           for metric in ("uar", "uf1")}
  bold = [(row, col + 1) for col in range(len(headers) - 1) for row in plots.top_two([v[col] for v in values])]
  seeds = ", ".join(map(str, scale.comparison_seeds))
  outputs.sections += [f"## Table V: UAR and UF1 (mean ± std over seeds {seeds}), flow map {px(resolution)}",
                       plots.markdown_table(headers, rows, bold=bold)]
  reported = [[f"{paper_name(m)} (paper)"] + [f"{PAPER_TABLE_V[m][s][i]:.4f}" for s in scopes for i in (0, 1)]
              for m, _, _ in scale.comparison if m in PAPER_TABLE_V]
  if reported:
    outputs.sections += ["### Reported in the paper (Table V), for reference: same protocol and metrics, the "
                         "paper's own data, training and model selection", plots.markdown_table(headers, reported)]
  names = [paper_name(s.model) for s in specs]
  panels = []
  for metric in ("uar", "uf1"):
    pairs = {n: [score(results[s.name], metric, scope) for scope in scopes] for n, s in zip(names, specs)}
    panels.append(plots.Panel(title=f"{metric.upper()} by scope", x_label="evaluated samples",
                              y_label=f"{metric.upper()} (pooled LOSO, mean over seeds)",
                              x=["MEGC2019", "SMIC", "CASME II", "SAMM"],
                              series={n: [m for m, _ in p] for n, p in pairs.items()},
                              errors={n: [s for _, s in p] for n, p in pairs.items()}))
  path = os.path.join(runner.workdir, "comparison.png")
  plots.bar_plot(path, panels, suptitle=f"Table V: error bars are std over seeds {seeds}")
  outputs.figures.append(path)
  outputs.numbers = {"seeds": list(scale.comparison_seeds), "models": numbers}
  return outputs


def time_study(runner: Runner) -> Outputs:
  """Table VI: training and test time of every fold of a run, by resolution."""
  scale = runner.scale
  models = scale.variant_models
  names = [paper_name(m) for m in models]
  outputs = Outputs("time", "Computational time (paper Table VI)")
  panels, numbers = [], {}
  for fm, pool in scale.time_blocks:
    spec_of = lambda model, r, f=fm, p=pool: RunSpec(model, f, p, r)  # noqa: E731
    results = {spec_of(m, r).name: runner.run(spec_of(m, r)) for m in models for r in scale.time_resolutions}
    if not runner.writes:
      continue
    hours = [[run_hours(results[spec_of(m, r).name]) for r in scale.time_resolutions] for m in models]
    per_epoch = [[_seconds_per_model_epoch(results[spec_of(m, r).name]) for r in scale.time_resolutions]
                 for m in models]
    outputs.sections += [f"### Feature maps: {fm}, Pooling Size: {pool} × {pool}",
                         plots.markdown_table(["Approaches"] + [f"fs = {r}" for r in scale.time_resolutions],
                                              [[n] + [format_duration(h) for h in row]
                                               for n, row in zip(names, hours)]),
                         "Seconds per fold-epoch (training time / (models × epochs), without the first "
                         "epoch, which includes compilation, when a run has more):",
                         plots.markdown_table(["Approaches"] + [f"fs = {r}" for r in scale.time_resolutions],
                                              [[n] + [plots.format_mean_std(v, digits=3) for v in row]
                                               for n, row in zip(names, per_epoch)])]
    panels.append(plots.Panel(title=f"fm {fm}, pool {pool} × {pool}", x_label="flow-map resolution fs (px per side)",
                              y_label="training + test time (hours)", x=list(scale.time_resolutions),
                              series=dict(zip(names, hours))))
    numbers[f"fm{fm}_p{pool}"] = {"hours": hours, "seconds_per_fold_epoch": per_epoch}
  if runner.writes:
    path = os.path.join(runner.workdir, "time.png")
    plots.line_plot(path, panels, suptitle="Table VI: training and test time of all folds")
    outputs.figures.append(path)
    outputs.sections.insert(0, "Time of each run as the engine measured it (`timings.train_s + predict_s` in its "
                            "results.json; compilation included) on the machine that trained it; a run "
                            "shared with another study keeps its first timing.")
    outputs.numbers = {"models": list(models), "resolutions": list(scale.time_resolutions), "blocks": numbers}
  return outputs


def _seconds_per_model_epoch(results: Mapping[str, Any] | None) -> float | None:
  """Training seconds per model and epoch, leaving out the first epoch (compilation) when there are others."""
  if results is None:
    return None
  training, timings = results["training"], results["timings"]
  models = training["folds"] * len(results["seeds"])
  epochs, seconds = training["epochs_trained_mean"], timings["train_s"]
  if "first_epoch_s" in timings and epochs > 1:
    epochs, seconds = epochs - 1, seconds - timings["first_epoch_s"]
  return seconds / max(models * epochs, 1e-9)


STUDIES: dict[str, Callable[[Runner], Outputs]] = {
    "depth": depth_study, "resolution": resolution_study, "pool": pool_study, "features": features_study,
    "magnification": magnification_study, "partial": partial_study, "comparison": comparison_study,
    "time": time_study, "search": search_study, "table5": table5_study,
}


def run_study(name: str, runner: Runner) -> Outputs:
  """Runs one study (its missing runs first); writes its outputs unless it is a dry run or not process 0.

  Args:
    name: a key of `STUDIES`.
    runner: the runner (workdir, scale, data, training preset).

  Returns:
    The outputs (Markdown path in `sections`' file, figures, numbers).
  """
  if name not in STUDIES:
    raise errors.UserError(f"--study={name!r}: expected one of {sorted(STUDIES)} or all")
  os.makedirs(runner.workdir, exist_ok=True)
  outputs = STUDIES[name](runner)
  if runner.writes:
    outputs.write(runner.workdir, runner)
  return outputs

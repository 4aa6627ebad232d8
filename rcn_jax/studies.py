"""The paper's parameter studies, one command each: sweeps of LOSO runs, PNG plots, Markdown tables.

  python -m rcn_jax.studies --study=NAME --workdir=DIR [--scale=full|tiny] [--data=synthetic|megc2019]

| study | paper | sweep (full scale) |
|---|---|---|
| `depth` | Fig. 1, Fig. 2 | Models 1-4 x resolutions 20..300; CAMs of one sample (models x 40/80/150/250 px) |
| `resolution` | Fig. 7 | RCN, RCN-A, RCN-S, RCN-W, RCN-F x resolutions 20..300 |
| `pool` | Fig. 8 | the five models x pool sizes 1..9 at 60 and 100 px |
| `features` | Fig. 9, Table II | five models x fm 16/32/64 at 60 and 100 px; seven models x fm x pool 5/7 at 60 px |
| `magnification` | Table III | the five models without and with motion magnification at 60 and 100 px |
| `partial` | Table IV | the five models on SMIC-CASME II, CASME II-SAMM, SMIC-SAMM, two settings |
| `comparison` | Table V | RCN-A/S/W/F at their Table V settings, several seeds: overall and per-dataset UAR/UF1 |
| `time` | Table VI | the five models x 60/100/200/300 px x two settings: training and test time |

Every run is a config of `configs/<model>.py` with overrides, trained by
`rcn_jax.train.train_and_evaluate` in `<workdir>/runs/<run name>/`: an interrupted study resumes
(each run from its last epoch checkpoint) and studies sharing a workdir share their runs (the
basic RCN at 60 px is in five studies). Outputs: `<workdir>/<study>.md` (tables in the paper's
layout, top two per column in bold), `<workdir>/<study>*.png` and `<workdir>/<study>.json`.
`--scale=tiny` runs every study in a few CPU-minutes on built-in frames (a handful of synthetic
subjects, 1 epoch, 4 folds, fm 4): a check of the machinery, not a result. Run this from the
repository root (the model configs live in `configs/`).
"""

from __future__ import annotations

import abc
import argparse
import dataclasses
import importlib
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rcn_jax import plots, protocol
from rcn_jax.data import Composite

PAPER_NAMES = {"rcn": "RCN", "rcn_a": "RCN-A", "rcn_s": "RCN-S", "rcn_w": "RCN-W", "rcn_p": "RCN-P",
               "rcn_c": "RCN-C", "rcn_f": "RCN-F", "depth_1": "Model 1 (1 conv)",
               "depth_2": "Model 2 (1 conv + 1 rconv)", "depth_3": "Model 3 (1 conv + 2 rconv)",
               "depth_4": "Model 4 (1 conv + 3 rconv)"}
DATASET_NAMES = {"smic": "SMIC", "casme2": "CASME II", "samm": "SAMM"}
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


@dataclasses.dataclass(frozen=True)
class RunSpec:
  """One LOSO run of a sweep.

  Attributes:
    model: a model preset (`rcn`, `rcn_a`, ..., `depth_4`); its config file gives the rest.
    features: fm.
    pool_size: P.
    resolution: the flow-map side in px.
    datasets: the (partial) composite.
    magnified: the data is motion magnified.
    seeds: the run seeds.
  """
  model: str
  features: int
  pool_size: int
  resolution: int
  datasets: tuple[str, ...] = protocol.DATASETS
  magnified: bool = False
  seeds: tuple[int, ...] = (0,)

  @property
  def name(self) -> str:
    parts = [self.model, f"fm{self.features}", f"p{self.pool_size}", f"r{self.resolution}"]
    if set(self.datasets) != set(protocol.DATASETS):
      parts.append("+".join(self.datasets))
    if self.magnified:
      parts.append("mm")
    if self.seeds != (0,):
      parts.append("s" + "-".join(map(str, self.seeds)))
    return "_".join(parts)


@dataclasses.dataclass(frozen=True)
class Scale:
  """The values each study sweeps, and config overrides every run of the scale gets."""
  name: str
  base: tuple[int, int, int]  # fm, P, resolution of the paper's basic setup
  resolutions: tuple[int, ...]
  block_resolutions: tuple[int, ...]
  pool_sizes: tuple[int, ...]
  features: tuple[int, ...]
  table2_pools: tuple[int, ...]
  partial_blocks: tuple[tuple[int, int], ...]
  time_blocks: tuple[tuple[int, int], ...]
  time_resolutions: tuple[int, ...]
  cam_resolutions: tuple[int, ...]
  depth_models: tuple[str, ...]
  variant_models: tuple[str, ...]
  sweep_models: tuple[str, ...]  # pool, features (Fig. 9), partial
  table2_models: tuple[str, ...]
  comparison: tuple[tuple[str, int, int], ...]  # model, fm, P
  comparison_seeds: tuple[int, ...]
  overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  comparison_overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)


FIVE = ("rcn", "rcn_a", "rcn_s", "rcn_w", "rcn_f")
SCALES = {
    "full": Scale(
        name="full", base=(16, 5, 60), resolutions=(20, 40, 60, 80, 100, 150, 200, 250, 300),
        block_resolutions=(60, 100), pool_sizes=(1, 3, 5, 7, 9), features=(16, 32, 64),
        table2_pools=(5, 7), partial_blocks=((16, 5), (64, 7)), time_blocks=((16, 5), (64, 9)),
        time_resolutions=(60, 100, 200, 300), cam_resolutions=(40, 80, 150, 250),
        depth_models=("depth_1", "depth_2", "depth_3", "depth_4"), variant_models=FIVE, sweep_models=FIVE,
        table2_models=("rcn", "rcn_a", "rcn_s", "rcn_w", "rcn_p", "rcn_c", "rcn_f"),
        comparison=(("rcn_a", 64, 7), ("rcn_s", 16, 5), ("rcn_w", 32, 7), ("rcn_f", 32, 5)),
        comparison_seeds=(0, 1, 2)),
    "tiny": Scale(
        name="tiny", base=(4, 2, 20), resolutions=(20, 24), block_resolutions=(20,), pool_sizes=(1, 2),
        features=(4, 8), table2_pools=(2,), partial_blocks=((4, 2),), time_blocks=((4, 2),),
        time_resolutions=(20, 24), cam_resolutions=(20, 24), depth_models=("depth_1", "depth_2"),
        variant_models=("rcn", "rcn_w"), sweep_models=("rcn",), table2_models=("rcn",),
        comparison=(("rcn", 4, 2), ("rcn_w", 4, 2)), comparison_seeds=(0, 1),
        overrides={"train.num_epochs": 1, "train.batch_size": 16, "train.learning_rate": 0.05,
                   "protocol.max_folds": 4, "parallel.steps_per_call": 1, "parallel.models_per_call": 1,
                   "report.bootstrap_resamples": 0},
        comparison_overrides={"protocol.max_folds": 2}),
}


# ----------------------------------------------------------------------------------------------
# Data sources.


class DataSource(abc.ABC):
  """Where the runs' samples come from."""

  @abc.abstractmethod
  def config_overrides(self, spec: RunSpec) -> dict[str, Any]:
    """`config.data` settings of a run (e.g. `data.name`)."""

  @abc.abstractmethod
  def composite(self, spec: RunSpec) -> Composite | None:
    """The samples of a run, or None when the engine loads them from the config."""

  def apex_frames(self) -> list[np.ndarray] | None:
    """Grey apex frame per sample of `composite`, when the source has them."""
    return None

  def apex_frame(self, key: tuple[str, str, str], label: int) -> np.ndarray | None:
    """The grey apex frame of one sample (dataset, subject, sample), when it can be had."""
    del key, label
    return None


@dataclasses.dataclass
class NamedData(DataSource):
  """A flow-map dataset by name (`synthetic` or `megc2019`), as `launch.py` runs read it.

  Magnified runs read `magnified_data_dir` (a `megc2019` dataset built by `python -m
  data_prep.magnify`); for the synthetic composite it is built on first use.
  """
  name: str = "synthetic"
  data_dir: str | None = None
  flow_backend: str = "tvl1"
  magnification: Any = None  # data_prep.magnify.MagnificationConfig
  magnified_data_dir: str | None = None
  workers: int = 1

  def config_overrides(self, spec: RunSpec) -> dict[str, Any]:
    overrides = {"data.name": self.name, "data.data_dir": self.data_dir, "data.flow_backend": self.flow_backend}
    if spec.magnified:
      overrides.update({"data.name": "megc2019", "data.data_dir": self._magnified_dir(),
                        "data.magnification": self.magnification.to_json()})
    return overrides

  def _magnified_dir(self) -> str:
    if self.magnified_data_dir is None:
      raise ValueError("--magnified_data_dir: the magnification study needs the magnified dataset; build it "
                       "with python -m data_prep.magnify --alpha=A -- <data_prep.build arguments> --out=DIR")
    if self.name == "synthetic":
      from data_prep import magnify  # pylint: disable=g-import-not-at-top
      magnify.build_magnified_synthetic(self.magnified_data_dir, self.magnification, backend=self.flow_backend,
                                        workers=self.workers)
    return self.magnified_data_dir

  def composite(self, spec: RunSpec) -> Composite | None:
    return None

  def apex_frame(self, key: tuple[str, str, str], label: int) -> np.ndarray | None:
    if self.name != "synthetic":
      return None
    from rcn_jax.cam import synthetic_apex_frame  # pylint: disable=g-import-not-at-top
    return synthetic_apex_frame(*key, label)


@dataclasses.dataclass(frozen=True)
class FrameSample:
  """A clip's onset and apex frames (grey uint8 `[H, W]`) and its place in the composite."""
  dataset: str
  subject: str
  sample: str
  label: int
  onset: np.ndarray
  apex: np.ndarray


@dataclasses.dataclass
class FrameData(DataSource):
  """In-memory samples from frames, through the same pipeline as `rcn_jax.predict`.

  Attributes:
    samples: the clips, in composite order.
    flow_backend: the flow backend.
    magnification: a `data_prep.magnify.MagnificationConfig` for magnified runs.
  """
  samples: Sequence[FrameSample]
  flow_backend: str = "dis"
  magnification: Any = None

  def __post_init__(self):
    self._cache: dict[tuple[int, bool], Composite] = {}

  def config_overrides(self, spec: RunSpec) -> dict[str, Any]:
    overrides = {"data.name": "synthetic", "data.flow_backend": self.flow_backend}
    if spec.magnified:
      overrides["data.magnification"] = self.magnification.to_json()
    return overrides

  def composite(self, spec: RunSpec) -> Composite:
    key = (spec.resolution, spec.magnified)
    if key not in self._cache:
      from rcn_jax.predict import network_input  # pylint: disable=g-import-not-at-top
      magnification = self.magnification.to_json() if spec.magnified else None
      flows = np.stack([network_input(s.onset, s.apex, backend=self.flow_backend, resolution=spec.resolution,
                                      magnification=magnification) for s in self.samples])
      self._cache[key] = Composite(
          flows=flows, labels=np.asarray([s.label for s in self.samples], np.int64),
          subjects=np.asarray([s.subject for s in self.samples]),
          datasets=np.asarray([s.dataset for s in self.samples]),
          samples=np.asarray([s.sample for s in self.samples]), source="frames")
    return self._cache[key]

  def apex_frames(self) -> list[np.ndarray]:
    return [s.apex for s in self.samples]

  def apex_frame(self, key: tuple[str, str, str], label: int) -> np.ndarray | None:
    del label
    found = [s.apex for s in self.samples if (s.dataset, s.subject, s.sample) == key]
    return found[0] if found else None


def tiny_frame_data(subjects_per_dataset: int = 2, samples_per_subject: int = 3, size: int = 48,
                    flow_backend: str = "dis", magnification: Any = None) -> FrameData:
  """A few synthetic-composite clips per dataset, frames resized to `size` px, subjects interleaved
  across datasets (so the first folds cover every dataset).

  Args:
    subjects_per_dataset: subjects taken from each dataset, in list order.
    samples_per_subject: clips taken from each subject, in list order.
    size: frame side in px.
    flow_backend: flow backend of the runs.
    magnification: the magnification of magnified runs (default alpha 10).

  Returns:
    The frame data.
  """
  import cv2  # pylint: disable=g-import-not-at-top

  from data_prep import magnify  # pylint: disable=g-import-not-at-top
  from data_prep.flowmap import to_grey  # pylint: disable=g-import-not-at-top
  from data_prep.synthetic import generate  # pylint: disable=g-import-not-at-top

  config = generate.SyntheticConfig()
  by_dataset = []
  for dataset in protocol.DATASETS:
    listed = protocol.read_official_list((dataset,))
    subjects = list(dict.fromkeys(s.subject for s in listed))[:subjects_per_dataset]
    by_dataset.append([[s for s in listed if s.subject == subject][:samples_per_subject] for subject in subjects])
  samples = []
  for rank in range(subjects_per_dataset):
    for clips in by_dataset:
      for listed in clips[rank] if rank < len(clips) else []:
        generated = generate.generate_sample(config, listed)
        frames = [cv2.resize(to_grey(f, listed.sample), (size, size), interpolation=cv2.INTER_AREA)
                  for f in (generated.onset, generated.apex)]
        samples.append(FrameSample(listed.dataset, listed.subject, listed.sample, listed.label, *frames))
  magnification = magnification or magnify.MagnificationConfig(alpha=10.0, levels=3)
  return FrameData(samples, flow_backend, magnification)


# ----------------------------------------------------------------------------------------------
# Runs.


# Keys the studies add to a config: the engine does not read them, they record how the data was made.
RECORDED_KEYS = ("data.magnification",)


def _set(config, dotted: str, value: Any) -> None:
  section, _, key = dotted.rpartition(".")
  target = config
  for part in filter(None, section.split(".")):
    target = target[part]
  if key not in target and dotted not in RECORDED_KEYS:
    raise KeyError(f"config has no key {dotted!r}")
  target[key] = value


def make_run_config(spec: RunSpec, scale: Scale, data: DataSource, training: str = "default",
                    extra: Mapping[str, Any] | None = None):
  """The config of one run: `configs/<model>.py` (with the training preset) plus the overrides.

  Args:
    spec: the run.
    scale: its scale (adds its overrides).
    data: the data source (adds `config.data` settings).
    training: a training preset of `configs/base.py` (`default`, `paper`, `reference`).
    extra: further `section.key` overrides (after the scale's).

  Returns:
    The config.
  """
  try:
    if spec.model.startswith("depth_"):
      module, arg = importlib.import_module("configs.depth"), f"depth={spec.model[6:]}"
    else:
      module, arg = importlib.import_module(f"configs.{spec.model}"), ""
  except ModuleNotFoundError as error:
    raise ValueError(f"model {spec.model!r}: no config module configs/{spec.model}.py importable; run from "
                     "the repository root") from error
  if training != "default":
    arg = ",".join(filter(None, (arg, training)))
  config = module.get_config(arg or None)
  overrides = {"model.features": spec.features, "model.pool_size": spec.pool_size,
               "data.resolution": spec.resolution, "data.datasets": tuple(spec.datasets)}
  overrides.update(data.config_overrides(spec))
  overrides.update(scale.overrides)
  overrides.update(extra or {})
  for dotted, value in overrides.items():
    _set(config, dotted, value)
  config.seeds = tuple(spec.seeds)
  return config


@dataclasses.dataclass
class Runner:
  """Trains (or reuses) the runs of the studies under `<workdir>/runs/`.

  Attributes:
    workdir: the studies' folder.
    scale: the scale.
    data: the data source.
    training: the training preset.
    dry_run: list the runs without training.
  """
  workdir: str
  scale: Scale
  data: DataSource
  training: str = "default"
  dry_run: bool = False
  _composites: dict[tuple[Any, ...], Composite] = dataclasses.field(default_factory=dict, repr=False)

  def run_dir(self, spec: RunSpec) -> str:
    return os.path.join(self.workdir, "runs", spec.name)

  def config(self, spec: RunSpec, extra: Mapping[str, Any] | None = None):
    return make_run_config(spec, self.scale, self.data, self.training, extra)

  def run(self, spec: RunSpec, extra: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """The results of a run, training it (or its missing epochs) first."""
    run_dir = self.run_dir(spec)
    if self.dry_run:
      state = "finished" if os.path.exists(os.path.join(run_dir, "results.json")) else "to train"
      print(f"{spec.name}: {state}")
      return None
    from rcn_jax import cam, train  # pylint: disable=g-import-not-at-top
    config = self.config(spec, extra)
    composite = self.data.composite(spec)
    results = train.train_and_evaluate(config, run_dir, composite=composite)
    stored = os.path.join(run_dir, cam.COMPOSITE_FILE)
    if composite is not None and not os.path.exists(stored):
      cam.save_composite(stored, composite, self.data.apex_frames())
    return results

  def composite(self, spec: RunSpec) -> Composite:
    """The samples of a run (for CAMs); runs of equal data share one load."""
    key = (spec.resolution, tuple(spec.datasets), spec.magnified)
    if key not in self._composites:
      composite = self.data.composite(spec)
      if composite is None:
        from rcn_jax.cam import load_run_composite  # pylint: disable=g-import-not-at-top
        from rcn_jax.predict import load_run  # pylint: disable=g-import-not-at-top
        composite = load_run_composite(load_run(self.run_dir(spec)))[0]
      self._composites[key] = composite.select(spec.datasets)
    return self._composites[key]


# ----------------------------------------------------------------------------------------------
# Reading results.


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


def grid_table(row_names: Sequence[str], col_names: Sequence[str], means, stds, corner: str = "Approaches") -> str:
  """A Markdown table of a score grid with the top two of each column in bold (paper style)."""
  bold = []
  for col in range(len(col_names)):
    bold.extend((row, col + 1) for row in plots.top_two([m[col] for m in means]))
  cells = [[name] + [plots.format_mean_std(m, s) for m, s in zip(mrow, srow)]
           for name, mrow, srow in zip(row_names, means, stds)]
  return plots.markdown_table([corner, *col_names], cells, bold=bold)


def paper_name(model: str) -> str:
  return PAPER_NAMES.get(model, model)


def px(resolution: int) -> str:
  return f"{resolution} × {resolution}"


# ----------------------------------------------------------------------------------------------
# The studies.


@dataclasses.dataclass
class Outputs:
  """What a study writes: Markdown sections, PNG paths and the numbers behind them."""
  study: str
  title: str
  sections: list[str] = dataclasses.field(default_factory=list)
  figures: list[str] = dataclasses.field(default_factory=list)
  numbers: dict[str, Any] = dataclasses.field(default_factory=dict)

  def write(self, workdir: str, runner: Runner) -> str:
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
    from rcn_jax.reporting import write_json  # pylint: disable=g-import-not-at-top
    write_json(os.path.join(workdir, f"{self.study}.json"), {"study": self.study, **self.numbers})
    return path


def describe_data(data: DataSource) -> str:
  if isinstance(data, NamedData):
    return f"`{data.name}` ({data.flow_backend} flow)"
  return f"{len(data.samples)} built-in synthetic clips ({data.flow_backend} flow)"


def _resolution_study(runner: Runner, study: str, title: str, models: Sequence[str], figure: str) -> Outputs:
  scale = runner.scale
  fm, pool, _ = scale.base
  spec_of = lambda model, res: RunSpec(model, fm, pool, res)  # noqa: E731
  results = {spec_of(m, r).name: runner.run(spec_of(m, r)) for m in models for r in scale.resolutions}
  outputs = Outputs(study, title)
  if runner.dry_run:
    return outputs
  means, stds = score_grid(results, models, scale.resolutions, spec_of)
  names = [paper_name(m) for m in models]
  path = os.path.join(runner.workdir, f"{study}.png")
  plots.line_plot(path, [plots.LinePanel(
      f"{figure}: UAR by flow-map resolution (fm {fm}, pool {pool} × {pool})", "flow-map resolution (px per side)",
      "UAR (pooled LOSO)", list(scale.resolutions), dict(zip(names, means)), dict(zip(names, stds)))])
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
  if runner.dry_run:
    return outputs
  path = _depth_cams(runner)
  if path:
    outputs.figures.append(path)
  return outputs


def _depth_cams(runner: Runner) -> str | None:
  from rcn_jax import cam  # pylint: disable=g-import-not-at-top
  from rcn_jax.predict import load_run  # pylint: disable=g-import-not-at-top

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
                             f"(true class {protocol.CLASS_NAMES[label]}), by its held-out fold models",
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
    if runner.dry_run:
      continue
    means, stds = score_grid(results, models, scale.pool_sizes, spec_of)
    panels.append(plots.LinePanel(f"flow map {px(resolution)}, fm {fm}", "adaptive-pool size P (P × P)",
                                  "UAR (pooled LOSO)", list(scale.pool_sizes), dict(zip(names, means)),
                                  dict(zip(names, stds))))
    outputs.sections += [f"## Flow-map resolution: {px(resolution)}, feature maps: {fm}",
                         grid_table(names, [f"P = {p} × {p}" for p in scale.pool_sizes], means, stds)]
    numbers[str(resolution)] = {"uar": means, "uar_std": stds}
  if not runner.dry_run:
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
    if runner.dry_run:
      continue
    means, stds = score_grid(results, scale.sweep_models, scale.features, spec_of)
    panels.append(plots.LinePanel(f"flow map {px(resolution)}, pool {base_pool} × {base_pool}",
                                  "feature maps (fm)", "UAR (pooled LOSO)", list(scale.features),
                                  dict(zip(names, means)), dict(zip(names, stds))))
    numbers["fig9"][str(resolution)] = {"uar": means, "uar_std": stds}
  table_names = [paper_name(m) for m in scale.table2_models]
  table_sections = []
  for pool in scale.table2_pools:
    spec_of = lambda model, fm, p=pool: RunSpec(model, fm, p, base_resolution)  # noqa: E731
    results = {spec_of(m, f).name: runner.run(spec_of(m, f)) for m in scale.table2_models for f in scale.features}
    if runner.dry_run:
      continue
    means, stds = score_grid(results, scale.table2_models, scale.features, spec_of)
    table_sections += [f"### Flow-map Resolution: {px(base_resolution)}, Pooling Size: {pool} × {pool}",
                       grid_table(table_names, [f"fm = {f}" for f in scale.features], means, stds)]
    numbers["table2"][str(pool)] = {"uar": means, "uar_std": stds}
  if not runner.dry_run:
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
    if runner.dry_run:
      continue
    means, stds = score_grid(results, models, (False, True), spec_of)
    outputs.sections += [f"### Flow-map Resolution: {px(resolution)}",
                         grid_table(names, ["without MM", "with MM"], means, stds)]
    panels.append(plots.BarPanel(f"flow map {px(resolution)}", "UAR (pooled LOSO)", "model", names,
                                 {"without MM": [m[0] for m in means], "with MM": [m[1] for m in means]},
                                 {"without MM": [s[0] for s in stds], "with MM": [s[1] for s in stds]}))
    numbers[str(resolution)] = {"uar": means, "uar_std": stds}
  if not runner.dry_run:
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
    if runner.dry_run:
      continue
    means, stds = score_grid(results, models, PARTIAL_COMPOSITES, spec_of)
    outputs.sections += [f"### Flow-map Resolution: {px(resolution)}, Feature Maps: {fm}, "
                         f"Pooling Size: {pool} × {pool}",
                         grid_table(names, columns, means, stds)]
    panels.append(plots.BarPanel(f"fm {fm}, pool {pool} × {pool}", "UAR (pooled LOSO)", "partial composite",
                                 columns, {n: row for n, row in zip(names, means)},
                                 {n: row for n, row in zip(names, stds)}))
    numbers[f"fm{fm}_p{pool}"] = {"uar": means, "uar_std": stds}
  if not runner.dry_run:
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
  if runner.dry_run:
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
    panels.append(plots.BarPanel(f"{metric.upper()} by scope", f"{metric.upper()} (pooled LOSO, mean over seeds)",
                                 "evaluated samples", ["MEGC2019", "SMIC", "CASME II", "SAMM"],
                                 {n: [m for m, _ in p] for n, p in pairs.items()},
                                 {n: [s for _, s in p] for n, p in pairs.items()}))
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
    if runner.dry_run:
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
    panels.append(plots.LinePanel(f"fm {fm}, pool {pool} × {pool}", "flow-map resolution fs (px per side)",
                                  "training + test time (hours)", list(scale.time_resolutions),
                                  dict(zip(names, hours))))
    numbers[f"fm{fm}_p{pool}"] = {"hours": hours, "seconds_per_fold_epoch": per_epoch}
  if not runner.dry_run:
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
    "time": time_study,
}


def run_study(name: str, runner: Runner) -> Outputs:
  """Runs one study (its missing runs first) and writes its outputs unless it is a dry run.

  Args:
    name: a key of `STUDIES`.
    runner: the runner (workdir, scale, data, training preset).

  Returns:
    The outputs (Markdown path in `sections`' file, figures, numbers).
  """
  if name not in STUDIES:
    raise ValueError(f"--study={name!r}: expected one of {sorted(STUDIES)} or all")
  os.makedirs(runner.workdir, exist_ok=True)
  outputs = STUDIES[name](runner)
  if not runner.dry_run:
    outputs.write(runner.workdir, runner)
  return outputs


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog="python -m rcn_jax.studies", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--study", required=True, help=f"one of {sorted(STUDIES)}, or all")
  parser.add_argument("--workdir", required=True, help="output folder; runs are kept in WORKDIR/runs/")
  parser.add_argument("--scale", default="full", choices=sorted(SCALES))
  parser.add_argument("--data", default="synthetic", choices=("synthetic", "megc2019"),
                      help="flow-map dataset of the runs (full scale; tiny uses built-in frames)")
  parser.add_argument("--data_dir", help="TFDS data dir ($RCN_JAX_DATA_DIR or ~/.cache/rcn_jax)")
  parser.add_argument("--flow_backend", default="tvl1", help="which flow build to read (default tvl1)")
  parser.add_argument("--magnified_data_dir", help="the magnified megc2019 dataset (python -m data_prep.magnify); "
                      "default WORKDIR/data_magnified, built there for the synthetic composite")
  parser.add_argument("--mm_alpha", type=float, default=10.0, help="magnification factor alpha (default 10)")
  parser.add_argument("--training", default="default", choices=("default", "paper", "reference"),
                      help="training preset of configs/base.py")
  parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes for building data")
  parser.add_argument("--dry_run", action="store_true", help="list the runs and whether they are finished")
  return parser.parse_args(argv)


def make_data(args: argparse.Namespace) -> DataSource:
  """The data source the arguments describe."""
  from data_prep import magnify  # pylint: disable=g-import-not-at-top

  if args.scale == "tiny":
    return tiny_frame_data(magnification=magnify.MagnificationConfig(alpha=args.mm_alpha, levels=3))
  magnified_dir = args.magnified_data_dir
  if magnified_dir is None and args.data == "synthetic":
    magnified_dir = os.path.join(args.workdir, "data_magnified")
  return NamedData(args.data, args.data_dir, args.flow_backend, magnify.MagnificationConfig(alpha=args.mm_alpha),
                   magnified_dir, args.workers)


def main(argv: Sequence[str] | None = None) -> int:
  """Runs the command line; returns the exit status."""
  args = parse_args(argv)
  names = sorted(STUDIES) if args.study == "all" else [args.study]
  try:
    if any(n not in STUDIES for n in names):
      raise ValueError(f"--study={args.study!r}: expected one of {sorted(STUDIES)} or all")
    runner = Runner(args.workdir, SCALES[args.scale], make_data(args), args.training, args.dry_run)
    for name in names:
      outputs = run_study(name, runner)
      if not args.dry_run:
        print(f"{name}: {os.path.join(args.workdir, name + '.md')} and {len(outputs.figures)} figure(s)")
  except (FileNotFoundError, ValueError, KeyError) as error:
    print(f"error: {error}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())

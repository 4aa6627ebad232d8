"""The config of each run and the `Runner` that trains (or reuses) the runs under `<workdir>/runs/`."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

import ml_collections

from rcn_jax import config as config_lib
from rcn_jax import run_folder
from rcn_jax.data import Composite
from rcn_jax.models import factory
from rcn_jax.studies.sources import DataSource
from rcn_jax.studies.specs import RunSpec, Scale
from rcn_jax import errors


# Keys the studies add to a config: the engine does not read them, they record how the data was made.
RECORDED_KEYS = ("data.magnification",)


def set_dotted(config: ml_collections.ConfigDict, dotted: str, value: Any) -> None:
  """Sets `section.key` of a config; a key the config lacks is a KeyError naming it."""
  section, _, key = dotted.rpartition(".")
  target = config
  for part in filter(None, section.split(".")):
    target = target[part]
  if key not in target and dotted not in RECORDED_KEYS:
    raise errors.UserError(f"config has no key {dotted!r}")
  target[key] = value


def make_run_config(spec: RunSpec, scale: Scale, data: DataSource, training: str = "default",
                    extra: Mapping[str, Any] | None = None) -> ml_collections.ConfigDict:
  """The config of one run: `rcn_jax.config.make_config` of the run's model preset plus the overrides.

  It equals what `configs/<model>.py` (`configs/depth.py:depth=N` for `depth_N`) gives with the
  training preset as argument and the run's fm and P, so a study needs no checkout of `configs/`.

  Args:
    spec: the run.
    scale: its scale (adds its overrides).
    data: the data source (adds `config.data` settings).
    training: a training preset of `rcn_jax.config.TRAINING_PRESETS` (`default`, `paper`, `reference`).
    extra: further `section.key` overrides (after the scale's).

  Returns:
    The config.
  """
  if spec.model in config_lib.COMPARISON_RECIPES:
    # A Table V comparison model always trains by its own recipe (configs/<model>.py).
    config = config_lib.make_comparison_config(preset=spec.model, arg=None)
    config.model.features = spec.features
  elif spec.model not in factory.PRESETS:
    raise errors.UserError(f"model {spec.model!r}: expected a model preset, one of {sorted(factory.PRESETS)}")
  else:
    config = config_lib.make_config(preset=spec.model, features=spec.features, pool_size=spec.pool_size,
                                    arg=None if training == "default" else training)
  overrides = {"data.resolution": spec.resolution, "data.datasets": tuple(spec.datasets)}
  overrides.update(data.config_overrides(spec))
  overrides.update(scale.overrides)
  overrides.update(extra or {})
  for dotted, value in overrides.items():
    set_dotted(config, dotted, value)
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
    main_process: whether this process writes the tables and figures. In a multi-process study
      every process trains each run together (in the same order); only process 0 writes.
    seeds: the seeds of the table5 study's runs (`--seeds N`: 0..N-1); None: the scale's.
  """
  workdir: str
  scale: Scale
  data: DataSource
  training: str = "default"
  dry_run: bool = False
  main_process: bool = True
  seeds: tuple[int, ...] | None = None
  _composites: dict[tuple[Any, ...], Composite] = dataclasses.field(default_factory=dict, repr=False)

  @property
  def writes(self) -> bool:
    """Whether the studies write tables and figures here (not in a dry run, only on process 0)."""
    return self.main_process and not self.dry_run

  def run_dir(self, spec: RunSpec) -> str:
    """The folder of a run: `<workdir>/runs/<run name>`."""
    return os.path.join(self.workdir, "runs", spec.name)

  def config(self, spec: RunSpec, extra: Mapping[str, Any] | None = None) -> ml_collections.ConfigDict:
    """The config of a run (see `make_run_config`)."""
    return make_run_config(spec, self.scale, self.data, self.training, extra)

  def run(self, spec: RunSpec, extra: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """The results of a run, training it (or its missing epochs) first."""
    run_dir = self.run_dir(spec)
    if self.dry_run:
      state = "finished" if os.path.exists(os.path.join(run_dir, run_folder.RESULTS)) else "to train"
      print(f"{spec.name}: {state}")
      return None
    from rcn_jax import train  # pylint: disable=g-import-not-at-top
    config = self.config(spec, extra)
    composite = self.data.composite(spec)
    results = train.train_and_evaluate(config, run_dir, composite=composite)
    stored = os.path.join(run_dir, run_folder.COMPOSITE_FILE)
    if composite is not None and self.main_process and not os.path.exists(stored):
      run_folder.save_composite(run_dir, composite, self.data.apex_frames())
    return results

  def composite(self, spec: RunSpec) -> Composite:
    """The samples of a run (for CAMs); runs of equal data share one load."""
    key = (spec.resolution, tuple(spec.datasets), spec.magnified)
    if key not in self._composites:
      composite = self.data.composite(spec)
      if composite is None:
        run_dir = self.run_dir(spec)
        composite = run_folder.load_run_composite(run_dir, run_folder.read_config(run_dir))[0]
      self._composites[key] = composite.select(spec.datasets)
    return self._composites[key]

"""One check of a run config before anything slow: `validate(config)` at the entry of every command.

It first resolves `data.resolution` when None (in place, so the run records the size it used), then
covers every section a run reads: `train`, `seeds`, `protocol`, `parallel`, `report`,
`checkpoint`, `init`, `data` (that a `megc2019` dataset is there), `model` (each architecture built
and traced abstractly once at the input size, `rcn_jax.engine.plan.check_model`) and, for a search
config, `search` (`rcn_jax.search.settings.check_search`). A bad value is a `UserError` naming its
key. `launch.py` and the studies call it once and tell the library entry points
(`train.train_and_evaluate`, `search.loop.run_search`) so with `validated=True`; called directly,
those validate themselves.
"""

from __future__ import annotations

import math

import jax
import ml_collections

from rcn_jax import errors, folds
from rcn_jax.data import Composite, check_configured
from rcn_jax.engine import initial, plan, strategies
from rcn_jax.engine.program import check_optimizer
from rcn_jax.search import settings as search_settings


def validate(config: ml_collections.ConfigDict, composite: Composite | None = None) -> None:
  """Raises a UserError naming the key of the first setting the run cannot use; reads no samples.

  Args:
    config: a run config (`rcn_jax.config`) or a search config (with a `search` section).
    composite: the data given in memory instead of `config.data` (tests, notebooks, studies): the
      `data` section is then not checked and the model is traced at the composite's size.
  """
  _check_training(config)
  initial.check_settings(config.init)
  resolution = check_configured(config.data) if composite is None else composite.flows.shape[1]
  if config.data.resolution is None:  # recorded, so the run's config.json says the size it trained at
    with config.unlocked():
      config.data.resolution = int(resolution)
  size = (config.data.resolution,) * 2 if composite is None else composite.flows.shape[1:3]
  if "search" in config:
    search_settings.check_search(config)
  else:
    plan.check_model(config, size)


def _check_training(config: ml_collections.ConfigDict) -> None:
  train = config.train
  if train.batch_size < 1:
    raise errors.UserError(f"train.batch_size={train.batch_size} must be >= 1")
  if train.num_epochs < 0:
    raise errors.UserError(f"train.num_epochs={train.num_epochs} must be >= 0 (0: evaluate the initial weights)")
  check_optimizer(train.learning_rate, train.momentum, train.weight_decay, train.optimizer)
  if not isinstance(train.shuffle, bool):
    raise errors.UserError(f"train.shuffle={train.shuffle!r} must be True or False")
  if not math.isfinite(train.loss_threshold) or train.loss_threshold < 0:
    raise errors.UserError(f"train.loss_threshold={train.loss_threshold} must be finite and >= 0")
  if not config.seeds or len(set(config.seeds)) != len(config.seeds):
    raise errors.UserError(f"seeds={tuple(config.seeds)} must name at least one seed, each once")
  if config.protocol.name not in folds.PROTOCOLS:
    raise errors.UserError(f"protocol.name={config.protocol.name!r}: expected one of {folds.PROTOCOLS}")
  if config.protocol.name == "lodo" and len(config.data.datasets) < 2:
    raise errors.UserError(f"protocol.name='lodo' needs at least two data.datasets, got {tuple(config.data.datasets)}")
  if config.protocol.max_folds < 0:
    raise errors.UserError(f"protocol.max_folds={config.protocol.max_folds} must be >= 0")
  for key in ("models_per_call", "steps_per_call"):
    if config.parallel[key] < 0:
      raise errors.UserError(f"parallel.{key}={config.parallel[key]} must be >= 0")
  strategies.resolve_strategy(config.parallel.strategy, jax.devices())
  if not 0 < config.report.confidence < 1:
    raise errors.UserError(f"report.confidence={config.report.confidence} must be in (0, 1)")
  if config.report.bootstrap_resamples < 0:
    raise errors.UserError(f"report.bootstrap_resamples={config.report.bootstrap_resamples} must be >= 0")
  if config.checkpoint.every_epochs < 1:
    raise errors.UserError(f"checkpoint.every_epochs={config.checkpoint.every_epochs} must be >= 1")
  if config.checkpoint.max_to_keep < 1:
    raise errors.UserError(f"checkpoint.max_to_keep={config.checkpoint.max_to_keep} must be >= 1")

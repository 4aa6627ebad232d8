"""The search's settings, checked before any data: its space, its bilevel program and its schedule.

`check_search(config)` is the search's part of `rcn_jax.validation.validate`; `rcn_jax.search.loop`
builds its space and program with the same functions.
"""

from __future__ import annotations

import dataclasses
import functools

import ml_collections

from rcn_jax import errors, sample_list
from rcn_jax.engine.program import check_optimizer, make_optimizer
from rcn_jax.models import search_space, supernet
from rcn_jax.search import bilevel, export, splits


@dataclasses.dataclass(frozen=True)
class LoopSettings:
  """Schedule of one search task.

  Attributes:
    epochs: passes over the training subjects.
    warmup_epochs: first epochs with weight steps only (the architecture gradient of an untrained
      network says little).
    batch_size: samples per training and per validation batch.
  """
  epochs: int
  warmup_epochs: int
  batch_size: int

  def __post_init__(self):
    if self.epochs < 1 or self.batch_size < 1 or not 0 <= self.warmup_epochs < self.epochs:
      raise errors.UserError(f"search.epochs={self.epochs}, search.warmup_epochs={self.warmup_epochs}, "
                       f"train.batch_size={self.batch_size}: need epochs >= 1, 0 <= warmup < epochs, "
                       "batch >= 1")


def make_space(search: ml_collections.ConfigDict) -> search_space.SearchSpace:
  """The search space a `config.search` section describes."""
  if search.max_hops < 1:
    raise errors.UserError(f"search.max_hops={search.max_hops} must be >= 1")
  return search_space.SearchSpace.paper(stems=tuple(search.stems), ops=tuple(search.ops), steps=search.steps,
                                    min_steps=search.min_steps, max_hops=search.max_hops,
                                    gate_output=search.gate_output)


def check_search(config: ml_collections.ConfigDict) -> None:
  """Raises a UserError naming the `search.*` (or `train.*`) key of a setting the search cannot run with.

  Builds what the search builds before any data: the space, the bilevel program and its schedule.
  """
  search = config.search
  space = make_space(search)
  check_config(config, space)
  make_program(config, space)
  LoopSettings(search.epochs, search.warmup_epochs, config.train.batch_size)
  if search.mode not in splits.MODES:
    raise errors.UserError(f"search.mode={search.mode!r}: expected one of {splits.MODES}")
  if not 0 < search.val_fraction < 1:
    raise errors.UserError(f"search.val_fraction={search.val_fraction} must lie in (0, 1)")


def check_config(config: ml_collections.ConfigDict, space: search_space.SearchSpace) -> None:
  """Raises a UserError naming the key of a setting the search cannot run with (before it runs)."""
  train = config.train
  if train.optimizer != "sgd" or not train.shuffle:
    raise errors.UserError(f"train.optimizer={train.optimizer!r}, train.shuffle={train.shuffle}: the search "
                           "trains the supernet's weights by SGD with shuffled epochs")
  check_optimizer(train.learning_rate, train.momentum, train.weight_decay)
  search = config.search
  export.check_ranking(search.top_k, search.max_gates, search.min_gates)
  gateable = sum(name.startswith("gate_") for name in space.decisions())
  if search.min_gates > gateable:
    raise errors.UserError(f"search.min_gates={search.min_gates}: the space has only {gateable} gated node(s)")
  for key in ("arch_learning_rate", "arch_b1", "arch_b2", "alpha_floor"):
    if not search[key] > 0:
      raise errors.UserError(f"search.{key}={search[key]} must be positive")


def make_program(config: ml_collections.ConfigDict, space: search_space.SearchSpace) -> bilevel.BilevelProgram:
  """The supernet of `config.model` over `space`, SGD-momentum (`config.train`) and Adam (`config.search`).

  Equal settings give the same program object, so searches in one process share compiled steps.
  """
  if config.model.reference_quirks:
    raise errors.UserError("model.reference_quirks=True: the search space holds no official-code quirks")
  model, train, search = config.model, config.train, config.search
  return _program(space, model.features, model.pool_size, model.dropout_rate, model.pytorch_bn,
                  train.learning_rate, train.momentum, train.weight_decay, search.arch_learning_rate,
                  search.arch_b1, search.arch_b2, search.arch_weight_decay, search.alpha_floor, search.mixing,
                  search.order)


@functools.lru_cache(maxsize=8)
def _program(space, features, pool_size, dropout_rate, pytorch_bn, learning_rate, momentum, weight_decay,
             arch_learning_rate, arch_b1, arch_b2, arch_weight_decay, alpha_floor, mixing, order):
  module = supernet.Supernet(space, features, pool_size, len(sample_list.CLASS_NAMES), dropout_rate, pytorch_bn)
  arch_optimizer = bilevel.make_arch_optimizer(arch_learning_rate, b1=arch_b1, b2=arch_b2,
                                                      weight_decay=arch_weight_decay, mixing=mixing,
                                                      floor=alpha_floor)
  weight_optimizer = make_optimizer(learning_rate, momentum, weight_decay)
  return bilevel.BilevelProgram(module, weight_optimizer, arch_optimizer, mixing, order)

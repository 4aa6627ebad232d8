"""A trained or imported model on disk: its architecture (`model.json`) and variables (orbax)."""

from __future__ import annotations

import json
import os

import flax.linen as nn
import jax
import numpy as np
import orbax.checkpoint as ocp

from rcn_jax.models import factory
from rcn_jax import errors

_ARCHITECTURE_KEYS = ("preset", "features", "pool_size", "num_classes", "reference_quirks")


def save_model(directory: str, variables: dict, *, preset: str, features: int, pool_size: int,
               num_classes: int = 3, reference_quirks: bool = False) -> None:
  """Writes `directory/model.json` and `directory/variables` (an orbax standard checkpoint)."""
  directory = os.path.abspath(directory)
  os.makedirs(directory, exist_ok=True)
  architecture = dict(preset=preset, features=features, pool_size=pool_size,
                      num_classes=num_classes, reference_quirks=reference_quirks)
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(os.path.join(directory, "variables"),
                      jax.tree.map(np.asarray, variables), force=True)
  with open(os.path.join(directory, "model.json"), "w") as f:
    json.dump(architecture, f, indent=2)


def load_model(directory: str) -> tuple[nn.Module, dict]:
  """Reads what `save_model` wrote: the module and its variables `{'params', 'batch_stats'}`."""
  directory = os.path.abspath(directory)
  path = os.path.join(directory, "model.json")
  if not os.path.exists(path):
    raise errors.MissingInput(f"{path}: no saved model here (model.json is missing)")
  with open(path) as f:
    architecture = json.load(f)
  missing = [k for k in _ARCHITECTURE_KEYS if k not in architecture]
  if missing:
    raise errors.UserError(f"{path}: missing keys {missing}")
  preset = architecture.pop("preset")
  model = factory.create_model(preset, **architecture)
  with ocp.StandardCheckpointer() as checkpointer:
    variables = checkpointer.restore(os.path.join(directory, "variables"))
  return model, variables

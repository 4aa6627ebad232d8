"""Import of official PyTorch RCN weights (a `state_dict`) into rcn-jax variables.

Command line: converts a `.npz` (or, with torch installed, a `.pth`) state_dict into a saved model
that the rest of rcn-jax loads with `rcn_jax.models.saved.load_model`:

  python -m rcn_jax.models.torch_import --preset=rcn_a --features=16 --pool_size=5 \
      --input=RCN_A.pth --output=DIR
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from rcn_jax.models import rcn

# Modules of the official classes that never enter their forward pass.
_DEAD_MODULES = {
    "rcn_s": ("dbl.0.conv3.",),
    "rcn_c": ("dbl.0.conv3.", "ebl."),
    "rcn_p": ("dbl.0.conv3.", "rcls."),
}
# The official recurrent-layer module name per layer type.
_LAYER_MODULES = {"recurrent": r"rcls\.(\d+)", "shortcut": r"dbl\.(\d+)", "embedding": r"ebl()"}
_LAYER_PARTS = {"ffconv": "feedforward", "rrconv": "recurrent", "conv1": "feedforward",
                "conv2": "recurrent"}
_BN_FIELDS = {"weight": ("params", "scale"), "bias": ("params", "bias"),
              "running_mean": ("batch_stats", "mean"), "running_var": ("batch_stats", "var")}


def _dead_prefixes(preset: str, reference_quirks: bool) -> tuple[str, ...]:
  dead = _DEAD_MODULES.get(preset, ())
  if preset == "rcn_f" and reference_quirks:
    dead += ("stream3.",)
  return dead


def _target(key: str, spec: rcn.Preset) -> tuple[str, tuple[str, ...]] | None:
  """Maps an official key to (kind, path in the variables) or None when it is not recognised."""
  if key in ("classifier.weight", "classifier.bias"):
    return "classifier", ("params", "classifier_" + ("kernel" if key.endswith("weight") else
                                                     "bias"))
  module, field = key.rsplit(".", 1)
  stem = re.fullmatch(r"(conv1|stream[123])\.(\d)", module)
  if stem:
    owner = ("stem", "main" if stem.group(1) == "conv1" else stem.group(1))
    is_conv = stem.group(2) == "0"
  else:
    layer = re.fullmatch(_LAYER_MODULES[spec.layer] + r"\.(ffconv|rrconv|conv1|conv2)\.(\d)",
                         module)
    if not layer:
      return None
    owner = (f"layer_{layer.group(1) or 0}", _LAYER_PARTS[layer.group(2)])
    is_conv = layer.group(3) == "0"
  if is_conv:
    if field not in ("weight", "bias"):
      return None
    return "conv_" + field, ("params",) + owner + ("conv", "kernel" if field == "weight" else
                                                   "bias")
  if field not in _BN_FIELDS:
    return None
  collection, name = _BN_FIELDS[field]
  return "bn", (collection,) + owner + ("bn", name)


def _convert(kind: str, value: np.ndarray, pool_size: int) -> np.ndarray:
  """Converts an official tensor to rcn-jax's layout."""
  if kind == "conv_weight":  # [out, in, kh, kw] -> [kh, kw, in, out]
    return value.transpose(2, 3, 1, 0)
  if kind == "classifier" and value.ndim == 2:
    # Official rows are (channel, row, col) of the NCHW flatten; rcn-jax flattens NHWC (row, col,
    # channel) into a [in, out] kernel.
    classes = value.shape[0]
    return value.reshape(classes, -1, pool_size, pool_size).transpose(2, 3, 1, 0).reshape(
        -1, classes)
  return value


def from_torch_state_dict(preset: str, state_dict: Mapping[str, np.ndarray], *, features: int,
                          pool_size: int, num_classes: int = 3,
                          reference_quirks: bool = True) -> tuple[nn.Module, dict]:
  """Builds an rcn-jax model holding the weights of an official PyTorch state_dict.

  Args:
    preset: the rcn-jax preset the official class corresponds to (`rcn_a` for RCN_A, `depth_2` for
      RecNet with one layer, `depth_1` for RecNet_v2, ...).
    state_dict: official keys to arrays (torch tensors converted with `.numpy()`).
    features: fm.
    pool_size: P.
    num_classes: C.
    reference_quirks: build the model with the official release's behaviour (needed for RCN-F
      weights: their stream 3 was never trained).
  Returns:
    The module and its variables `{'params', 'batch_stats'}` (arrays in the state_dict's dtype).
  Raises:
    ValueError: naming every unknown, missing or mis-shaped key.
  """
  model = rcn.create_model(preset, features=features, pool_size=pool_size,
                           num_classes=num_classes, reference_quirks=reference_quirks)
  spec = rcn.PRESETS[preset]
  if preset == "rcn_f" and not reference_quirks and any(k.startswith("stream3.") for k in
                                                        state_dict):
    raise ValueError(
        "official RCN-F weights never trained stream 3 (its forward reuses stream 2): import them "
        "with reference_quirks=True, which reproduces that forward")
  abstract = jax.eval_shape(
      lambda: model.init({"params": jax.random.key(0), "dropout": jax.random.key(0)},
                         jnp.zeros((1, 60, 60, 3)), train=False))
  expected = {path: leaf.shape for path, leaf in flax.traverse_util.flatten_dict(
      flax.core.unfreeze(abstract)).items()}
  dead = _dead_prefixes(preset, reference_quirks)
  loaded, errors = {}, []
  for key, value in state_dict.items():
    if key.endswith("num_batches_tracked") or key.startswith(dead):
      continue
    target = _target(key, spec)
    if target is None or target[1] not in expected:
      errors.append(f"unknown key {key!r}")
      continue
    kind, path = target
    array = _convert(kind, np.asarray(value), pool_size)
    if array.shape != expected[path]:
      errors.append(f"key {key!r} has shape {tuple(np.shape(value))}, expected the equivalent of "
                    f"{expected[path]} ({'/'.join(path)})")
      continue
    loaded[path] = array
  missing = sorted("/".join(path) for path in expected if path not in loaded)
  if missing:
    errors.append(f"missing weights for {missing}")
  if errors:
    raise ValueError(f"state_dict does not fit preset {preset!r} (fm {features}, pool "
                     f"{pool_size}, {num_classes} classes): " + "; ".join(errors))
  return model, flax.traverse_util.unflatten_dict(loaded)

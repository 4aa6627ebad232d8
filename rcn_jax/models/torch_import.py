"""Import of official PyTorch RCN weights (a `state_dict`) into rcn-jax variables.

The command-line form is `python -m rcn_jax.models.convert`.
"""

from __future__ import annotations

from collections.abc import Mapping

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from rcn_jax import errors
from rcn_jax.models import comparison, factory, ststnet

# Modules of the official classes that never enter their forward pass.
_DEAD_MODULES = {
    "rcn_s": ("dbl.0.conv3.",),
    "rcn_c": ("dbl.0.conv3.", "ebl."),
    "rcn_p": ("dbl.0.conv3.", "rcls."),
}
# The official module names of a recurrent layer's two convs, per layer type.
_LAYER_NAMES = {"recurrent": ("rcls.{i}.", "ffconv", "rrconv"),
                "shortcut": ("dbl.{i}.", "conv1", "conv2"),
                "embedding": ("ebl.", "conv1", "conv2")}
_FIELD_NAMES = {"kernel": "weight", "bias": "bias", "scale": "weight", "mean": "running_mean",
                "var": "running_var"}


def _dead_prefixes(preset: str, reference_quirks: bool) -> tuple[str, ...]:
  dead = _DEAD_MODULES.get(preset, ())
  if preset == "rcn_f" and reference_quirks:
    dead += ("stream3.",)
  return dead


def _official_key(path: tuple[str, ...], layer: str) -> str:
  """The official state_dict key of the rcn-jax variable at `path` (collection first)."""
  _, *owner, leaf = path
  if not owner:
    return "classifier." + ("weight" if leaf == "classifier_kernel" else "bias")
  block, part, op = owner
  is_conv = op == "conv"
  if block == "stem":
    module = f"conv1.{0 if is_conv else 1}" if part == "main" else f"{part}.{0 if is_conv else 2}"
  else:
    prefix, feedforward, recurrent = _LAYER_NAMES[layer]
    index = block.removeprefix("layer_")
    module = prefix.format(i=index) + (feedforward if part == "feedforward" else recurrent)
    module += ".0" if is_conv else ".1"
  return f"{module}.{_FIELD_NAMES[leaf]}"


def _convert(path: tuple[str, ...], value: np.ndarray, pool_size: int) -> np.ndarray:
  """Converts an official tensor to rcn-jax's layout."""
  if path[-1] == "kernel":  # conv [out, in, kh, kw] -> [kh, kw, in, out]
    return value.transpose(2, 3, 1, 0)
  if path[-1] == "classifier_kernel":
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
      RecNet with one layer, `depth_1` for RecNet_v2, ...), or `ststnet` for the published
      STSTNet weights (`ststnet.import_state_dict`; `features`, `pool_size` and the quirks do
      not apply to it).
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
  if preset == "ststnet":
    return ststnet.import_state_dict(state_dict, num_classes=num_classes)
  if preset in comparison.MODELS:
    raise errors.UserError(f"model.preset={preset!r}: rcn-jax imports PyTorch weights of the RCN presets and "
                           "STSTNet only")
  model = factory.create_model(preset, features=features, pool_size=pool_size,
                               num_classes=num_classes, reference_quirks=reference_quirks)
  spec = factory.PRESETS[preset]
  if preset == "rcn_f" and not reference_quirks and any(k.startswith("stream3.") for k in
                                                        state_dict):
    raise errors.UserError(
        "official RCN-F weights never trained stream 3 (its forward reuses stream 2): import them "
        "with reference_quirks=True, which reproduces that forward")
  abstract = jax.eval_shape(
      lambda: model.init({"params": jax.random.key(0), "dropout": jax.random.key(0)},
                         jnp.zeros((1, 60, 60, 3)), train=False))
  shapes = {path: leaf.shape for path, leaf in flax.traverse_util.flatten_dict(
      flax.core.unfreeze(abstract)).items()}
  paths = {_official_key(path, spec.layer): path for path in shapes}
  dead = _dead_prefixes(preset, reference_quirks)
  loaded, problems = {}, []
  for key, value in state_dict.items():
    if key.endswith("num_batches_tracked") or key.startswith(dead):
      continue
    if key not in paths:
      problems.append(f"unknown key {key!r}")
      continue
    path = paths[key]
    try:
      array = _convert(path, np.asarray(value), pool_size)
    except ValueError:
      array = None
    if array is None or array.shape != shapes[path]:
      problems.append(f"key {key!r} has shape {tuple(np.shape(value))}, which does not fit "
                    f"{'/'.join(path)} {shapes[path]}")
      continue
    loaded[path] = array
  missing = sorted(key for key, path in paths.items() if path not in loaded and
                   key not in state_dict)
  if missing:
    problems.append(f"missing keys {missing}")
  if problems:
    raise errors.UserError(f"state_dict does not fit preset {preset!r} (fm {features}, pool "
                           f"{pool_size}, {num_classes} classes): " + "; ".join(problems))
  return model, flax.traverse_util.unflatten_dict(loaded)


def read_state_dict(path: str) -> dict[str, np.ndarray]:
  """Reads a state_dict from a `.npz` (keys as saved, or under `sd/`) or a `.pth` (needs torch)."""
  if path.endswith(".npz"):
    with np.load(path) as archive:
      keys = [k for k in archive.files if k.startswith("sd/")]
      if keys:
        return {k[3:]: archive[k] for k in keys}
      return {k: archive[k] for k in archive.files}
  if path.endswith((".pth", ".pt")):
    try:
      import torch  # pylint: disable=g-import-not-at-top
    except ImportError as error:
      raise ImportError(f"{path}: reading .pth files needs torch; save the state_dict as .npz "
                        "(numpy arrays) instead") from error
    loaded = torch.load(path, map_location="cpu", weights_only=True)
    loaded = loaded.get("state_dict", loaded)
    return {k: v.detach().numpy() for k, v in loaded.items()}
  raise errors.UserError(f"{path}: expected a .npz or .pth state_dict")

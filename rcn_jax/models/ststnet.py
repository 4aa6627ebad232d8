"""STSTNet (Liong et al., 2019, "Shallow triple stream three-dimensional CNN"), as issue 23 fixes it.

Input `[N, 28, 28, 3]` (NHWC; the published model is NCHW). Three parallel branches read the same
input, each: Conv 3x3 stride 1 padding 2 with bias (3 -> 3, 5 and 8 channels) -> ReLU -> BN ->
MaxPool 3 stride 3 padding 1 -> Dropout 0.5. 28 -> 30 -> 10. The branches are concatenated on
channels (16 = 3 + 5 + 8), average-pooled 2x2 stride 2 (10 -> 5), flattened in PyTorch's
channel-major order `[16, 5, 5]` and classified by Dense(400 -> 3).

Choices where the description is silent, and why:
- Every branch pads by 2 (the description's "3x3 convolutions with padding 2 and 3, 5 and 8 output
  channels" read as padding 2, with 3, 5 and 8 channels): the branches are concatenated, so all
  three must give the same size; padding 2 gives 30 -> 10 -> 5. Padding 3 would also end at 5x5
  (32 -> 11 -> 5), and the state dicts' shapes cannot tell the two apart.
- Max pooling pads with -inf (PyTorch's MaxPool2d); average pooling has no padding.
- Batch norm: PyTorch's eps 1e-5, momentum 0.1 (0.9 in Flax's convention) and unbiased running
  variance (`layers.BatchNorm`), so imported PyTorch weights and statistics mean the same thing.
- Dropout is element-wise (PyTorch's `nn.Dropout` on a 4-D tensor), inverted scaling.
- Initialisation: PyTorch's defaults (Kaiming-uniform a=sqrt(5) for conv and linear kernels, i.e.
  U(+-1/sqrt(fan_in)); the same bound for biases), as the published code does not set its own.
- The classifier kernel is stored `[400, 3]` with rows in the channel-major order, so a PyTorch
  `fc.weight` is its transpose, unpermuted (see `import_state_dict`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from rcn_jax import errors
from rcn_jax.models import layers

Array = jax.Array

BRANCH_CHANNELS = (3, 5, 8)
PADDING = 2
INPUT_SIZE = 28


def torch_uniform(fan_in: int) -> Callable:
  """PyTorch's default `Conv2d` / `Linear` initialisation of weights and biases: U(+-1/sqrt(fan_in))."""
  bound = 1.0 / math.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def torch_dense(features: int, fan_in: int, name: str | None = None) -> nn.Dense:
  """A Dense layer with PyTorch's default initialisation."""
  return nn.Dense(features, kernel_init=torch_uniform(fan_in), bias_init=torch_uniform(fan_in), name=name)


class STSTNet(nn.Module):
  """STSTNet: `[N, 28, 28, 3]` -> logits `[N, num_classes]`.

  Attributes:
    num_classes: C.
    dropout_rate: dropout after each branch (0.5 published; 0 for parity tests in train mode).
    unbiased_running_var: PyTorch's running-variance rule in batch norm.
  """
  num_classes: int = 3
  dropout_rate: float = 0.5
  unbiased_running_var: bool = True

  @nn.compact
  def __call__(self, x: Array, *, train: bool = False, mask: Array | None = None) -> Array:
    """Logits `[N, C]` of `x [N, 28, 28, 3]`; `mask [N]` leaves samples out of the BN statistics."""
    branches = []
    for index, channels in enumerate(BRANCH_CHANNELS, start=1):
      fan_in = x.shape[-1] * 9
      y = nn.Conv(channels, (3, 3), padding=((PADDING, PADDING), (PADDING, PADDING)),
                  kernel_init=torch_uniform(fan_in), bias_init=torch_uniform(fan_in), name=f"conv{index}")(x)
      y = nn.relu(y)
      y = layers.BatchNorm(unbiased_running_var=self.unbiased_running_var, name=f"bn{index}")(
          y, train=train, mask=mask)
      y = layers.max_pool(y, 3, padding=1)
      branches.append(layers.Dropout(self.dropout_rate)(y, train=train))
    y = jnp.concatenate(branches, axis=-1)
    n, h, w, c = y.shape
    y = y[:, :h // 2 * 2, :w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))
    # PyTorch's flatten of NCHW: channel-major rows.
    features = jnp.transpose(y, (0, 3, 1, 2)).reshape(n, -1)
    return torch_dense(self.num_classes, features.shape[-1], name="fc")(features)


def _expected_shapes(num_classes: int, flat: int) -> dict[str, tuple[int, ...]]:
  shapes = {}
  for index, channels in enumerate(BRANCH_CHANNELS, start=1):
    shapes[f"conv{index}.weight"] = (channels, 3, 3, 3)
    shapes[f"conv{index}.bias"] = (channels,)
    for field in ("weight", "bias", "running_mean", "running_var"):
      shapes[f"bn{index}.{field}"] = (channels,)
  shapes["fc.weight"] = (num_classes, flat)
  shapes["fc.bias"] = (num_classes,)
  return shapes


def import_state_dict(state_dict: Mapping[str, np.ndarray], *, num_classes: int = 3,
                      dropout_rate: float = 0.5) -> tuple[STSTNet, dict]:
  """Builds STSTNet holding the weights of a published PyTorch state dict.

  Keys: `conv{1,2,3}.{weight,bias}` (weights `[out, 3, 3, 3]`), `bn{1,2,3}.{weight, bias,
  running_mean, running_var, num_batches_tracked}`, `fc.weight [C, 400]`, `fc.bias [C]`.
  `num_batches_tracked` is ignored (momentum is fixed, so it changes nothing).

  Returns:
    The module and `{'params', 'batch_stats'}` in the state dict's dtype.

  Raises:
    UserError: naming every unknown, missing or mis-shaped key.
  """
  flat = sum(BRANCH_CHANNELS) * 25
  expected = _expected_shapes(num_classes, flat)
  problems, arrays = [], {}
  for key, value in state_dict.items():
    if key.endswith("num_batches_tracked"):
      continue
    if key not in expected:
      problems.append(f"unknown key {key!r}")
    elif tuple(np.shape(value)) != expected[key]:
      problems.append(f"key {key!r} has shape {tuple(np.shape(value))}, expected {expected[key]}")
    else:
      arrays[key] = np.asarray(value)
  missing = sorted(set(expected) - set(arrays) - {k for k in state_dict if k in expected})
  if missing:
    problems.append(f"missing keys {missing}")
  if problems:
    raise errors.UserError("state_dict does not fit STSTNet: " + "; ".join(problems))
  params, stats = {}, {}
  for index in range(1, len(BRANCH_CHANNELS) + 1):
    params[f"conv{index}"] = {"kernel": arrays[f"conv{index}.weight"].transpose(2, 3, 1, 0),
                              "bias": arrays[f"conv{index}.bias"]}
    params[f"bn{index}"] = {"scale": arrays[f"bn{index}.weight"], "bias": arrays[f"bn{index}.bias"]}
    stats[f"bn{index}"] = {"mean": arrays[f"bn{index}.running_mean"], "var": arrays[f"bn{index}.running_var"]}
  params["fc"] = {"kernel": arrays["fc.weight"].T, "bias": arrays["fc.bias"]}
  return STSTNet(num_classes=num_classes, dropout_rate=dropout_rate), {"params": params, "batch_stats": stats}

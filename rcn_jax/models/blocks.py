"""Building blocks of the RCN family: the conv stems and the recurrent layers (models.md section 1).

Every block takes `x [N, H, W, C]`, `train` and an optional sample mask `[N]` that keeps padded
samples out of the batch-norm statistics.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from rcn_jax.models import layers

Array = jax.Array
# A gate maps the 1x1 branch's output [N, H, W, fm] and the layer input to the gated output.
Gate = Callable[[Array, Array], Array]

STEMS = ("conv5_pool", "wide", "standard", "wide_pooled")
LAYERS = ("recurrent", "shortcut", "embedding")
# The official code unfolds `recurrent` twice and `shortcut`/`embedding` three times.
DEFAULT_STEPS = {"recurrent": 2, "shortcut": 3, "embedding": 3}


class ConvBN(nn.Module):
  """Conv -> BN -> ReLU, or Conv -> ReLU -> BN with `relu_first` (the wide stems' streams)."""
  features: int
  kernel_size: int
  stride: int = 1
  padding: int = 0
  dilation: int = 1
  relu_first: bool = False
  unbiased_running_var: bool = True

  @nn.compact
  def __call__(self, x: Array, *, train: bool, mask: Array | None = None) -> Array:
    x = layers.torch_conv(x.shape[-1], self.features, self.kernel_size, self.stride, self.padding,
                          self.dilation, name="conv")(x)
    norm = layers.BatchNorm(unbiased_running_var=self.unbiased_running_var, name="bn")
    if self.relu_first:
      return norm(nn.relu(x), train=train, mask=mask)
    return nn.relu(norm(x, train=train, mask=mask))


class Stem(nn.Module):
  """The first layer: `conv5_pool`, `wide`, `standard`, `wide_pooled`, or `conv5_pool4` (Model 1).

  `reuse_stream2` reproduces the official RCN-F stem: stream 2's module (conv, ReLU, BN, dropout)
  is applied twice and stream 3 never, so its BN is updated twice per training forward and the two
  copies get independent dropout masks.
  """
  kind: str
  features: int
  dropout_rate: float
  reuse_stream2: bool = False
  unbiased_running_var: bool = True

  @nn.compact
  def __call__(self, x: Array, *, train: bool, mask: Array | None = None) -> Array:
    """`x [N, H, W, 3]` -> `[N, H', W', fm]` (60 -> 28 for conv5_pool, 20 otherwise, 14 conv5_pool4)."""
    dropout = lambda y: nn.Dropout(self.dropout_rate, deterministic=not train)(y)
    conv_bn = lambda **kw: ConvBN(unbiased_running_var=self.unbiased_running_var, **kw)
    fm = self.features
    if self.kind in ("conv5_pool", "conv5_pool4"):
      y = conv_bn(features=fm, kernel_size=5, name="main")(x, train=train, mask=mask)
      return dropout(layers.max_pool(y, 2 if self.kind == "conv5_pool" else 4))
    if self.kind == "standard":
      y = conv_bn(features=fm, kernel_size=3, stride=3, padding=1, name="main")(
          x, train=train, mask=mask)
      return dropout(y)
    if self.kind == "wide":
      half = fm // 2
      quarter = half // 2
      specs = (("stream1", half, 1), ("stream2", quarter, 2), ("stream3", quarter, 3))
      streams = {name: conv_bn(features=width, kernel_size=3, stride=3, padding=dilation,
                               dilation=dilation, relu_first=True, name=name)
                 for name, width, dilation in specs if not (self.reuse_stream2 and
                                                            name == "stream3")}
      order = ("stream1", "stream2", "stream2") if self.reuse_stream2 else (
          "stream1", "stream2", "stream3")
      return jnp.concatenate(
          [dropout(streams[name](x, train=train, mask=mask)) for name in order], axis=-1)
    if self.kind == "wide_pooled":
      outputs = []
      for name, dilation in (("stream1", 1), ("stream2", 3)):
        y = conv_bn(features=fm // 2, kernel_size=3, padding=dilation, dilation=dilation,
                    relu_first=True, name=name)(x, train=train, mask=mask)
        outputs.append(dropout(layers.max_pool(y, 3, padding=1)))
      return jnp.concatenate(outputs, axis=-1)
    raise ValueError(f"unknown stem {self.kind!r}; expected one of {STEMS}")


class RecurrentLayer(nn.Module):
  """A recurrent convolutional layer; the 3x3 conv and its BN are one module applied repeatedly.

  - `recurrent` (Eq. 3): `y = ff(x)`, then `steps` times `y = rr(x + y)`.
  - `shortcut` (Eq. 6): `y = ff(x)`, then each state is `rr` of the block input plus every earlier
    state: `z = rr(x + y)`, `e = rr(x + y + z)`, ...
  - `embedding`: `shortcut` with the attention `gate` applied to the 1x1 branch's output.
  Then MaxPool 2 s2 and dropout.
  """
  kind: str
  features: int
  dropout_rate: float
  steps: int
  unbiased_running_var: bool = True

  @nn.compact
  def __call__(self, x: Array, *, train: bool, mask: Array | None = None,
               gate: Gate | None = None) -> Array:
    """`x [N, H, W, fm]` -> `[N, H // 2, W // 2, fm]`."""
    feedforward = ConvBN(self.features, 1, unbiased_running_var=self.unbiased_running_var,
                         name="feedforward")
    recurrent = ConvBN(self.features, 3, padding=1, unbiased_running_var=self.unbiased_running_var,
                       name="recurrent")
    y = feedforward(x, train=train, mask=mask)
    if self.kind == "embedding":
      y = gate(y, x)
    if self.kind == "recurrent":
      for _ in range(self.steps):
        y = recurrent(x + y, train=train, mask=mask)
    elif self.kind in ("shortcut", "embedding"):
      total = x + y
      for step in range(self.steps):
        y = recurrent(total, train=train, mask=mask)
        if step + 1 < self.steps:
          total = total + y
    else:
      raise ValueError(f"unknown layer {self.kind!r}; expected one of {LAYERS}")
    return nn.Dropout(self.dropout_rate, deterministic=not train)(layers.max_pool(y, 2))

"""Building blocks of the RCN family: the conv stems and the recurrent layers (paper Sec. III).

Every block takes `x [N, H, W, C]`, `train` and an optional sample mask `[N]` that keeps padded
samples out of the batch-norm statistics.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

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
    """`x [N, H, W, C]` -> `[N, H', W', features]`."""
    x = layers.torch_conv(x.shape[-1], self.features, self.kernel_size, self.stride, self.padding,
                          self.dilation, name="conv")(x)
    norm = layers.BatchNorm(unbiased_running_var=self.unbiased_running_var, name="bn")
    if self.relu_first:
      return norm(nn.relu(x), train=train, mask=mask)
    return nn.relu(norm(x, train=train, mask=mask))


class ConvSpec(NamedTuple):
  """One stem convolution: output channels and its PyTorch-style geometry."""
  features: int
  kernel_size: int
  stride: int = 1
  padding: int = 0
  dilation: int = 1


def stem_convs(kind: str, features: int, reuse_stream2: bool = False) -> dict[str, ConvSpec]:
  """The convolutions a stem applies to the input, by module name (see `Stem`)."""
  fm = features
  if kind in ("conv5_pool", "conv5_pool4"):
    return {"main": ConvSpec(fm, 5)}
  if kind == "standard":
    return {"main": ConvSpec(fm, 3, stride=3, padding=1)}
  if kind == "wide":
    half = fm // 2
    quarter = half // 2
    specs = {"stream1": ConvSpec(half, 3, 3, 1, 1), "stream2": ConvSpec(quarter, 3, 3, 2, 2),
             "stream3": ConvSpec(quarter, 3, 3, 3, 3)}
    if reuse_stream2:
      del specs["stream3"]
    return specs
  if kind == "wide_pooled":
    return {"stream1": ConvSpec(fm // 2, 3, 1, 1, 1), "stream2": ConvSpec(fm // 2, 3, 1, 3, 3)}
  raise ValueError(f"unknown stem {kind!r}; expected one of {STEMS}")


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
    dropout = lambda y: layers.Dropout(self.dropout_rate)(y, train=train)
    convs = {name: ConvBN(*spec, relu_first=self.kind.startswith("wide"),
                          unbiased_running_var=self.unbiased_running_var, name=name)
             for name, spec in stem_convs(self.kind, self.features, self.reuse_stream2).items()}
    apply = lambda name: convs[name](x, train=train, mask=mask)
    if self.kind in ("conv5_pool", "conv5_pool4"):
      return dropout(layers.max_pool(apply("main"), 2 if self.kind == "conv5_pool" else 4))
    if self.kind == "standard":
      return dropout(apply("main"))
    if self.kind == "wide":
      order = ("stream1", "stream2", "stream2") if self.reuse_stream2 else ("stream1", "stream2", "stream3")
      return jnp.concatenate([dropout(apply(name)) for name in order], axis=-1)
    return jnp.concatenate([dropout(layers.max_pool(apply(name), 3, padding=1)) for name in ("stream1", "stream2")],
                           axis=-1)


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
    return layers.Dropout(self.dropout_rate)(layers.max_pool(y, 2), train=train)

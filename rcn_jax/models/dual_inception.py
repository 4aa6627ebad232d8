"""Dual-Inception (Zhou, Mao and Xue, 2019, "Dual-Inception network for cross-database micro-expression
recognition", MEGC2019).

The paper's network: the horizontal and vertical components of the TV-L1 flow (onset to the
middle frame) each enter their own stream of two Inception modules, each module followed by max
pooling; the two streams are concatenated, flattened, and a 1024-unit fully connected layer
(the RCN paper's "1024-dimensional fully connected layer") feeds the softmax classifier. Input
28x28 per component. The authors' Keras code (github.com/xly135846/MEGC2019) was not read for this
module: the widths below are choices, not the released ones.

On rcn-jax's composite the flow map's channels are (u, v, strain): stream 1 reads channel 0 (u),
stream 2 channel 1 (v); strain is not used.

Choices where the paper leaves things open, stated here:
- Inception module (GoogLeNet's four branches, concatenated on channels): 1x1; 1x1 -> 3x3;
  1x1 -> 5x5; 3x3 max pool (stride 1, same) -> 1x1. Every conv 'same' padding, ReLU after each.
  Every branch has `width` channels: 6 in the first module, 16 in the second (the LeNet-like
  widths of the OFF-ApexNet family the method builds on), so modules output 24 and 64 channels.
- Max pooling after each module 2x2 stride 2: 28 -> 14 -> 7; per stream 7x7x64 = 3136 features.
- The 1024-unit layer: ReLU, then dropout (`dropout_rate`, 0.5). No batch norm (so `mask` is
  unused). PyTorch's default initialisation. Features flatten in (row, col, channel) order.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from rcn_jax.models import layers
from rcn_jax.models.off_apexnet import stream_conv
from rcn_jax.models.ststnet import torch_dense

Array = jax.Array

MODULE_WIDTHS = (6, 16)
HIDDEN = 1024


def max_pool_same(x: Array, window: int = 3) -> Array:
  """Stride-1 max pooling with 'same' (-inf) padding: the Inception module's pooling branch."""
  return nn.max_pool(x, (window, window), strides=(1, 1), padding="SAME")


class Inception(nn.Module):
  """GoogLeNet's four-branch module, `width` channels per branch: `[N, H, W, C]` -> `[N, H, W, 4 width]`."""
  width: int

  @nn.compact
  def __call__(self, x: Array) -> Array:
    c = x.shape[-1]
    w = self.width
    one = nn.relu(stream_conv(w, 1, c, name="b1_1x1")(x))
    three = nn.relu(stream_conv(w, 1, c, name="b2_1x1")(x))
    three = nn.relu(stream_conv(w, 3, w, name="b2_3x3")(three))
    five = nn.relu(stream_conv(w, 1, c, name="b3_1x1")(x))
    five = nn.relu(stream_conv(w, 5, w, name="b3_5x5")(five))
    pool = nn.relu(stream_conv(w, 1, c, name="b4_1x1")(max_pool_same(x)))
    return jnp.concatenate([one, three, five, pool], axis=-1)


class DualInception(nn.Module):
  """Dual-Inception: `[N, H, W, 3]` (u, v, strain; 28x28 published) -> logits `[N, num_classes]`.

  Attributes:
    num_classes: C.
    dropout_rate: dropout after the hidden fully connected layer.
    hidden: its units (1024 published).
  """
  num_classes: int = 3
  dropout_rate: float = 0.5
  hidden: int = HIDDEN

  @nn.compact
  def __call__(self, x: Array, *, train: bool = False, mask: Array | None = None) -> Array:
    """Logits `[N, C]`; `mask` is unused (no batch norm)."""
    del mask
    streams = []
    for stream, channel in (("horizontal", 0), ("vertical", 1)):
      y = x[..., channel:channel + 1]
      for index, width in enumerate(MODULE_WIDTHS):
        y = layers.max_pool(Inception(width, name=f"{stream}_inception{index + 1}")(y), 2)
      streams.append(y.reshape(y.shape[0], -1))
    y = jnp.concatenate(streams, axis=-1)
    y = nn.relu(torch_dense(self.hidden, y.shape[-1], name="fc")(y))
    y = layers.Dropout(self.dropout_rate)(y, train=train)
    return torch_dense(self.num_classes, y.shape[-1], name="classifier")(y)

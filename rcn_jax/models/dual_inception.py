"""Dual-Inception (Zhou, Mao and Xue, 2019, "Dual-Inception network for cross-database micro-expression
recognition", MEGC2019).

The paper's network: the horizontal and vertical components of the TV-L1 flow (onset to the
middle frame) each enter their own stream of two Inception modules, each module followed by max
pooling; the two streams are concatenated, flattened, and a 1024-unit fully connected layer
feeds the softmax classifier. Input 28x28 per component.

Layer sizes, activations, padding and initialisation below are those of the authors' released
Keras code (github.com/xly135846/MEGC2019, `dual_inception.py`), read to check this module, which
is written from that description:
- Inception module (GoogLeNet's four branches, concatenated on channels): 1x1; 1x1 -> 3x3;
  1x1 -> 5x5; 3x3 max pool (stride 1, same) -> 1x1. Every conv 'same' padding with a bias, ReLU
  after each. Every branch has 6 channels in the first module and 16 in the second, so the modules
  output 24 and 64 channels.
- Max pooling 2x2 stride 2 after each module: 28 -> 14 -> 7; 7x7x64 = 3136 features per stream.
- The 1024-unit layer with ReLU, then the classifier. No dropout and no batch norm (so `mask` is
  unused).
- Keras' default initialisation: Glorot-uniform kernels, zero biases.

rcn-jax's choices where the code and rcn-jax's data differ:
- Each stream reads one channel of the flow map (u, v, strain): stream 1 channel 0 (u), stream 2
  channel 1 (v); strain is not used. The authors stored each component as its own image file and
  read it as a 3-channel image; a grey image gives three equal channels, which the first convs
  only sum.
- Features flatten in (row, col, channel) order, as Keras' `Flatten` on NHWC.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from rcn_jax.models import layers

Array = jax.Array

MODULE_WIDTHS = (6, 16)
HIDDEN = 1024


def keras_conv(features: int, kernel: int, name: str) -> nn.Conv:
  """Keras' `Conv2D(features, kernel, padding='same')` with its default initialisation."""
  return nn.Conv(features, (kernel, kernel), padding="SAME", kernel_init=nn.initializers.glorot_uniform(),
                 bias_init=nn.initializers.zeros, name=name)


def keras_dense(features: int, name: str) -> nn.Dense:
  """Keras' `Dense(features)` with its default initialisation."""
  return nn.Dense(features, kernel_init=nn.initializers.glorot_uniform(), bias_init=nn.initializers.zeros, name=name)


def max_pool_same(x: Array, window: int = 3) -> Array:
  """Stride-1 max pooling with 'same' (-inf) padding: the Inception module's pooling branch."""
  return nn.max_pool(x, (window, window), strides=(1, 1), padding="SAME")


class Inception(nn.Module):
  """GoogLeNet's four-branch module, `width` channels per branch: `[N, H, W, C]` -> `[N, H, W, 4 width]`."""
  width: int

  @nn.compact
  def __call__(self, x: Array) -> Array:
    w = self.width
    one = nn.relu(keras_conv(w, 1, name="b1_1x1")(x))
    three = nn.relu(keras_conv(w, 1, name="b2_1x1")(x))
    three = nn.relu(keras_conv(w, 3, name="b2_3x3")(three))
    five = nn.relu(keras_conv(w, 1, name="b3_1x1")(x))
    five = nn.relu(keras_conv(w, 5, name="b3_5x5")(five))
    pool = nn.relu(keras_conv(w, 1, name="b4_1x1")(max_pool_same(x)))
    return jnp.concatenate([one, three, five, pool], axis=-1)


class DualInception(nn.Module):
  """Dual-Inception: `[N, H, W, 3]` (u, v, strain; 28x28 published) -> logits `[N, num_classes]`.

  Attributes:
    num_classes: C.
    hidden: units of the fully connected layer (1024 published).
  """
  num_classes: int = 3
  hidden: int = HIDDEN

  @nn.compact
  def __call__(self, x: Array, *, train: bool = False, mask: Array | None = None) -> Array:
    """Logits `[N, C]`; `train` and `mask` change nothing (no dropout, no batch norm)."""
    del train, mask
    streams = []
    for stream, channel in (("horizontal", 0), ("vertical", 1)):
      y = x[..., channel:channel + 1]
      for index, width in enumerate(MODULE_WIDTHS):
        y = layers.max_pool(Inception(width, name=f"{stream}_inception{index + 1}")(y), 2)
      streams.append(y.reshape(y.shape[0], -1))
    y = jnp.concatenate(streams, axis=-1)
    y = nn.relu(keras_dense(self.hidden, name="fc")(y))
    return keras_dense(self.num_classes, name="classifier")(y)

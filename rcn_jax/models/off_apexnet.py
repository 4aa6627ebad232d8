"""OFF-ApexNet (Gan, Liong et al., 2019, "OFF-ApexNet on micro-expression recognition system").

The paper's network: the horizontal and vertical optical-flow components of the apex frame
(against the onset) each enter their own stream of two convolution + max-pooling stages, in the
shape of LeNet-5 (5x5 kernels, 6 then 16 filters); the two streams' features are flattened and
concatenated, then two fully connected layers of 1024 units and a softmax classifier follow.
Input 28x28 per component. (Layer sizes as we read the paper; its authors released no code, the
RCN paper notes. The only outside check: an independent implementation's published table, in the
Off-TANet project's README, gives OFF-ApexNet 2.66 M parameters at 28x28, as this module has
(2,664,475); 'valid' convolutions would give 1.58 M.)

On rcn-jax's composite the flow map's channels are (u, v, strain): stream 1 reads channel 0 (u),
stream 2 channel 1 (v); strain is not used, as in the paper (which has no strain input).

Choices where the paper leaves things open, stated here:
- Convolutions use 'same' zero padding (stride 1) and ReLU, max pooling 2x2 stride 2: 28 -> 14 -> 7,
  so each stream gives 7x7x16 = 784 features and the concatenation 1568 (padding is our choice;
  'valid' 5x5 convs would give 4x4x16 per stream instead).
- Fully connected layers: ReLU, dropout (`dropout_rate`, 0.5) after each of the two 1024-unit
  layers; no batch norm anywhere (the paper has none), so `mask` is accepted and unused.
- Initialisation: PyTorch's defaults (U(+-1/sqrt(fan_in)) for kernels and biases).
- Features flatten in (row, col, channel) order (no weight import exists for this model).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from rcn_jax.models import layers
from rcn_jax.models.ststnet import torch_dense, torch_uniform

Array = jax.Array

STREAM_CHANNELS = (6, 16)
HIDDEN = 1024


def stream_conv(features: int, kernel: int, in_channels: int, name: str) -> nn.Conv:
  """A stride-1 'same' convolution with PyTorch's default initialisation."""
  fan_in = in_channels * kernel * kernel
  return nn.Conv(features, (kernel, kernel), padding="SAME", kernel_init=torch_uniform(fan_in),
                 bias_init=torch_uniform(fan_in), name=name)


class OffApexNet(nn.Module):
  """OFF-ApexNet: `[N, H, W, 3]` (u, v, strain; 28x28 published) -> logits `[N, num_classes]`.

  Attributes:
    num_classes: C.
    dropout_rate: dropout after each hidden fully connected layer.
    hidden: units of the two fully connected layers (1024 published).
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
      for stage, features in enumerate(STREAM_CHANNELS):
        y = stream_conv(features, 5, y.shape[-1], name=f"{stream}_conv{stage + 1}")(y)
        y = layers.max_pool(nn.relu(y), 2)
      streams.append(y.reshape(y.shape[0], -1))
    y = jnp.concatenate(streams, axis=-1)
    for index in range(2):
      y = nn.relu(torch_dense(self.hidden, y.shape[-1], name=f"fc{index + 1}")(y))
      y = layers.Dropout(self.dropout_rate)(y, train=train)
    return torch_dense(self.num_classes, y.shape[-1], name="classifier")(y)

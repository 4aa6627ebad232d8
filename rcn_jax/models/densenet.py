"""DenseNet121 (Huang et al., 2017) for flow maps, trained from scratch: the RCN paper's deep baseline (Table V).

torchvision's `densenet121` layout at standard widths: stem Conv 7x7 s2 p3 (3 -> 2k, no bias) -> BN
-> ReLU -> MaxPool 3 s2 p1; dense blocks of (6, 12, 24, 16) layers with growth rate k = 32, each
layer BN -> ReLU -> Conv 1x1 (4k, bottleneck) -> BN -> ReLU -> Conv 3x3 p1 (k), its output
concatenated to its input; between blocks a transition BN -> ReLU -> Conv 1x1 (half the channels)
-> AvgPool 2 s2; after the last block BN -> ReLU -> global average pool -> Dense(1024 -> C).

Choices: `growth` (rcn-jax's `model.features`) is k (32 standard; the stem has 2k channels, the
bottleneck 4k); no dropout inside the blocks (torchvision's default drop_rate 0); batch norm as
PyTorch's (eps 1e-5, momentum 0.1, unbiased running variance); conv kernels Kaiming-normal
(fan_out), the classifier PyTorch's default. At 60x60 input the blocks see 15, 7, 3, 1 px
(the transitions' average pooling floors odd sizes, as PyTorch's does); the smallest input is 29 px.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from rcn_jax.models import layers
from rcn_jax.models.resnet import conv, torch_max_pool
from rcn_jax.models.ststnet import torch_dense

Array = jax.Array

BLOCK_LAYERS = (6, 12, 24, 16)


def avg_pool2(x: Array) -> Array:
  """PyTorch's `AvgPool2d(2, 2)` (floor mode) by reshape and mean; as PyTorch, an error below 2x2."""
  n, h, w, c = x.shape
  if min(h, w) < 2:
    raise ValueError(f"a transition's 2x2 average pooling got {h}x{w} px: the input is too small")
  x = x[:, :h // 2 * 2, :w // 2 * 2]
  return x.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


class DenseNet(nn.Module):
  """DenseNet-BC: `[N, H, W, 3]` -> logits `[N, num_classes]`.

  Attributes:
    block_layers: layers per dense block ((6, 12, 24, 16): DenseNet121).
    growth: growth rate k (32 standard).
    num_classes: C.
    unbiased_running_var: PyTorch's running-variance rule in batch norm.
  """
  block_layers: tuple[int, ...] = BLOCK_LAYERS
  growth: int = 32
  num_classes: int = 3
  unbiased_running_var: bool = True

  @nn.compact
  def __call__(self, x: Array, *, train: bool = False, mask: Array | None = None) -> Array:
    """Logits `[N, C]`; `mask [N]` leaves samples out of the BN statistics."""
    k = self.growth

    def bn_relu(y: Array, name: str) -> Array:
      y = layers.BatchNorm(unbiased_running_var=self.unbiased_running_var, name=name)(y, train=train, mask=mask)
      return nn.relu(y)

    y = conv(2 * k, 7, 2, 3, name="conv0")(x)
    y = torch_max_pool(bn_relu(y, "norm0"), 3, 2, 1)
    for block, count in enumerate(self.block_layers, start=1):
      for index in range(1, count + 1):
        prefix = f"block{block}_layer{index}"
        new = conv(4 * k, 1, name=f"{prefix}_conv1")(bn_relu(y, f"{prefix}_norm1"))
        new = conv(k, 3, 1, 1, name=f"{prefix}_conv2")(bn_relu(new, f"{prefix}_norm2"))
        y = jnp.concatenate([y, new], axis=-1)
      if block < len(self.block_layers):
        y = conv(y.shape[-1] // 2, 1, name=f"transition{block}_conv")(bn_relu(y, f"transition{block}_norm"))
        y = avg_pool2(y)
    y = jnp.mean(bn_relu(y, "norm5"), axis=(1, 2))
    return torch_dense(self.num_classes, y.shape[-1], name="classifier")(y)

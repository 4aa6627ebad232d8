"""ResNet18 (He et al., 2016) for flow maps, trained from scratch: the RCN paper's deep baseline (Table V).

torchvision's `resnet18` layout at standard widths: stem Conv 7x7 s2 p3 (3 -> 64, no bias) -> BN
-> ReLU -> MaxPool 3 s2 p1; four stages of two basic blocks (64, 128, 256, 512 channels; stride
2 in the first block of stages 2-4, a 1x1 conv + BN projection where the shape changes); global
average pooling; Dense(512 -> C). Basic block: Conv 3x3 -> BN -> ReLU -> Conv 3x3 -> BN, plus
the shortcut, then ReLU.

Choices: `width` (rcn-jax's `model.features`) is the first stage's channels (64 standard; the
others double it); batch norm as PyTorch's (eps 1e-5, momentum 0.1, unbiased running variance);
conv kernels Kaiming-normal fan_out (torchvision's init), BN scale 1 / bias 0, the classifier
PyTorch's default. No pretrained weights (the paper trains its baselines on the flow maps).
At 60x60 input the stem gives 30 px, the pooled stages 15, 8, 4, 2 px.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from rcn_jax.models import layers
from rcn_jax.models.ststnet import torch_dense

Array = jax.Array

STAGE_BLOCKS = (2, 2, 2, 2)


def conv(features: int, kernel: int, stride: int = 1, padding: int = 0, name: str | None = None) -> nn.Conv:
  """A bias-free conv with PyTorch's explicit padding and torchvision's Kaiming-normal fan_out init."""
  return nn.Conv(features, (kernel, kernel), strides=(stride, stride), padding=((padding, padding),) * 2,
                 use_bias=False, kernel_init=layers.kaiming_normal_fan_out(), name=name)


def torch_max_pool(x: Array, window: int, stride: int, padding: int) -> Array:
  """PyTorch's `MaxPool2d(window, stride, padding)` (floor mode, -inf padding) on `[N, H, W, C]`."""
  return nn.max_pool(x, (window, window), strides=(stride, stride), padding=((padding, padding),) * 2)


class BasicBlock(nn.Module):
  """ResNet's basic block: `[N, H, W, C]` -> `[N, H/stride, W/stride, features]`."""
  features: int
  stride: int
  unbiased_running_var: bool = True

  @nn.compact
  def __call__(self, x: Array, *, train: bool, mask: Array | None) -> Array:
    bn = lambda name: layers.BatchNorm(unbiased_running_var=self.unbiased_running_var, name=name)  # noqa: E731
    y = conv(self.features, 3, self.stride, 1, name="conv1")(x)
    y = nn.relu(bn("bn1")(y, train=train, mask=mask))
    y = conv(self.features, 3, 1, 1, name="conv2")(y)
    y = bn("bn2")(y, train=train, mask=mask)
    if self.stride != 1 or x.shape[-1] != self.features:
      x = conv(self.features, 1, self.stride, name="downsample_conv")(x)
      x = bn("downsample_bn")(x, train=train, mask=mask)
    return nn.relu(y + x)


class ResNet(nn.Module):
  """ResNet with basic blocks: `[N, H, W, 3]` -> logits `[N, num_classes]`.

  Attributes:
    stage_blocks: blocks per stage ((2, 2, 2, 2): ResNet18).
    width: channels of the first stage (64 standard).
    num_classes: C.
    unbiased_running_var: PyTorch's running-variance rule in batch norm.
  """
  stage_blocks: tuple[int, ...] = STAGE_BLOCKS
  width: int = 64
  num_classes: int = 3
  unbiased_running_var: bool = True

  @nn.compact
  def __call__(self, x: Array, *, train: bool = False, mask: Array | None = None) -> Array:
    """Logits `[N, C]`; `mask [N]` leaves samples out of the BN statistics."""
    y = conv(self.width, 7, 2, 3, name="conv1")(x)
    y = layers.BatchNorm(unbiased_running_var=self.unbiased_running_var, name="bn1")(y, train=train, mask=mask)
    y = torch_max_pool(nn.relu(y), 3, 2, 1)
    for stage, blocks in enumerate(self.stage_blocks):
      for block in range(blocks):
        stride = 2 if stage > 0 and block == 0 else 1
        y = BasicBlock(self.width * 2 ** stage, stride, self.unbiased_running_var,
                       name=f"layer{stage + 1}_{block}")(y, train=train, mask=mask)
    y = jnp.mean(y, axis=(1, 2))
    return torch_dense(self.num_classes, y.shape[-1], name="fc")(y)

"""Layers with PyTorch's exact semantics: batch norm, conv initialisation, pooling and upsampling.

Every array is NHWC: `[batch, H, W, C]`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def kaiming_normal_fan_out() -> Callable:
  """PyTorch's `kaiming_normal_(mode='fan_out', nonlinearity='relu')`: plain (untruncated) normal."""
  return nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def torch_conv_bias_init(fan_in: int) -> Callable:
  """PyTorch's default conv bias: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  bound = 1.0 / math.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


class TorchConv(nn.Module):
  """A 2-D convolution with PyTorch's explicit symmetric padding, dilation and initialisation.

  Its parameters are `nn.Conv`'s (`kernel [k, k, C_in, features]`, `bias [features]`, created in
  that order, so initialisation draws the same values). Given the input's `patches` (see
  `conv_patches`) it computes the same convolution as one matmul: on CPU the weight gradient of a
  convolution with few input channels (the stems read 3) is many times slower as XLA's generic
  backward-filter convolution than as a dot with the long N*H*W axis contracted.
  """
  features: int
  kernel_size: int
  stride: int = 1
  padding: int = 0
  dilation: int = 1

  @nn.compact
  def __call__(self, x: Array | None, patches: Array | None = None) -> Array:
    """`x [N, H, W, C_in]`, or its `patches [N, H', W', k*k*C_in]` -> `[N, H', W', features]`."""
    size = self.kernel_size
    in_channels = x.shape[-1] if patches is None else patches.shape[-1] // (size * size)
    kernel = self.param("kernel", kaiming_normal_fan_out(), (size, size, in_channels, self.features), jnp.float32)
    bias = self.param("bias", torch_conv_bias_init(in_channels * size * size), (self.features,), jnp.float32)
    source = x if patches is None else patches
    dtype = jnp.result_type(source, kernel, bias)  # nn.Conv's promotion
    source, kernel, bias = source.astype(dtype), kernel.astype(dtype), bias.astype(dtype)
    if patches is not None:
      return source @ kernel.reshape(-1, self.features) + bias
    y = jax.lax.conv_general_dilated(
        source, kernel, (self.stride, self.stride), ((self.padding, self.padding),) * 2,
        rhs_dilation=(self.dilation, self.dilation), dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y + bias


def conv_patches(x: Array, kernel_size: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> Array:
  """The windows a `TorchConv` of these settings reads: `x [N, H, W, C]` -> `[N, H', W', k*k*C]`.

  Ordered (kernel row, kernel column, channel), the order of the kernel's flattened leading axes.
  """
  x = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
  reach = dilation * (kernel_size - 1)
  out_h = (x.shape[1] - reach - 1) // stride + 1
  out_w = (x.shape[2] - reach - 1) // stride + 1
  windows = [x[:, i * dilation:i * dilation + (out_h - 1) * stride + 1:stride,
               j * dilation:j * dilation + (out_w - 1) * stride + 1:stride]
             for i in range(kernel_size) for j in range(kernel_size)]
  return jnp.concatenate(windows, axis=-1)


class BatchNorm(nn.Module):
  """Batch norm over (batch, H, W) with an optional sample mask and PyTorch's running-variance rule.

  In training the output is normalised with the biased batch variance (as in PyTorch and Flax), and
  the running statistics are updated once per call: `running = momentum * running + (1 - momentum)
  * batch` (Flax's momentum convention; PyTorch's momentum 0.1 is 0.9 here). With
  `unbiased_running_var` the running variance takes the batch variance times m / (m - 1), m the
  number of elements per channel, as PyTorch does; Flax's own BatchNorm uses the biased one. A module
  called several times per forward (a shared recurrent conv) therefore updates its statistics once
  per call, in call order. The variance is computed in two passes (E[(x - mean)^2]), which is more
  accurate than E[x^2] - E[x]^2 on post-ReLU inputs.
  """
  momentum: float = 0.9
  epsilon: float = 1e-5
  unbiased_running_var: bool = True

  @nn.compact
  def __call__(self, x: Array, *, train: bool, mask: Array | None = None) -> Array:
    """Normalises `x [N, H, W, C]`; samples where `mask [N]` is 0 do not enter the batch statistics."""
    channels = x.shape[-1]
    scale = self.param("scale", nn.initializers.ones, (channels,), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (channels,), jnp.float32)
    running_mean = self.variable("batch_stats", "mean", jnp.zeros, (channels,), jnp.float32)
    running_var = self.variable("batch_stats", "var", jnp.ones, (channels,), jnp.float32)
    if train:
      mean, var, count = _batch_moments(x, mask)
      if not self.is_initializing():
        if self.unbiased_running_var:
          stat_var = var * count / jnp.maximum(count - 1, 1)
        else:
          stat_var = var
        running_mean.value = self.momentum * running_mean.value + (1 - self.momentum) * mean
        running_var.value = self.momentum * running_var.value + (1 - self.momentum) * stat_var
    else:
      mean, var = running_mean.value, running_var.value
    return (x - mean) * (scale * jax.lax.rsqrt(var + self.epsilon)) + bias


def _batch_moments(x: Array, mask: Array | None) -> tuple[Array, Array, Array]:
  """Per-channel mean, biased variance and element count of `x [N, H, W, C]` over masked samples."""
  per_sample = x.shape[1] * x.shape[2]
  if mask is None:
    mean = jnp.mean(x, axis=(0, 1, 2))
    var = jnp.mean(jnp.square(x - mean), axis=(0, 1, 2))
    return mean, var, jnp.asarray(x.shape[0] * per_sample, x.dtype)
  weights = mask.astype(x.dtype)[:, None, None, None]
  count = jnp.sum(weights) * per_sample
  safe_count = jnp.maximum(count, 1)
  mean = jnp.sum(x * weights, axis=(0, 1, 2)) / safe_count
  var = jnp.sum(jnp.square(x - mean) * weights, axis=(0, 1, 2)) / safe_count
  return mean, var, count


def max_pool(x: Array, window: int, padding: int = 0) -> Array:
  """PyTorch's `MaxPool2d(window, stride=window, padding)` (floor mode) by reshape and max.

  A reshape-max is several times faster than `reduce_window` on CPU, forward and backward.
  """
  n, h, w, c = x.shape
  if padding:
    x = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)),
                constant_values=-jnp.inf)
  out_h = (h + 2 * padding - window) // window + 1
  out_w = (w + 2 * padding - window) // window + 1
  x = x[:, :out_h * window, :out_w * window]
  return x.reshape(n, out_h, window, out_w, window, c).max(axis=(2, 4))


def adaptive_bins(in_size: int, out_size: int) -> list[tuple[int, int]]:
  """PyTorch's adaptive pooling bins: bin i covers [floor(i*in/out), ceil((i+1)*in/out))."""
  return [(math.floor(i * in_size / out_size), math.ceil((i + 1) * in_size / out_size))
          for i in range(out_size)]


def adaptive_avg_pool(x: Array, out_size: int) -> Array:
  """PyTorch's `AdaptiveAvgPool2d(out_size)` on `x [N, H, W, C]` -> `[N, out, out, C]`.

  Bins overlap when out does not divide in, and also when out > in, so a reshape-mean is not enough.
  """
  rows = [x[:, a:b].mean(axis=1) for a, b in adaptive_bins(x.shape[1], out_size)]
  x = jnp.stack(rows, axis=1)
  cols = [x[:, :, a:b].mean(axis=2) for a, b in adaptive_bins(x.shape[2], out_size)]
  return jnp.stack(cols, axis=2)


def nearest_indices(in_size: int, out_size: int) -> np.ndarray:
  """PyTorch's `nearest` source indices: min(floor(dst * float32(in / out)), in - 1).

  `jax.image.resize(..., 'nearest')` uses half-pixel centres (PyTorch's 'nearest-exact') and differs.
  """
  scale = np.float32(in_size / out_size)
  dst = np.arange(out_size, dtype=np.float32)
  return np.minimum(np.floor(dst * scale).astype(np.int64), in_size - 1)


def upsample_nearest(x: Array, out_h: int, out_w: int) -> Array:
  """PyTorch's `F.interpolate(mode='nearest')` of `x [N, H, W, ...]` to `[N, out_h, out_w, ...]`."""
  x = jnp.take(x, nearest_indices(x.shape[1], out_h), axis=1)
  return jnp.take(x, nearest_indices(x.shape[2], out_w), axis=2)

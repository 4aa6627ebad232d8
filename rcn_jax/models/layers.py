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


def torch_conv(in_channels: int, features: int, kernel_size: int, stride: int = 1,
               padding: int = 0, dilation: int = 1, name: str | None = None) -> nn.Conv:
  """A 2-D convolution with PyTorch's explicit symmetric padding, dilation and initialisation."""
  return nn.Conv(
      features, (kernel_size, kernel_size), strides=(stride, stride),
      padding=((padding, padding), (padding, padding)), kernel_dilation=(dilation, dilation),
      kernel_init=kaiming_normal_fan_out(),
      bias_init=torch_conv_bias_init(in_channels * kernel_size * kernel_size), name=name)


def bernoulli_mask(key: jax.Array, keep: float, shape: tuple[int, ...]) -> Array:
  """A bool mask of `shape`, each entry independently True with probability `keep`.

  Where `keep` is a multiple of 1/2^b for some b <= 8 (dropout 0.5 keeps 1/2: b = 1), each entry
  is b bits of one random 32-bit word, not a 32-bit uniform of its own: up to 32x fewer random
  numbers, and generating them was most of dropout's cost on CPU. Other probabilities use
  `jax.random.bernoulli`.
  """
  bits = next((b for b in range(1, 9) if float(keep * 2 ** b).is_integer()), None)
  if bits is None:
    return jax.random.bernoulli(key, keep, shape)
  size = math.prod(shape)
  per_word = 32 // bits
  words = jax.random.bits(key, (-(-size // per_word),), jnp.uint32)
  shifts = jnp.arange(per_word, dtype=jnp.uint32) * bits
  fields = (words[:, None] >> shifts) & ((1 << bits) - 1)
  return (fields.reshape(-1)[:size] < round(keep * 2 ** bits)).reshape(shape)


class Dropout(nn.Module):
  """Inverted dropout as `nn.Dropout` (kept entries scaled by 1 / (1 - rate)), masks from `bernoulli_mask`.

  Draws from the `dropout` RNG collection; a no-op outside training and at rate 0.
  """
  rate: float

  @nn.compact
  def __call__(self, x: Array, *, train: bool) -> Array:
    """`x [...]` with each entry zeroed with probability `rate` in training."""
    if not train or self.rate == 0:
      return x
    keep = 1.0 - self.rate
    if keep == 0:
      return jnp.zeros_like(x)
    mask = bernoulli_mask(self.make_rng("dropout"), keep, x.shape)
    return jnp.where(mask, x / keep, jnp.zeros_like(x))


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
  weights = mask.astype(x.dtype)
  count = jnp.sum(weights) * per_sample
  safe_count = jnp.maximum(count, 1)
  # Per-sample sums first, then their masked sum: weighting x itself would have XLA materialise
  # the mask broadcast to x's full shape for every statistic.
  mean = weights @ jnp.sum(x, axis=(1, 2)) / safe_count
  var = weights @ jnp.sum(jnp.square(x - mean), axis=(1, 2)) / safe_count
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

  Bins overlap when out does not divide in, and also when out > in; then a reshape-mean is not enough.
  """
  n, h, w, c = x.shape
  if h % out_size == 0 and w % out_size == 0:
    return x.reshape(n, out_size, h // out_size, out_size, w // out_size, c).mean(axis=(2, 4))
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

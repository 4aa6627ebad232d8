"""The parameter-free attention unit: class activation maps read from the classifier's own weights.

The classifier kernel is `[P * P * fm, C]` with rows in NHWC flatten order, row `(i * P + j) * fm +
k` for pooled feature `(i, j, k)`. Reading it (not a copy, not detached) lets the classifier receive
gradient through both the logits and the attention map.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def _kernel_maps(kernel: Array, pool_size: int) -> Array:
  """The classifier kernel `[P*P*fm, C]` as per-position weights `[P, P, fm, C]`."""
  return kernel.reshape(pool_size, pool_size, -1, kernel.shape[-1])


def _normalise_and_average(cams: Array) -> Array:
  """Min-max normalises `cams [N, P, P, C]` per sample and class, then averages the classes.

  The official unit divides by the range with no epsilon, so a constant map gives NaN. The guard
  leaves every non-constant map bit-identical (an epsilon would move float64 logits by ~3e-7) and
  turns a constant one into ones; the double `where` keeps the gradient finite as well.
  """
  low = cams.min(axis=(1, 2), keepdims=True)
  span = cams.max(axis=(1, 2), keepdims=True) - low
  positive = span > 0
  safe_span = jnp.where(positive, span, 1)
  normalised = jnp.where(positive, (cams - low) / safe_span, 1)
  return normalised.mean(axis=-1)


def cam_p(features: Array, kernel: Array) -> Array:
  """Attention from a pooled feature with the classifier's channel count.

  Args:
    features: `[N, P, P, fm]`, an adaptive-average-pooled feature.
    kernel: the classifier kernel `[P * P * fm, C]`.
  Returns:
    `[N, P, P]` maps in [0, 1]: per class `(1/fm) sum_k W[c, (i, j, k)] * l[n, i, j, k]`,
    min-max normalised, then averaged over classes.
  """
  weights = _kernel_maps(kernel, features.shape[1])
  cams = jnp.mean(features[..., None] * weights[None], axis=3)
  return _normalise_and_average(cams)


def cam_f(features: Array, kernel: Array, pool_size: int) -> Array:
  """Attention from a pooled input with any channel count (e.g. the 3-channel flow map).

  Args:
    features: `[N, P, P, channels]`.
    kernel: the classifier kernel `[P * P * fm, C]`.
    pool_size: P.
  Returns:
    `[N, P, P]` maps in [0, 1]: per class `mean_k W[c, (i, j, k)] * mean_channels(l)[n, i, j]`,
    min-max normalised, then averaged over classes.
  """
  mean_weights = _kernel_maps(kernel, pool_size).mean(axis=2)
  cams = mean_weights[None] * features.mean(axis=-1)[..., None]
  return _normalise_and_average(cams)

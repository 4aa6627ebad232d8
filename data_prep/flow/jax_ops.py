"""Array operations shared by the JAX flow solvers: resizing, warping, stencils and median.

Every function works on one image `[H, W]` (or a small stack `[C, H, W]`) and is traced once per
shape; the solvers batch them with `jax.vmap`. Resampling matrices are built with numpy at trace
time, so a resize is two small matrix products.

Coarse pyramid levels are solved on a fixed canvas with the level's own size given as traced
`height`, `width`: the content sits in the top-left corner, and the operations below take those
sizes as the image bounds, so one compiled level body serves every level.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

_HIGHEST = jax.lax.Precision.HIGHEST  # float32 products on GPUs that default to TF32


def linear_resize_matrix(src_size: int, dst_size: int, scale: float | None = None) -> np.ndarray:
  """The `[dst, src]` matrix of OpenCV's `INTER_LINEAR` along one axis (pixel-centre aligned).

  Args:
    src_size: input length.
    dst_size: output length.
    scale: `dst / src` used for the coordinate map; OpenCV uses the requested factor (not the
      ratio of the rounded sizes) when one is given.
  Returns:
    The interpolation matrix, float32; sources beyond the edges are clamped to the edge pixel.
  """
  scale = dst_size / src_size if scale is None else scale
  position = (np.arange(dst_size) + 0.5) / scale - 0.5
  left = np.floor(position)
  fraction = position - left
  left = left.astype(np.int64)
  matrix = np.zeros((dst_size, src_size))
  rows = np.arange(dst_size)
  np.add.at(matrix, (rows, np.clip(left, 0, src_size - 1)), 1.0 - fraction)
  np.add.at(matrix, (rows, np.clip(left + 1, 0, src_size - 1)), fraction)
  return matrix.astype(np.float32)


def gaussian_blur_matrix(size: int, sigma: float) -> np.ndarray:
  """The `[size, size]` matrix of a Gaussian blur with edge replication (identity for sigma 0).

  The kernel half-width is `int(3 sigma)`, as in the classic coarse-to-fine pyramid.
  """
  half_width = int(3.0 * sigma)
  if half_width == 0:
    return np.eye(size, dtype=np.float32)
  offsets = np.arange(-half_width, half_width + 1)
  kernel = np.exp(-offsets ** 2 / (2.0 * sigma ** 2))
  kernel /= kernel.sum()
  matrix = np.zeros((size, size))
  rows = np.arange(size)
  for offset, weight in zip(offsets, kernel):
    np.add.at(matrix, (rows, np.clip(rows + offset, 0, size - 1)), weight)
  return matrix.astype(np.float32)


def apply_separable(image: jax.Array, rows_matrix: np.ndarray | jax.Array,
                    cols_matrix: np.ndarray | jax.Array) -> jax.Array:
  """`rows_matrix @ image @ cols_matrix.T`: a separable linear map of `[H, W]` to `[h, w]`."""
  image = jnp.matmul(jnp.asarray(rows_matrix), image, precision=_HIGHEST)
  return jnp.matmul(image, jnp.asarray(cols_matrix).T, precision=_HIGHEST)


def pad_to(array: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """Zero-pads the trailing end of every axis of `array` up to `shape`."""
  return jnp.pad(array, [(0, target - size) for size, target in zip(array.shape, shape)])


def cubic_weights(fraction: jax.Array) -> tuple[jax.Array, ...]:
  """Cubic-convolution weights (a = -0.75, as OpenCV's `INTER_CUBIC`) of taps -1, 0, +1, +2."""
  a = -0.75
  t0 = fraction + 1.0
  t1 = fraction
  t2 = 1.0 - fraction
  w0 = ((a * t0 - 5.0 * a) * t0 + 8.0 * a) * t0 - 4.0 * a
  w1 = ((a + 2.0) * t1 - (a + 3.0)) * t1 * t1 + 1.0
  w2 = ((a + 2.0) * t2 - (a + 3.0)) * t2 * t2 + 1.0
  return w0, w1, w2, 1.0 - w0 - w1 - w2


def _split_coordinate(coordinate: jax.Array, subpixel_bins: int) -> tuple[jax.Array, jax.Array]:
  if subpixel_bins:
    # OpenCV's remap rounds float maps to 1/32 px before interpolating.
    coordinate = jnp.round(coordinate * subpixel_bins) / subpixel_bins
  integer = jnp.floor(coordinate)
  return integer.astype(jnp.int32), coordinate - integer


def remap_cubic(images: jax.Array, map_x: jax.Array, map_y: jax.Array, *, subpixel_bins: int = 32,
                height: jax.Array | int | None = None,
                width: jax.Array | int | None = None) -> jax.Array:
  """Samples `images [C, H, W]` at `(map_x, map_y) [h, w]` by bicubic convolution, zero outside.

  This is `cv2.remap(..., INTER_CUBIC, BORDER_CONSTANT)` applied to each channel: taps that fall
  outside the image read 0, which darkens warped pixels near the border.

  Returns:
    The samples `[C, h, w]`; `height`, `width` bound the image inside its canvas (whole by default).
  """
  canvas_width = images.shape[2]
  height = images.shape[1] if height is None else height
  width = canvas_width if width is None else width
  col, frac_x = _split_coordinate(map_x, subpixel_bins)
  row, frac_y = _split_coordinate(map_y, subpixel_bins)
  offsets = jnp.arange(-1, 3)
  tap_rows = row[None] + offsets[:, None, None]  # [4, h, w]
  tap_cols = col[None] + offsets[:, None, None]
  weights_y = jnp.stack(cubic_weights(frac_y)) * ((tap_rows >= 0) & (tap_rows < height))
  weights_x = jnp.stack(cubic_weights(frac_x)) * ((tap_cols >= 0) & (tap_cols < width))
  flat_index = (jnp.clip(tap_rows, 0, height - 1)[:, None] * canvas_width
                + jnp.clip(tap_cols, 0, width - 1)[None, :])  # [4, 4, h, w]
  taps = images.reshape(images.shape[0], -1)[:, flat_index]  # [C, 4, 4, h, w]
  return jnp.einsum("cyxhw,yhw,xhw->chw", taps, weights_y, weights_x, precision=_HIGHEST)


def remap_linear(image: jax.Array, map_x: jax.Array, map_y: jax.Array, *,
                 height: jax.Array | int | None = None,
                 width: jax.Array | int | None = None) -> tuple[jax.Array, jax.Array]:
  """Bilinear sampling of `image [H, W]` at `(map_x, map_y)`, clamped at the edges.

  Returns:
    The samples `[h, w]` and a bool mask `[h, w]` of the points inside the image, whose size is
    `height x width` inside its canvas (the whole array by default).
  """
  canvas_height, canvas_width = image.shape
  height = canvas_height if height is None else height
  width = canvas_width if width is None else width
  inside = (map_x >= 0) & (map_x <= width - 1) & (map_y >= 0) & (map_y <= height - 1)
  x = jnp.clip(map_x, 0.0, width - 1.0)
  y = jnp.clip(map_y, 0.0, height - 1.0)
  col = jnp.floor(x).astype(jnp.int32)
  row = jnp.floor(y).astype(jnp.int32)
  frac_x = x - col
  frac_y = y - row
  next_col = jnp.minimum(col + 1, width - 1)
  next_row = jnp.minimum(row + 1, height - 1)
  top = image[row, col] * (1.0 - frac_x) + image[row, next_col] * frac_x
  bottom = image[next_row, col] * (1.0 - frac_x) + image[next_row, next_col] * frac_x
  return top * (1.0 - frac_y) + bottom * frac_y, inside


def valid_mask(shape: tuple[int, int], height: jax.Array | int,
               width: jax.Array | int) -> jax.Array:
  """Bool `[H, W]`: the `height x width` top-left corner of a canvas of `shape`."""
  return (jnp.arange(shape[0])[:, None] < height) & (jnp.arange(shape[1])[None, :] < width)


def extend_edges(fields: jax.Array, height: jax.Array | int, width: jax.Array | int) -> jax.Array:
  """Replaces the canvas outside the `height x width` corner of `[..., H, W]` by edge replication.

  Stencils applied to the result then see OpenCV's replicated border at the content's own edges.
  """
  rows = jnp.minimum(jnp.arange(fields.shape[-2]), height - 1)
  cols = jnp.minimum(jnp.arange(fields.shape[-1]), width - 1)
  return fields[..., rows[:, None], cols[None, :]]


def pixel_grid(shape: tuple[int, int]) -> tuple[jax.Array, jax.Array]:
  """Column and row coordinates `[H, W]`, float32."""
  rows, cols = jnp.meshgrid(jnp.arange(shape[0], dtype=jnp.float32),
                            jnp.arange(shape[1], dtype=jnp.float32), indexing="ij")
  return cols, rows


def centered_gradient(image: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Half central differences `(d/dx, d/dy)`; at the edges half the one-sided difference."""
  padded = jnp.pad(image, 1, mode="edge")
  grad_x = 0.5 * (padded[1:-1, 2:] - padded[1:-1, :-2])
  grad_y = 0.5 * (padded[2:, 1:-1] - padded[:-2, 1:-1])
  return grad_x, grad_y


def forward_gradient(field: jax.Array, height: jax.Array | int | None = None,
                     width: jax.Array | int | None = None) -> tuple[jax.Array, jax.Array]:
  """Forward differences `(d/dx, d/dy)`, zero from the last column and row of the content on."""
  height = field.shape[0] if height is None else height
  width = field.shape[1] if width is None else width
  rows = jnp.arange(field.shape[0])[:, None]
  cols = jnp.arange(field.shape[1])[None, :]
  grad_x = jnp.pad(field[:, 1:] - field[:, :-1], ((0, 0), (0, 1)))
  grad_y = jnp.pad(field[1:, :] - field[:-1, :], ((0, 1), (0, 0)))
  inside = (rows < height) & (cols < width)
  return (jnp.where(inside & (cols < width - 1), grad_x, 0.0),
          jnp.where(inside & (rows < height - 1), grad_y, 0.0))


def backward_divergence(p_x: jax.Array, p_y: jax.Array) -> jax.Array:
  """The divergence adjoint to `forward_gradient` (backward differences, zero field outside)."""
  return (p_x - jnp.pad(p_x[:, :-1], ((0, 0), (1, 0)))
          + p_y - jnp.pad(p_y[:-1, :], ((1, 0), (0, 0))))


def _batcher_comparators(length: int) -> list[tuple[int, int]]:
  """Batcher's odd-even merge sorting network for `length` (a power of two) wires."""
  comparators = []
  block = 1
  while block < length:
    step = block
    while step >= 1:
      for start in range(step % block, length - step, 2 * step):
        for i in range(min(step, length - start - step)):
          if (i + start) // (2 * block) == (i + start + step) // (2 * block):
            comparators.append((i + start, i + start + step))
      step //= 2
    block *= 2
  return comparators


@functools.cache
def selection_network(length: int, rank: int) -> tuple[tuple[int, int], ...]:
  """Compare-exchange pairs `(low, high)` that bring the `rank`-th smallest of `length` values to
  wire `rank`: Batcher's network on the next power of two (the missing wires act as +inf, so their
  comparators are no-ops), pruned to the comparators the output depends on."""
  padded = 1 << (length - 1).bit_length()
  comparators = [(i, j) for i, j in _batcher_comparators(padded) if j < length]
  needed = {rank}
  kept = []
  for low, high in reversed(comparators):
    if low in needed or high in needed:
      kept.append((low, high))
      needed |= {low, high}
  return tuple(reversed(kept))


def median_filter(fields: jax.Array, size: int) -> jax.Array:
  """Median over a `size x size` window of each `[..., H, W]` field, edges replicated.

  As OpenCV's `medianBlur`.

  A min/max selection network instead of a sort: it compiles quickly and vectorises.
  """
  half = size // 2
  height, width = fields.shape[-2:]
  padding = [(0, 0)] * (fields.ndim - 2) + [(half, half), (half, half)]
  padded = jnp.pad(fields, padding, mode="edge")
  wires = [padded[..., dy:dy + height, dx:dx + width] for dy in range(size) for dx in range(size)]
  rank = size * size // 2
  for low, high in selection_network(size * size, rank):
    wires[low], wires[high] = (jnp.minimum(wires[low], wires[high]),
                               jnp.maximum(wires[low], wires[high]))
  return wires[rank]


def correlate_rows_cols(images: jax.Array, kernel_x: np.ndarray | None,
                        kernel_y: np.ndarray | None) -> jax.Array:
  """Separable correlation of `[..., H, W]` with odd 1-D kernels along x and y, edges replicated."""
  if kernel_x is not None:
    half = len(kernel_x) // 2
    width = images.shape[-1]
    padded = jnp.pad(images, [(0, 0)] * (images.ndim - 1) + [(half, half)], mode="edge")
    images = sum(float(w) * padded[..., k:k + width] for k, w in enumerate(kernel_x))
  if kernel_y is not None:
    half = len(kernel_y) // 2
    height = images.shape[-2]
    padded = jnp.pad(images, [(0, 0)] * (images.ndim - 2) + [(half, half), (0, 0)], mode="edge")
    images = sum(float(w) * padded[..., k:k + height, :] for k, w in enumerate(kernel_y))
  return images

"""Dual TV-L1 optical flow in JAX, following OpenCV contrib's `DualTVL1OpticalFlow` step by step.

Zach, Pock and Bischof (2007) with the warping scheme of Wedel et al. (2009), in the variant of
OpenCV contrib's `optflow/src/tvl1flow.cpp`: a bilinear pyramid without pre-blur (factor 0.8, 5 scales),
bicubic warps with a zero border and coordinates rounded to 1/32 px, the thresholding (v) step,
the primal (u) step, Chambolle's dual (p) step, a 5x5 median of the flow at the start of every
outer iteration, and OpenCV's stopping rule (`sum |u_new - u_old|^2 <= epsilon^2 * pixels`) per
warp. One pair is solved by `_flow_one_pair`; `tvl1_flow` jit-compiles it once per shape and
batches it over pairs with `vmap` (pairs that have converged idle while the others iterate).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from data_prep.flow import jax_ops
from data_prep.flow.configs import TVL1Config

_MIN_PYRAMID_SIDE = 16  # OpenCV stops adding scales below this side length
_TINY = float(np.finfo(np.float32).eps)


def pyramid_shapes(shape: tuple[int, int], num_scales: int,
                   scale_step: float) -> list[tuple[int, int]]:
  """Image sizes of the pyramid, finest first, as OpenCV rounds them."""
  shapes = [tuple(shape)]
  for _ in range(1, num_scales):
    height, width = (int(round(side * scale_step)) for side in shapes[-1])
    if height < _MIN_PYRAMID_SIDE or width < _MIN_PYRAMID_SIDE:
      break
    shapes.append((height, width))
  return shapes


def _primal_dual_step(state, warped, rho_constant, height, width, config: TVL1Config):
  """One thresholding + primal + dual iteration: the new state and the squared change `[h, w]`."""
  u1, u2, p11, p12, p21, p22 = state
  grad_x, grad_y, grad_sq = warped
  l_t = config.lambda_ * config.theta
  rho = rho_constant + grad_x * u1 + grad_y * u2
  safe_grad_sq = jnp.where(grad_sq > _TINY, grad_sq, 1.0)
  step = jnp.where(rho < -l_t * grad_sq, l_t,
                   jnp.where(rho > l_t * grad_sq, -l_t,
                             jnp.where(grad_sq > _TINY, -rho / safe_grad_sq, 0.0)))
  v1 = u1 + step * grad_x
  v2 = u2 + step * grad_y
  new_u1 = v1 + config.theta * jax_ops.backward_divergence(p11, p12)
  new_u2 = v2 + config.theta * jax_ops.backward_divergence(p21, p22)
  squared_change = (new_u1 - u1) ** 2 + (new_u2 - u2) ** 2
  taut = config.tau / config.theta
  u1x, u1y = jax_ops.forward_gradient(new_u1, height, width)
  u2x, u2y = jax_ops.forward_gradient(new_u2, height, width)
  norm1 = 1.0 + taut * jnp.sqrt(u1x ** 2 + u1y ** 2)
  norm2 = 1.0 + taut * jnp.sqrt(u2x ** 2 + u2y ** 2)
  new_state = (new_u1, new_u2, (p11 + taut * u1x) / norm1, (p12 + taut * u1y) / norm1,
               (p21 + taut * u2x) / norm2, (p22 + taut * u2y) / norm2)
  return new_state, squared_change


def _solve_scale(image0: jax.Array, image1: jax.Array, u1: jax.Array, u2: jax.Array,
                 height: jax.Array | int, width: jax.Array | int,
                 config: TVL1Config) -> tuple[jax.Array, jax.Array]:
  """Refines the flow at one pyramid scale by `warps` linearisations.

  The scale's images and flow `[h, w]` occupy the top-left `height x width` of their canvas.
  """
  valid = jax_ops.valid_mask(image0.shape, height, width)
  gradients = jax_ops.centered_gradient(jax_ops.extend_edges(image1, height, width))
  sources = jnp.stack((image1,) + gradients)
  cols, rows = jax_ops.pixel_grid(image0.shape)
  threshold = config.epsilon ** 2 * height * width
  zeros = jnp.zeros_like(image0)

  def warp(_, state):
    u1, u2 = state[0], state[1]
    warped1, grad_x, grad_y = jax_ops.remap_cubic(
        sources, cols + u1, rows + u2, subpixel_bins=config.subpixel_bins, height=height,
        width=width)
    warped = (grad_x, grad_y, grad_x ** 2 + grad_y ** 2)
    rho_constant = warped1 - grad_x * u1 - grad_y * u2 - image0

    def inner_body(carry):
      state, _, count = carry
      state, squared_change = _primal_dual_step(state, warped, rho_constant, height, width, config)
      return state, jnp.sum(jnp.where(valid, squared_change, 0.0)), count + 1

    def outer_body(carry):
      state, error, count = carry
      if config.median_size > 1:
        flow = jax_ops.extend_edges(jnp.stack(state[:2]), height, width)
        flow = jax_ops.median_filter(flow, config.median_size)
        state = (flow[0], flow[1]) + state[2:]
      state, error, _ = jax.lax.while_loop(
          lambda c: (c[2] < config.inner_iterations) & (c[1] > threshold),
          inner_body, (state, error, 0))
      return state, error, count + 1

    state, _, _ = jax.lax.while_loop(
        lambda c: (c[2] < config.outer_iterations) & (c[1] > threshold),
        outer_body, (state, jnp.float32(jnp.inf), 0))
    return state

  # The dual variables restart from zero at every scale, as in OpenCV.
  state = jax.lax.fori_loop(0, config.warps, warp, (u1, u2, zeros, zeros, zeros, zeros))
  return jnp.where(valid, state[0], 0.0), jnp.where(valid, state[1], 0.0)


def _canvas_upsample_matrix(shapes: list[tuple[int, int]], scale: int, axis: int,
                            canvas: tuple[int, int], step: float) -> np.ndarray:
  """`[canvas, canvas]` matrix taking one axis of the flow from `scale` to `scale - 1` (divided by
  `step`), or the identity at scale 1, the last one on the coarse canvas."""
  matrix = np.zeros((canvas[axis], canvas[axis]), np.float32)
  if scale == 1:
    matrix[:shapes[1][axis], :shapes[1][axis]] = np.eye(shapes[1][axis])
  else:
    size, finer = shapes[scale][axis], shapes[scale - 1][axis]
    matrix[:finer, :size] = jax_ops.linear_resize_matrix(size, finer) / step
  return matrix


def _flow_one_pair(frame0: jax.Array, frame1: jax.Array, config: TVL1Config) -> jax.Array:
  """The flow `[H, W, 2]` (u, v) from `frame0` to `frame1`, both `[H, W]` float on 0..255.

  The finest scale is solved at its own shape; all coarser scales share one compiled solve on the
  canvas of the second scale, which keeps compilation to two scale bodies whatever the depth.
  """
  shapes = pyramid_shapes(frame0.shape, config.num_scales, config.scale_step)
  images0, images1 = [frame0], [frame1]
  for (height, width), (prev_height, prev_width) in zip(shapes[1:], shapes[:-1]):
    rows_matrix = jax_ops.linear_resize_matrix(prev_height, height, config.scale_step)
    cols_matrix = jax_ops.linear_resize_matrix(prev_width, width, config.scale_step)
    images0.append(jax_ops.apply_separable(images0[-1], rows_matrix, cols_matrix))
    images1.append(jax_ops.apply_separable(images1[-1], rows_matrix, cols_matrix))
  u1 = u2 = jnp.zeros(shapes[-1], jnp.float32)
  if len(shapes) > 1:
    canvas = shapes[1]
    coarse = range(len(shapes) - 1, 0, -1)  # coarsest first
    coarse_images0 = jnp.stack([jax_ops.pad_to(images0[k], canvas) for k in coarse])
    coarse_images1 = jnp.stack([jax_ops.pad_to(images1[k], canvas) for k in coarse])
    sizes = jnp.asarray([shapes[k] for k in coarse])
    # Upsampling to the next finer coarse scale; the last coarse scale keeps its flow as it is.
    up_rows = jnp.stack([_canvas_upsample_matrix(shapes, k, 0, canvas, config.scale_step)
                         for k in coarse])
    up_cols = jnp.stack([_canvas_upsample_matrix(shapes, k, 1, canvas, 1.0) for k in coarse])

    def coarse_scale(index, flow):
      u1, u2 = _solve_scale(coarse_images0[index], coarse_images1[index], flow[0], flow[1],
                            sizes[index, 0], sizes[index, 1], config)
      return tuple(jax_ops.apply_separable(u, up_rows[index], up_cols[index]) for u in (u1, u2))

    u1, u2 = jax.lax.fori_loop(0, len(shapes) - 1, coarse_scale,
                               (jax_ops.pad_to(u1, canvas), jax_ops.pad_to(u2, canvas)))
    rows_matrix = jax_ops.linear_resize_matrix(shapes[1][0], shapes[0][0])
    cols_matrix = jax_ops.linear_resize_matrix(shapes[1][1], shapes[0][1])
    u1 = jax_ops.apply_separable(u1, rows_matrix, cols_matrix) / config.scale_step
    u2 = jax_ops.apply_separable(u2, rows_matrix, cols_matrix) / config.scale_step
  u1, u2 = _solve_scale(frame0, frame1, u1, u2, frame0.shape[0], frame0.shape[1], config)
  return jnp.stack([u1, u2], axis=-1)


@functools.partial(jax.jit, static_argnames=("config",))
def tvl1_flow(frames0: jax.Array, frames1: jax.Array,
              config: TVL1Config = TVL1Config()) -> jax.Array:
  """Dual TV-L1 flow for a batch of pairs.

  Args:
    frames0: first frames `[B, H, W]`, uint8 grey.
    frames1: second frames `[B, H, W]`, uint8 grey.
    config: solver parameters (hashable; one compilation per config and shape).
  Returns:
    The flows `[B, H, W, 2]` float32, (u, v) with `frame0(p) ~ frame1(p + (u, v))`.
  """
  if frames0.dtype != jnp.uint8 or frames1.dtype != jnp.uint8:
    raise TypeError(f"tvl1_flow expects uint8 frames, got {frames0.dtype} and {frames1.dtype}")
  solve = functools.partial(_flow_one_pair, config=config)
  return jax.vmap(solve)(frames0.astype(jnp.float32), frames1.astype(jnp.float32))

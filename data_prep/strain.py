"""Optical strain (paper Eq. 2) of a flow field, and the border ring that flow solvers corrupt.

Strain magnitude of the flow `(u, v)`, with the shear term taken from the symmetric strain tensor
(e_xy = (u_y + v_x) / 2, counted twice):

  strain = sqrt(u_x^2 + v_y^2 + 1/2 (u_y + v_x)^2).

A rigid rotation therefore has zero strain. Some public copies weight the shear by 1/4 or swap the
axes of `np.gradient`; both are bugs this module avoids and its tests pin down.
"""

from __future__ import annotations

import cv2
import numpy as np

from data_prep import InputError

STRAIN_METHODS = ("central", "sobel")
DEFAULT_BORDER = 8  # px zeroed around the map; OpenCV TV-L1 artefacts reach about 3 px in


def _derivatives(field: np.ndarray, method: str) -> tuple[np.ndarray, np.ndarray]:
  """`(d/dx, d/dy)` of `field [H, W]` in units of the field per pixel."""
  if method == "central":
    # np.gradient: central differences inside, one-sided at the edges; exact on linear fields.
    d_dy, d_dx = np.gradient(field)
    return d_dx, d_dy
  # Sobel smooths across the derivative; /8 restores per-pixel units (exact inside on linear
  # fields).
  d_dx = cv2.Sobel(field, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REPLICATE) / 8.0
  d_dy = cv2.Sobel(field, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REPLICATE) / 8.0
  return d_dx, d_dy


def optical_strain(flow: np.ndarray, *, method: str = "central") -> np.ndarray:
  """Optical strain magnitude of a flow field.

  Args:
    flow: `[H, W, 2]` (u, v) in pixels, u along columns and v along rows.
    method: `central` (central differences, `np.gradient`) or `sobel` (3x3 Sobel / 8, smoother;
      it helps the noisier flow backends).
  Returns:
    The strain `[H, W]`, float32, >= 0.
  """
  if method not in STRAIN_METHODS:
    raise InputError(f"unknown strain method {method!r}; expected one of {list(STRAIN_METHODS)}")
  flow = np.asarray(flow)
  if flow.ndim != 3 or flow.shape[-1] != 2 or min(flow.shape[:2]) < 2:
    raise ValueError(f"flow: expected [H, W, 2] with H, W >= 2, got shape {flow.shape}")
  if not np.all(np.isfinite(flow)):
    raise ValueError("flow: contains NaN or infinite values")
  flow = flow.astype(np.float32)
  u_x, u_y = _derivatives(flow[..., 0], method)
  v_x, v_y = _derivatives(flow[..., 1], method)
  return np.sqrt(u_x ** 2 + v_y ** 2 + 0.5 * (u_y + v_x) ** 2).astype(np.float32)


def zero_border(maps: np.ndarray, width: int = DEFAULT_BORDER) -> np.ndarray:
  """A copy of `maps [H, W, ...]` with a ring of `width` px set to 0 (no motion).

  Flow solvers leave artefacts along the image edges (OpenCV TV-L1 within ~3 px, Farneback along the
  bottom rows) whose strain can reach 15x the true maximum and would dominate a per-map min-max
  normalisation. Zeroing the ring after the strain is computed, so its own
  edge creates no strain, removes them.
  """
  maps = np.array(maps, copy=True)
  if width < 0 or 2 * width >= min(maps.shape[:2]):
    raise ValueError(f"border width {width} px does not fit maps of shape {maps.shape[:2]}")
  if width:
    maps[:width] = 0
    maps[-width:] = 0
    maps[:, :width] = 0
    maps[:, -width:] = 0
  return maps

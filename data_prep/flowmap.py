"""The per-sample flow map stored in the dataset: `[H, W, 3]` = (u, v, optical strain), float32.

Computed at the frames' full resolution between onset and apex, unnormalised, with the border ring
zeroed; any network input resolution is derived from it at load time by
`rcn_jax.transform.to_network_input`.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from data_prep import flow as flow_lib, InputError
from data_prep import strain as strain_lib


def to_grey(frame: np.ndarray, name: str) -> np.ndarray:
  """uint8 grey `[H, W]` from uint8 grey `[H, W]` or BGR `[H, W, 3]` (as `cv2.imread` gives)."""
  if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
    dtype = getattr(frame, "dtype", type(frame).__name__)
    raise InputError(f"{name}: expected a uint8 frame, got {dtype}")
  if frame.ndim == 2:
    return frame
  if frame.ndim == 3 and frame.shape[-1] == 3:
    return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
  raise InputError(f"{name}: expected grey [H, W] or BGR [H, W, 3], got shape {frame.shape}")


def flow_map_from_flow(flow: np.ndarray, *, strain_method: str = "central",
                       border: int = strain_lib.DEFAULT_BORDER) -> np.ndarray:
  """`[H, W, 3]` (u, v, strain) of a flow `[H, W, 2]`, strain taken before the ring is zeroed."""
  strain = strain_lib.optical_strain(flow, method=strain_method)
  flow_map = np.concatenate([np.asarray(flow, np.float32), strain[..., None]], axis=-1)
  return strain_lib.zero_border(flow_map, border)


def compute_flow_map(onset: np.ndarray, apex: np.ndarray, *, backend: str = "tvl1",
                     config: Any = None, strain_method: str = "central",
                     border: int = strain_lib.DEFAULT_BORDER) -> np.ndarray:
  """The flow map of one sample.

  Args:
    onset: onset frame, uint8 grey `[H, W]` or BGR `[H, W, 3]`.
    apex: apex frame, same size as `onset`.
    backend: flow backend, one of `data_prep.flow.BACKENDS`.
    config: the backend's parameters (`data_prep.flow.DEFAULT_CONFIGS` gives the types).
    strain_method: `central` or `sobel` derivatives for the strain.
    border: width in px of the ring set to zero after the strain is computed (0 keeps it).
  Returns:
    `[H, W, 3]` float32: u, v (px, onset to apex) and optical strain.
  """
  onset, apex = to_grey(onset, "onset"), to_grey(apex, "apex")
  if onset.shape != apex.shape:
    raise InputError(f"onset {onset.shape} and apex {apex.shape} frames differ in size")
  flow = flow_lib.compute_flow(onset, apex, backend=backend, config=config)
  return flow_map_from_flow(flow, strain_method=strain_method, border=border)


def compute_flow_maps(onsets: np.ndarray, apexes: np.ndarray, *, backend: str = "tvl1",
                      config: Any = None, strain_method: str = "central",
                      border: int = strain_lib.DEFAULT_BORDER,
                      batch_size: int | None = None) -> np.ndarray:
  """The flow maps of a batch of samples; the JAX backends solve them in vmapped chunks.

  Args:
    onsets: onset frames, uint8 grey `[B, H, W]`.
    apexes: apex frames, uint8 grey `[B, H, W]`.
    backend: flow backend, one of `data_prep.flow.BACKENDS`.
    config: the backend's parameters.
    strain_method: `central` or `sobel`.
    border: width in px of the zeroed ring.
    batch_size: pairs per JAX call (all at once when None).
  Returns:
    `[B, H, W, 3]` float32.
  """
  flows = flow_lib.compute_flows(onsets, apexes, backend=backend, config=config,
                                 batch_size=batch_size)
  return np.stack([flow_map_from_flow(flow, strain_method=strain_method, border=border)
                   for flow in flows])

"""From a stored full-resolution flow map to the network input: area resize, per-channel min-max.

The dataset stores `[H, W, 3]` = (u, v, optical strain) per sample at the frames' resolution
(float16); the input resolution is a training choice, so it is derived here at load time.
Area averaging (`cv2.INTER_AREA`) is used because the usual bilinear downscale aliases: at 200 to
60 px it looks at 2x2 of every ~3x3 pixels. Min-max runs after the resize, per sample and channel,
as the paper's PNG inputs were made; `to_png` / `from_png` give the 8-bit round trip of those
images (ToTensor's /255), and `png_round_trip=True` applies it so in-memory inputs equal PNG ones.
"""

from __future__ import annotations

import cv2
import numpy as np

from rcn_jax import errors

MIN_RESOLUTION = 20
MAX_RESOLUTION = 300
_CONSTANT_TOLERANCE = 16 * float(np.finfo(np.float32).eps)


def resize_area(flow_map: np.ndarray, resolution: int) -> np.ndarray:
  """`[H, W, C]` resized to `[resolution, resolution, C]` float32 by area averaging."""
  if not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION:
    raise errors.UserError(f"resolution {resolution} outside the supported "
                           f"{MIN_RESOLUTION}..{MAX_RESOLUTION}")
  flow_map = np.asarray(flow_map)
  if flow_map.ndim != 3 or flow_map.shape[-1] != 3:
    raise errors.UserError(f"flow map: expected [H, W, 3], got shape {flow_map.shape}")
  flow_map = flow_map.astype(np.float32)
  if not np.all(np.isfinite(flow_map)):
    raise errors.UserError("flow map: contains NaN or infinite values")
  return cv2.resize(flow_map, (resolution, resolution), interpolation=cv2.INTER_AREA)


def normalise_min_max(maps: np.ndarray) -> np.ndarray:
  """Per-channel min-max of `[..., H, W, C]` over H and W to [0, 1]; a constant channel gives 0.

  A channel counts as constant when its range is within float32 rounding of its magnitude: an
  area resize of a constant leaves ~1e-7 relative ripples that min-max would blow up to 0..1.
  """
  maps = np.asarray(maps, np.float32)
  low = maps.min(axis=(-3, -2), keepdims=True)
  high = maps.max(axis=(-3, -2), keepdims=True)
  span = high - low
  varies = span > _CONSTANT_TOLERANCE * np.maximum(np.abs(low), np.abs(high))
  return np.where(varies, (maps - low) / np.where(varies, span, 1.0), 0.0).astype(np.float32)


def to_png(network_input: np.ndarray) -> np.ndarray:
  """uint8 image of an input in [0, 1] (x 255, rounded to nearest, so the round trip is stable)."""
  return np.clip(np.round(np.asarray(network_input, np.float32) * 255.0), 0, 255).astype(np.uint8)


def from_png(image: np.ndarray) -> np.ndarray:
  """Network input float32 in [0, 1] from a uint8 image (as torchvision's ToTensor scales it)."""
  if np.asarray(image).dtype != np.uint8:
    raise ValueError(f"expected a uint8 image, got {np.asarray(image).dtype}")
  return np.asarray(image, np.float32) / 255.0


def to_network_input(flow_map: np.ndarray, resolution: int, *,
                     png_round_trip: bool = False) -> np.ndarray:
  """The network input of one stored flow map.

  Args:
    flow_map: `[H, W, 3]` (u, v, strain), any float dtype, unnormalised.
    resolution: output side in px, 20..300.
    png_round_trip: quantise to 8 bits and back, giving exactly what a PNG export would feed.
  Returns:
    `[resolution, resolution, 3]` float32 in [0, 1].
  """
  network_input = normalise_min_max(resize_area(flow_map, resolution))
  return from_png(to_png(network_input)) if png_round_trip else network_input


def imported_to_network_input(image: np.ndarray, resolution: int, *, channels: str = "rgb",
                              value_range: tuple[float, float] | str = (0.0, 255.0)) -> np.ndarray:
  """The network input of an imported flow image (`data_prep.import_flowmaps` stores the file's values).

  Args:
    image: `[H, W, 3]` the stored values, in the file's channel order.
    resolution: output side in px; the image is area-resized first when its size differs.
    channels: `rgb` when the file's R, G, B hold u, v, strain; `bgr` when they hold strain, v, u.
    value_range: `(LO, HI)` mapped linearly to [0, 1] (so 8-bit 0..255 at the image's own size gives
      exactly ToTensor's x / 255, `from_png`), or `minmax` per channel as `to_network_input`.
  Returns:
    `[resolution, resolution, 3]` float32 in [0, 1], channels u, v, strain.
  """
  image = np.asarray(image, np.float32)
  if channels not in ("rgb", "bgr"):
    raise errors.UserError(f"imported flow maps: channels {channels!r}, expected rgb or bgr")
  if channels == "bgr":
    image = image[..., ::-1]
  if isinstance(value_range, str):
    if value_range != "minmax":
      raise errors.UserError(f"imported flow maps: value range {value_range!r}, expected [LO, HI] or minmax")
    return to_network_input(image, resolution)
  if image.shape[:2] != (resolution, resolution):
    image = resize_area(image, resolution)
  low, high = (float(v) for v in value_range)
  return np.clip((image - low) / (high - low), 0.0, 1.0).astype(np.float32)

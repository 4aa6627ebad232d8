"""Synthetic onset/apex pairs with known flow: the fixtures of the flow tests and benchmark.

The recipe is that of the canonical test pair (a 200x200 photographed face warped by known Gaussian
motion bumps) with a generated face-like image in place of the photograph:
a smooth shaded oval with dark brows, eyes, nostrils and mouth over a band-limited skin texture.
Ground truth is a sum of Gaussian motion bumps at brows, mouth corners and nose. The flow `w` lives
on the grid of the first frame and `I0(p) = I1(p + w(p))`, with `u` along columns (+right) and `v`
along rows (+down).
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

# The canonical test pair's bumps, on a 200x200 face: (row, col, sigma, dy, dx); peak |w| 1.504 px.
_CANONICAL_200 = (
    (66.0, 62.0, 10.0, -1.0, 0.0),
    (66.0, 112.0, 10.0, -0.8, 0.1),
    (125.0, 65.0, 8.0, -0.55, -1.40),
    (125.0, 112.0, 8.0, -0.4, 0.5),
    (95.0, 88.0, 6.0, -0.2, 0.0),
)


@dataclasses.dataclass(frozen=True)
class Bump:
  """A Gaussian patch of motion: displacement (dy, dx) px at the centre, decaying with sigma px."""
  row: float
  col: float
  sigma: float
  dy: float
  dx: float


@dataclasses.dataclass(frozen=True)
class SyntheticPair:
  """Two uint8 grey frames `[H, W]` and the true flow `[H, W, 2]` (u, v) from frame0 to frame1."""
  frame0: np.ndarray
  frame1: np.ndarray
  flow: np.ndarray


def canonical_bumps(size: int) -> tuple[Bump, ...]:
  """The canonical bumps scaled from 200 px to `size` px (positions and widths; amplitudes kept)."""
  scale = size / 200.0
  return tuple(Bump(r * scale, c * scale, s * scale, dy, dx) for r, c, s, dy, dx in _CANONICAL_200)


def random_bumps(rng: np.random.Generator, size: int) -> tuple[Bump, ...]:
  """3 to 5 bumps: centres in the middle 60 %, sigma 6..15 px (at 200 px), 0.2..1.5 px motion."""
  scale = size / 200.0
  bumps = []
  for _ in range(int(rng.integers(3, 6))):
    row, col = rng.uniform(40.0, 160.0, size=2)
    sigma = rng.uniform(6.0, 15.0)
    magnitude = rng.uniform(0.2, 1.5)
    angle = rng.uniform(0.0, 2.0 * np.pi)
    bumps.append(Bump(row * scale, col * scale, sigma * scale,
                      magnitude * np.sin(angle), magnitude * np.cos(angle)))
  return tuple(bumps)


def bump_flow(shape: tuple[int, int], bumps: tuple[Bump, ...]) -> np.ndarray:
  """The flow `[H, W, 2]` (u, v) of a sum of Gaussian bumps."""
  rows, cols = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
  flow = np.zeros(shape + (2,))
  for bump in bumps:
    weight = np.exp(-((rows - bump.row) ** 2 + (cols - bump.col) ** 2) / (2.0 * bump.sigma ** 2))
    flow[..., 0] += bump.dx * weight
    flow[..., 1] += bump.dy * weight
  return flow.astype(np.float32)


def band_limited_texture(shape: tuple[int, int], *, seed: int, cutoff: float = 0.25,
                         slope: float = 1.5) -> np.ndarray:
  """Periodic random texture `[H, W]` in [0, 1], power-law spectrum cut at `cutoff` cycles/px."""
  rng = np.random.default_rng(seed)
  fy = np.fft.fftfreq(shape[0])[:, None]
  fx = np.fft.rfftfreq(shape[1])[None, :]
  radius = np.hypot(fy, fx)
  amplitude = np.where((radius > 0) & (radius < cutoff), np.maximum(radius, 1e-3) ** -slope, 0.0)
  spectrum = amplitude * np.exp(2j * np.pi * rng.uniform(size=radius.shape))
  texture = np.fft.irfft2(spectrum, s=shape)
  texture -= texture.min()
  return texture / texture.max()


def fourier_shift(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
  """Periodic sub-pixel translation `out(y, x) = image(y - dy, x - dx)` of a band-limited image."""
  fy = np.fft.fftfreq(image.shape[0])[:, None]
  fx = np.fft.rfftfreq(image.shape[1])[None, :]
  phase = np.exp(-2j * np.pi * (fx * dx + fy * dy))
  return np.fft.irfft2(np.fft.rfft2(image) * phase, s=image.shape)


def face_image(size: int, *, seed: int = 0) -> np.ndarray:
  """A face-like grey image `[size, size]` in [0, 1]: shaded oval, features and skin texture."""
  rows, cols = np.mgrid[0:size, 0:size].astype(np.float64) / size
  image = 0.35 + 0.25 * np.exp(-((rows - 0.5) ** 2 / 0.18 + (cols - 0.48) ** 2 / 0.12))
  features = (  # (row, col, half-height, half-width, depth), positions as fractions of the side
      (0.30, 0.31, 0.025, 0.09, 0.25), (0.30, 0.56, 0.025, 0.09, 0.25),  # brows
      (0.40, 0.31, 0.030, 0.06, 0.30), (0.40, 0.56, 0.030, 0.06, 0.30),  # eyes
      (0.56, 0.40, 0.020, 0.025, 0.20), (0.56, 0.48, 0.020, 0.025, 0.20),  # nostrils
      (0.65, 0.44, 0.030, 0.15, 0.30),  # mouth
  )
  for row, col, half_height, half_width, depth in features:
    image -= depth * np.exp(-(((rows - row) / half_height) ** 2 + ((cols - col) / half_width) ** 2))
  # A strong, flat-spectrum texture stands in for skin, hair and lighting detail; with it the
  # OpenCV TV-L1 errors match those measured on a photographed face (scikit-image's astronaut).
  image += 0.5 * (band_limited_texture((size, size), seed=seed, cutoff=0.3, slope=0.5) - 0.5)
  image = cv2.GaussianBlur(image, (0, 0), 0.7)
  return np.clip(image, 0.0, 1.0)


def _sample(image: np.ndarray, map_x: np.ndarray, map_y: np.ndarray) -> np.ndarray:
  return cv2.remap(image, map_x.astype(np.float32), map_y.astype(np.float32), cv2.INTER_CUBIC,
                   borderMode=cv2.BORDER_REFLECT_101)


def warp_to_second_frame(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
  """The frame `I1` with `I0(p) = I1(p + flow(p))`, by inverting the flow with fixed-point steps.

  Args:
    image: the first frame `[H, W]`, float.
    flow: the forward flow `[H, W, 2]` (u, v) on the first frame's grid.
  Returns:
    The second frame `[H, W]`, float64.
  """
  rows, cols = np.mgrid[0:image.shape[0], 0:image.shape[1]].astype(np.float32)
  flow = flow.astype(np.float32)
  inverse = np.zeros_like(flow)
  for _ in range(40):  # h(q) = g(q - h(q)); contracts because |grad g| << 1
    inverse = np.stack([_sample(flow[..., k], cols - inverse[..., 0], rows - inverse[..., 1])
                        for k in range(2)], axis=-1)
  return _sample(image.astype(np.float32), cols - inverse[..., 0],
                 rows - inverse[..., 1]).astype(np.float64)


def to_uint8(image: np.ndarray) -> np.ndarray:
  """Rounds an image in [0, 1] to uint8, as a camera would quantise it."""
  return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)


def micro_expression_pair(size: int = 128, *, bumps: tuple[Bump, ...] | None = None,
                          noise_grey_levels: float = 0.0, seed: int = 0) -> SyntheticPair:
  """The canonical test pair (Gaussian bumps at brows, mouth corners and nose) on the generated face.

  Args:
    size: side of the square frames in px.
    bumps: the motion; the canonical bumps when None.
    noise_grey_levels: std of independent Gaussian sensor noise added to each frame (0..255 scale).
    seed: seed of the skin texture and of the noise.
  Returns:
    The pair and its true flow.
  """
  bumps = canonical_bumps(size) if bumps is None else bumps
  frame0 = face_image(size, seed=seed)
  flow = bump_flow((size, size), bumps)
  frame1 = warp_to_second_frame(frame0, flow)
  if noise_grey_levels > 0:
    rng = np.random.default_rng(seed + 123)
    frame0 = frame0 + rng.normal(0.0, noise_grey_levels / 255.0, frame0.shape)
    frame1 = frame1 + rng.normal(0.0, noise_grey_levels / 255.0, frame1.shape)
  return SyntheticPair(to_uint8(frame0), to_uint8(frame1), flow)


def translated_pair(size: int, dx: float, dy: float, *, seed: int = 0) -> SyntheticPair:
  """A band-limited random texture and its exact periodic translation by (dx, dy) px, in uint8.

  The flow is the constant (dx, dy): `frame1(p + (dx, dy)) = frame0(p)`.
  """
  texture = 0.15 + 0.7 * band_limited_texture((size, size), seed=seed, cutoff=0.2)
  shifted = fourier_shift(texture, dx, dy)
  flow = np.broadcast_to(np.array([dx, dy], np.float32), (size, size, 2)).copy()
  return SyntheticPair(to_uint8(texture), to_uint8(shifted), flow)

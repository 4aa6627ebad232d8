"""Procedural faces: one per subject, rendered analytically at any (sub-pixel) coordinate.

A face lives on a canvas of the subject's frame size, in pixel units (x to the right, y down).
Everything is a smooth closed-form function of the coordinates, so the apex frame can be rendered
exactly at the back-warped positions of its pixels: no image interpolation enters the ground truth.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

# Wavelengths (px) of the skin texture: long enough to be band-limited at the pixel grid, short
# enough that a flow method finds structure on cheeks and forehead, as it does on real skin.
_TEXTURE_WAVELENGTHS = (3.0, 14.0)
_TEXTURE_WAVES = 32


@dataclasses.dataclass(frozen=True)
class Face:
  """Shape, feature positions, colours, skin texture and lighting of one subject's face.

  Positions are canvas pixels. Colours are RGB in [0, 1].
  """
  height: int
  width: int
  centre: tuple[float, float]
  half_axes: tuple[float, float]
  eye_y: float
  eye_dx: float
  eye_radii: tuple[float, float]
  brow_y: float
  brow_half_length: float
  brow_thickness: float
  brow_arch: float
  nose_y: float
  nose_half_width: float
  mouth_y: float
  mouth_half_width: float
  lip_thickness: float
  skin_rgb: np.ndarray
  lip_rgb: np.ndarray
  brow_rgb: np.ndarray
  iris_rgb: np.ndarray
  background_rgb: np.ndarray
  wave_vectors: np.ndarray  # [waves, 2] radians per px, (kx, ky)
  wave_phases: np.ndarray  # [waves]
  wave_amplitudes: np.ndarray  # [waves]
  spots: np.ndarray  # [spots, 4] x, y, radius, darkening
  light: tuple[float, float]
  ambient: float

  def landmarks(self) -> dict[str, tuple[float, float]]:
    """Named anatomical points used to place action units; `_l`/`_r` are image left/right."""
    cx, _ = self.centre
    points = {
        "glabella": (cx, self.brow_y + 0.3 * self.eye_radii[1]),
        "upper_lip": (cx, self.mouth_y - self.lip_thickness),
        "lower_lip": (cx, self.mouth_y + 1.2 * self.lip_thickness),
        "chin": (cx, self.mouth_y + 0.45 * (self.centre[1] + self.half_axes[1] - self.mouth_y)),
        "nose_tip": (cx, self.nose_y),
    }
    for side, sign in (("l", -1.0), ("r", 1.0)):
      eye_x = cx + sign * self.eye_dx
      points[f"inner_brow_{side}"] = (eye_x - sign * 0.65 * self.brow_half_length, self.brow_y)
      points[f"mid_brow_{side}"] = (eye_x, self.brow_y - self.brow_arch)
      points[f"outer_brow_{side}"] = (eye_x + sign * 0.65 * self.brow_half_length, self.brow_y)
      points[f"upper_lid_{side}"] = (eye_x, self.eye_y - self.eye_radii[1])
      points[f"lower_lid_{side}"] = (eye_x, self.eye_y + self.eye_radii[1])
      points[f"cheek_{side}"] = (eye_x + sign * 0.1 * self.eye_dx,
                                 0.5 * (self.eye_y + self.mouth_y) + 0.1 * self.eye_dx)
      points[f"nose_wing_{side}"] = (cx + sign * self.nose_half_width,
                                     self.nose_y - 0.02 * self.height)
      points[f"mouth_corner_{side}"] = (cx + sign * self.mouth_half_width, self.mouth_y)
    return points


def sample_face(rng: np.random.Generator, height: int, width: int) -> Face:
  """Draws one subject's face on a `[height, width]` canvas.

  Args:
    rng: the subject's own random stream.
    height: canvas rows.
    width: canvas columns.
  Returns:
    The face.
  """
  u = lambda low, high: float(rng.uniform(low, high))
  cx, cy = width * u(0.48, 0.52), height * u(0.50, 0.54)
  ax, ay = width * u(0.40, 0.46), height * u(0.46, 0.52)
  eye_y = cy - ay * u(0.22, 0.30)
  eye_dx = ax * u(0.40, 0.48)
  eye_radii = (ax * u(0.15, 0.19), ax * u(0.06, 0.085))
  brow_y = eye_y - ay * u(0.14, 0.20)
  mouth_y = cy + ay * u(0.48, 0.56)
  nose_y = 0.5 * (eye_y + mouth_y) + ay * u(0.06, 0.12)

  tone = u(0.35, 0.85)  # skin lightness: subjects of every complexion
  skin = np.array([tone * u(1.0, 1.12), tone * u(0.78, 0.9), tone * u(0.62, 0.78)])
  lip = skin * np.array([u(0.95, 1.1), u(0.55, 0.7), u(0.6, 0.75)])
  brow = np.full(3, u(0.05, 0.3)) * np.array([1.0, u(0.85, 1.0), u(0.7, 0.95)])
  iris = np.full(3, u(0.05, 0.35)) * np.array([1.0, u(0.8, 1.1), u(0.6, 1.2)])
  background = np.full(3, u(0.1, 0.6)) * rng.uniform(0.8, 1.1, size=3)

  wavelengths = np.exp(rng.uniform(*np.log(_TEXTURE_WAVELENGTHS), size=_TEXTURE_WAVES))
  angles = rng.uniform(0.0, np.pi, size=_TEXTURE_WAVES)
  wave_vectors = (2 * np.pi / wavelengths)[:, None] * np.stack([np.cos(angles), np.sin(angles)], 1)
  # Finer waves get smaller amplitudes, like the falling spectrum of real skin.
  amplitudes = rng.uniform(0.5, 1.0, size=_TEXTURE_WAVES) * np.sqrt(wavelengths / 14.0)
  amplitudes *= u(0.04, 0.08) / np.sqrt(0.5 * np.sum(amplitudes**2))
  num_spots = int(rng.integers(3, 9))
  spots = np.stack([
      cx + ax * rng.uniform(-0.8, 0.8, num_spots),
      cy + ay * rng.uniform(-0.8, 0.8, num_spots),
      rng.uniform(0.8, 2.5, num_spots),
      rng.uniform(0.08, 0.3, num_spots),
  ], axis=1)
  light_angle = rng.uniform(0, 2 * np.pi)
  light_tilt = u(0.1, 0.5)

  return Face(
      height=height, width=width, centre=(cx, cy), half_axes=(ax, ay),
      eye_y=eye_y, eye_dx=eye_dx, eye_radii=eye_radii,
      brow_y=brow_y, brow_half_length=ax * u(0.26, 0.34), brow_thickness=ay * u(0.025, 0.04),
      brow_arch=ay * u(0.01, 0.05),
      nose_y=nose_y, nose_half_width=ax * u(0.17, 0.24),
      mouth_y=mouth_y, mouth_half_width=ax * u(0.36, 0.46), lip_thickness=ay * u(0.06, 0.09),
      skin_rgb=skin, lip_rgb=lip, brow_rgb=brow, iris_rgb=iris, background_rgb=background,
      wave_vectors=wave_vectors, wave_phases=rng.uniform(0, 2 * np.pi, _TEXTURE_WAVES),
      wave_amplitudes=amplitudes, spots=spots,
      light=(light_tilt * np.cos(light_angle), light_tilt * np.sin(light_angle)),
      ambient=u(0.45, 0.7),
  )


def _sigmoid(z: np.ndarray) -> np.ndarray:
  return 0.5 * (1.0 + np.tanh(0.5 * z))


def _blend(rgb: np.ndarray, colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
  return rgb + alpha[:, None] * (colour.astype(np.float32) - rgb)


# The texture sums below use einsum, not matmul: einsum's own loops are single-threaded and
# deterministic, while a multi-threaded BLAS crawls on a busy 2-core machine and may round
# differently with another thread count.
def skin_texture(face: Face, x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """The relative skin-brightness variation at canvas points `[N]` (x, y): `[N]` float32."""
  vectors = face.wave_vectors.astype(np.float32)
  x, y = np.asarray(x, np.float32)[:, None], np.asarray(y, np.float32)[:, None]
  phases = x * vectors[:, 0] + y * vectors[:, 1]
  phases += face.wave_phases.astype(np.float32)
  return np.einsum("nk,k->n", np.cos(phases, out=phases), face.wave_amplitudes.astype(np.float32))


def skin_texture_on_grid(face: Face, matrix: np.ndarray, height: int, width: int) -> np.ndarray:
  """`skin_texture` at the canvas points of an affinely mapped pixel grid, in one small product.

  With canvas point `matrix @ (column, row, 1)`, each wave's phase is affine in (row, column), so
  the sum of waves factors into row and column terms: `Re(sum_k A_k[row] B_k[column])`.

  Args:
    face: the face.
    matrix: `[2, 3]` maps pixel (x, y, 1) to canvas (x, y).
    height: grid rows.
    width: grid columns.
  Returns:
    `[height * width]` float32, row-major, equal to `skin_texture` on the mapped grid.
  """
  along_column = face.wave_vectors @ matrix[:, 0]  # phase per column step, [waves]
  along_row = face.wave_vectors @ matrix[:, 1]
  offset = face.wave_vectors @ matrix[:, 2] + face.wave_phases
  rows = face.wave_amplitudes * np.exp(1j * (offset + np.outer(np.arange(height), along_row)))
  columns = np.exp(1j * np.outer(along_column, np.arange(width)))
  # [height, 2 waves] and [2 waves, width]: real and imaginary parts side by side.
  real_rows = np.concatenate([rows.real, -rows.imag], axis=1).astype(np.float32)
  real_columns = np.concatenate([columns.real, columns.imag], axis=0).astype(np.float32)
  return np.einsum("hk,kw->hw", real_rows, real_columns).reshape(-1)


def _spot(face: Face, spot: np.ndarray, x, y, rgb):
  spot_x, spot_y, radius, darkening = spot
  squared_distance = (x - spot_x)**2 + (y - spot_y)**2
  return rgb * (1.0 - darkening * np.exp(-squared_distance / (2 * radius**2)))[:, None]


def _brow(face: Face, sign: float, x, y, rgb):
  t = (x - (face.centre[0] + sign * face.eye_dx)) / face.brow_half_length
  # Brows are thicker at the inner end and arch upwards in the middle.
  thickness = face.brow_thickness * (1.0 + 0.35 * sign * t)
  curve = face.brow_y - face.brow_arch * (1.0 - t**2)
  along = _sigmoid((1.0 - np.abs(t)) * face.brow_half_length / 1.5)
  hair = 0.8 + 0.2 * np.cos(2.2 * (x - sign * 0.6 * y))
  alpha = 0.9 * along * hair * np.exp(-0.5 * ((y - curve) / thickness)**4)
  return _blend(rgb, face.brow_rgb, alpha)


def _eye(face: Face, sign: float, x, y, rgb):
  rx, ry = face.eye_radii
  dx, dy = x - (face.centre[0] + sign * face.eye_dx), y - face.eye_y
  radius = np.sqrt((dx / rx)**2 + (dy / ry)**2)
  opening = _sigmoid((1.0 - radius) * ry / 0.8)
  rgb = _blend(rgb, np.array([0.85, 0.82, 0.8]), 0.9 * opening)
  rgb = _blend(rgb, face.iris_rgb, _sigmoid((0.95 * ry - np.sqrt(dx**2 + dy**2)) / 0.6) * opening)
  # Lashes and lid crease: a dark rim along the upper edge of the opening.
  lash = np.exp(-0.5 * ((radius - 1.0) / (0.9 / ry))**2) * _sigmoid(-dy / 0.7)
  return _blend(rgb, 0.3 * face.brow_rgb, 0.8 * lash)


def _nose(face: Face, x, y, rgb):
  shade = np.zeros_like(x)
  for sign in (-1.0, 1.0):
    nostril_x = face.centre[0] + sign * 0.55 * face.nose_half_width
    shade += 0.55 * np.exp(-0.5 * (((x - nostril_x) / (0.3 * face.nose_half_width))**2
                                   + ((y - face.nose_y) / (0.12 * face.nose_half_width))**2))
    wing_x = face.centre[0] + sign * face.nose_half_width
    shade += 0.18 * np.exp(-0.5 * (((x - wing_x) / 1.6)**2
                                   + ((y - face.nose_y + 0.2 * face.nose_half_width)
                                      / (0.5 * face.nose_half_width))**2))
    # Nasolabial fold: a faint crease from the nose wing towards the mouth corner.
    mouth_x = face.centre[0] + sign * 1.1 * face.mouth_half_width
    t = np.clip((y - face.nose_y) / (face.mouth_y - face.nose_y), 0.0, 1.0)
    fold_x = wing_x + t * (mouth_x - wing_x) + sign * 2.5 * np.sin(np.pi * t)
    inside = _sigmoid((y - face.nose_y) / 1.5) * _sigmoid((face.mouth_y + 3 - y) / 1.5)
    shade += 0.12 * inside * np.exp(-0.5 * ((x - fold_x) / 1.3)**2)
  return rgb * (1.0 - shade)[:, None]


def _mouth(face: Face, x, y, rgb):
  t = (x - face.centre[0]) / face.mouth_half_width
  span = np.clip(1.0 - t**2, 0.0, None)
  across = _sigmoid((1.0 - np.abs(t)) * face.mouth_half_width / 1.2)
  upper = face.mouth_y - face.lip_thickness * span * (1.0 - 0.25 * np.exp(-(4 * t)**2))
  lower = face.mouth_y + 1.2 * face.lip_thickness * span
  lips = across * _sigmoid((y - upper) / 0.8) * _sigmoid((lower - y) / 0.8)
  rgb = _blend(rgb, face.lip_rgb, 0.85 * lips)
  line = np.exp(-0.5 * ((y - face.mouth_y) / 0.9)**2) * _sigmoid((1.08 - np.abs(t)) * 25.0)
  return _blend(rgb, 0.35 * face.lip_rgb, 0.8 * line)


def _features(face: Face):
  """(box, paint) pairs: each paint only needs the points inside its box `(x0, y0, x1, y1)`."""
  cx = face.centre[0]
  rx, ry = face.eye_radii
  for spot in face.spots:
    reach = 4 * spot[2]
    yield ((spot[0] - reach, spot[1] - reach, spot[0] + reach, spot[1] + reach),
           functools.partial(_spot, face, spot))
  for sign in (-1.0, 1.0):
    brow_x = cx + sign * face.eye_dx
    reach_x = 1.2 * face.brow_half_length + 4
    reach_y = face.brow_arch + 2.5 * face.brow_thickness + 3
    yield ((brow_x - reach_x, face.brow_y - reach_y, brow_x + reach_x, face.brow_y + reach_y),
           functools.partial(_brow, face, sign))
    yield ((brow_x - rx - 6, face.eye_y - ry - 6, brow_x + rx + 6, face.eye_y + ry + 6),
           functools.partial(_eye, face, sign))
  nose_reach = 1.3 * face.mouth_half_width + 8
  yield ((cx - nose_reach, face.nose_y - face.nose_half_width - 6, cx + nose_reach,
          face.mouth_y + 10), functools.partial(_nose, face))
  yield ((cx - face.mouth_half_width - 8, face.mouth_y - face.lip_thickness - 6,
          cx + face.mouth_half_width + 8, face.mouth_y + 1.2 * face.lip_thickness + 6),
         functools.partial(_mouth, face))


def render(face: Face, x: np.ndarray, y: np.ndarray,
           texture: np.ndarray | None = None) -> np.ndarray:
  """Renders the face's reflectance times its fixed lighting at canvas coordinates.

  Args:
    face: the face.
    x: canvas columns to sample, any shape `[...]`, float.
    y: canvas rows, same shape.
    texture: `skin_texture` at these points, flattened, when already known.
  Returns:
    `[..., 3]` RGB float32, roughly in [0, 1].
  """
  shape = np.shape(x)
  x = np.asarray(x, np.float32).reshape(-1)
  y = np.asarray(y, np.float32).reshape(-1)
  if texture is None:
    texture = skin_texture(face, x, y)
  rgb = face.skin_rgb.astype(np.float32) * (1.0 + texture)[:, None]
  for (x0, y0, x1, y1), paint in _features(face):
    inside = np.nonzero((x >= x0) & (x <= x1) & (y >= y0) & (y <= y1))[0]
    rgb[inside] = paint(x[inside], y[inside], rgb[inside])
  cx, cy = face.centre
  ax, ay = face.half_axes
  nx, ny = (x - cx) / ax, (y - cy) / ay
  ellipse = np.sqrt(nx**2 + ny**2)
  # Lambert shading of an ellipsoid head: the lighting belongs to the scene, so it moves with it.
  nz = np.sqrt(np.clip(1.0 - ellipse**2, 0.0, None))
  lx, ly = face.light
  lambert = np.clip(lx * nx + ly * ny + np.sqrt(1.0 - lx**2 - ly**2) * nz, 0.0, None)
  rgb *= (face.ambient + (1.0 - face.ambient) * lambert)[:, None]
  background = face.background_rgb.astype(np.float32) * (1.0 + 0.5 * texture)[:, None]
  inside = _sigmoid((1.0 - ellipse) * min(ax, ay) / 1.5)
  return _blend(background, rgb, inside).reshape(*shape, 3)

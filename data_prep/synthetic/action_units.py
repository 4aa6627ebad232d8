"""Facial action units as smooth local displacement fields, and the class-specific choice of units.

A motion field is a sum of compactly supported bumps: bump b moves the face point p by
`k(|p - c_b| / R_b) * d_b` with `k(r) = (1 - r^2)^3` for r < 1 and 0 beyond. The kernel is twice
differentiable, so the optical strain of the ground truth is well defined, and it vanishes outside
the bump, so a field can be evaluated only near its bumps.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from data_prep.synthetic import faces

# One bump of an action unit: (landmark, radius as a fraction of the face half-width, direction
# (outward, down) as a multiple of the unit's amplitude). "Outward" is away from the midline, so a
# bilateral unit is mirrored between the two sides.
_Bump = tuple[str, float, tuple[float, float]]

# The action units of FACS that the three classes need, as 2-D motion seen from the front.
ACTION_UNITS: dict[str, tuple[_Bump, ...]] = {
    "AU1": (("inner_brow", 0.22, (0.0, -1.0)), ("mid_brow", 0.2, (0.0, -0.5))),  # inner brow raiser
    "AU2": (("outer_brow", 0.22, (0.1, -1.0)), ("mid_brow", 0.2, (0.0, -0.5))),  # outer brow raiser
    "AU4": (("inner_brow", 0.22, (-0.55, 0.8)), ("mid_brow", 0.2, (-0.2, 0.6))),  # brow lowerer
    "AU5": (("upper_lid", 0.14, (0.0, -0.7)),),  # upper lid raiser
    "AU6": (("cheek", 0.3, (0.1, -1.0)), ("lower_lid", 0.15, (0.0, -0.5))),  # cheek raiser
    "AU7": (("lower_lid", 0.14, (-0.2, -0.8)),),  # lid tightener
    "AU9": (("nose_wing", 0.18, (-0.2, -1.0)), ("inner_brow", 0.18, (0.0, 0.4))),  # nose wrinkler
    # upper lip raiser
    "AU10": (("upper_lip_side", 0.2, (0.0, -0.9)), ("nose_wing", 0.15, (0.0, -0.4))),
    # lip corner puller
    "AU12": (("mouth_corner", 0.22, (0.6, -0.8)), ("cheek", 0.25, (0.15, -0.35))),
    "AU14": (("mouth_corner", 0.18, (0.8, 0.1)),),  # dimpler
    "AU15": (("mouth_corner", 0.2, (0.1, 1.0)),),  # lip corner depressor
    "AU17": (("chin", 0.3, (0.0, -0.8)), ("lower_lip", 0.22, (0.0, -0.5))),  # chin raiser
    "AU24": (("upper_lip", 0.2, (0.0, 0.5)), ("lower_lip", 0.2, (0.0, -0.6))),  # lip pressor
    "AU26": (("lower_lip", 0.25, (0.0, 0.7)), ("chin", 0.35, (0.0, 1.0))),  # jaw drop
    "AU45": (("upper_lid", 0.16, (0.0, 1.0)),),  # blink: a nuisance, not an expression
}


@dataclasses.dataclass(frozen=True)
class ClassProfile:
  """Which action units express a class: the units in `core` (at least one is always active) and
  optional companions, each with the probability that it appears."""
  core: tuple[tuple[str, float], ...]
  companions: tuple[tuple[str, float], ...]


CLASS_PROFILES: dict[str, ClassProfile] = {
    "negative": ClassProfile(
        core=(("AU4", 0.55), ("AU15", 0.3), ("AU9", 0.25), ("AU14", 0.2)),
        companions=(("AU7", 0.3), ("AU17", 0.25), ("AU10", 0.15), ("AU24", 0.15))),
    "positive": ClassProfile(core=(("AU12", 1.0),),
                             companions=(("AU6", 0.55), ("AU7", 0.1), ("AU26", 0.1))),
    "surprise": ClassProfile(core=(("AU1", 0.75), ("AU2", 0.75)),
                             companions=(("AU5", 0.35), ("AU26", 0.25))),
}


@dataclasses.dataclass(frozen=True)
class Activation:
  """One action unit as it occurs in a sample: its relative intensity, and its side (`L`/`R` for a
  unilateral unit, as FACS codes write `R12`; empty when bilateral)."""
  unit: str
  intensity: float
  side: str = ""


@dataclasses.dataclass(frozen=True)
class MotionField:
  """A sum of bumps in canvas pixels: centres `[B, 2]` (x, y), radii `[B]`, displacements
  `[B, 2]`."""
  centres: np.ndarray
  radii: np.ndarray
  displacements: np.ndarray

  def scaled(self, factor: float) -> MotionField:
    return dataclasses.replace(self, displacements=self.displacements * factor)

  def __add__(self, other: MotionField) -> MotionField:
    pairs = zip(dataclasses.astuple(self), dataclasses.astuple(other))
    return MotionField(*(np.concatenate([mine, theirs]) for mine, theirs in pairs))


def empty_field() -> MotionField:
  return MotionField(np.zeros((0, 2)), np.zeros(0), np.zeros((0, 2)))


def sample_activations(rng: np.random.Generator, profile: ClassProfile,
                       unilateral_probability: float) -> tuple[Activation, ...]:
  """Draws the action units of one sample of a class.

  Args:
    rng: the sample's random stream.
    profile: the class's units.
    unilateral_probability: chance that a unit acts on one side of the face only.
  Returns:
    The active units, the strongest first.
  """
  core = [unit for unit, probability in profile.core if rng.uniform() < probability]
  if not core:
    core = [profile.core[rng.integers(len(profile.core))][0]]
  companions = [unit for unit, probability in profile.companions if rng.uniform() < probability]
  activations = []
  for index, unit in enumerate(core + companions):
    # The first core unit leads; the others are weaker, as in most coded micro-expressions.
    intensity = 1.0 if index == 0 else float(rng.uniform(0.3, 0.9))
    side = str(rng.choice(["L", "R"])) if rng.uniform() < unilateral_probability else ""
    activations.append(Activation(unit, intensity, side))
  return tuple(activations)


def _landmark(points: dict[str, tuple[float, float]], name: str, side: str, face: faces.Face):
  """A landmark, and the x-sign pointing away from the midline there."""
  if f"{name}_l" in points:
    return points[f"{name}_{side}"], (-1.0 if side == "l" else 1.0)
  if name == "upper_lip_side":
    x, y = points["upper_lip"]
    sign = -1.0 if side == "l" else 1.0
    return (x + sign * 0.45 * face.mouth_half_width, y), sign
  return points[name], 0.0


def build_field(face: faces.Face, activations: tuple[Activation, ...], rng: np.random.Generator,
                jitter: float = 0.04) -> MotionField:
  """The motion field of the given action units on a face, before amplitude scaling.

  Args:
    face: the subject's face.
    activations: the active units.
    rng: the sample's random stream, for small per-sample shifts of each bump.
    jitter: standard deviation of the shifts of bump centres (fraction of the face half-width)
      and of the bump directions (radians, times 3): no two people move exactly alike.
  Returns:
    The field; its displacements are intensities times unit directions.
  """
  points = face.landmarks()
  half_width = face.half_axes[0]
  centres, radii, displacements = [], [], []
  for activation in activations:
    sides = [activation.side.lower()] if activation.side else ["l", "r"]
    for landmark, radius, (outward, down) in ACTION_UNITS[activation.unit]:
      for side in sides:
        (x, y), sign = _landmark(points, landmark, side, face)
        if sign == 0.0 and len(sides) == 2 and side == "r":
          continue  # a midline bump is shared by both sides
        angle = rng.normal(0.0, 3 * jitter)
        dx, dy = sign * outward if sign else outward, down
        dx, dy = dx * np.cos(angle) - dy * np.sin(angle), dx * np.sin(angle) + dy * np.cos(angle)
        shift_x, shift_y = rng.normal(0.0, jitter * half_width, 2)
        centres.append((x + shift_x, y + shift_y))
        radii.append(radius * half_width)
        displacements.append((activation.intensity * dx, activation.intensity * dy))
  if not centres:
    return empty_field()
  return MotionField(np.array(centres), np.array(radii), np.array(displacements))


def _kernel(squared_distance: np.ndarray) -> np.ndarray:
  return np.clip(1.0 - squared_distance, 0.0, None)**3


def evaluate(field: MotionField, x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """The field's displacement at points.

  Args:
    field: the motion field.
    x: canvas columns, `[N]`.
    y: canvas rows, `[N]`.
  Returns:
    `[N, 2]` displacement (dx, dy) in pixels.
  """
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  result = np.zeros((x.size, 2))
  for (cx, cy), radius, displacement in zip(field.centres, field.radii, field.displacements):
    near = np.nonzero((np.abs(x - cx) < radius) & (np.abs(y - cy) < radius))[0]
    weight = _kernel(((x[near] - cx)**2 + (y[near] - cy)**2) / radius**2)
    result[near] += weight[:, None] * displacement
  return result


def invert(field: MotionField, x: np.ndarray, y: np.ndarray, tolerance: float = 1e-6,
           max_iterations: int = 50) -> np.ndarray:
  """Solves `p + d(p) = q` for p at the points q: where each point of the apex came from.

  The fixed-point iteration `p <- q - d(p)` contracts because |grad d| stays well below 1
  (displacements of at most a few pixels over bumps of ten pixels or more).

  Args:
    field: the motion field d.
    x: canvas columns of q, `[N]`.
    y: canvas rows of q, `[N]`.
    tolerance: stop once no point moves by more than this (pixels) in one step.
    max_iterations: give up after this many steps.
  Returns:
    `[N, 2]` the points p (x, y).
  """
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  # A point can only be reached from within the largest total displacement of its bump.
  reach = field.radii + np.abs(field.displacements).sum() + 1.0
  moving = np.zeros(x.shape, bool)
  for (cx, cy), limit in zip(field.centres, reach):
    moving |= (np.abs(x - cx) < limit) & (np.abs(y - cy) < limit)
  index = np.nonzero(moving)[0]
  target_x, target_y = x[index], y[index]
  members = [np.nonzero((np.abs(target_x - cx) < limit) & (np.abs(target_y - cy) < limit))[0]
             for (cx, cy), limit in zip(field.centres, reach)]
  estimate_x, estimate_y = target_x.copy(), target_y.copy()
  for _ in range(max_iterations):
    shift_x, shift_y = np.zeros_like(target_x), np.zeros_like(target_y)
    bumps = zip(members, field.centres, field.radii, field.displacements)
    for member, (cx, cy), radius, (dx, dy) in bumps:
      weight = _kernel(((estimate_x[member] - cx)**2 + (estimate_y[member] - cy)**2) / radius**2)
      shift_x[member] += weight * dx
      shift_y[member] += weight * dy
    update_x, update_y = target_x - shift_x, target_y - shift_y
    step = max(np.abs(update_x - estimate_x).max(initial=0.0),
               np.abs(update_y - estimate_y).max(initial=0.0))
    estimate_x, estimate_y = update_x, update_y
    if step < tolerance:
      break
  else:
    raise RuntimeError(f"motion field inversion did not converge in {max_iterations} steps")
  source = np.stack([x, y], axis=1)
  source[index, 0], source[index, 1] = estimate_x, estimate_y
  return source


def peak_displacement(field: MotionField) -> float:
  """The largest displacement length of a field on the integer pixel grid."""
  if not len(field.radii):
    return 0.0
  low = np.floor((field.centres - field.radii[:, None]).min(axis=0)).astype(int)
  high = np.ceil((field.centres + field.radii[:, None]).max(axis=0)).astype(int)
  y, x = np.mgrid[low[1]:high[1] + 1, low[0]:high[0] + 1]
  return float(np.linalg.norm(evaluate(field, x.ravel(), y.ravel()), axis=1).max())

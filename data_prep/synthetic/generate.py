"""Onset and apex frames, with their ground-truth motion, for every sample of the organisers' list.

Every random choice comes from a stream seeded by the global seed and the names of what it is for
(`dataset/subject/face`, `dataset/subject/sample/motion`, `.../noise`), so any single sample can be
regenerated alone, in any order or process, bit for bit.

Geometry. Each subject has a face on a canvas of its frame size (`faces.py`). A sample films it
through a pose `T` (a small similarity: crop offset, roll, zoom) mapping image pixels to canvas
points. Between onset and apex the face deforms by the motion field `d` of its action units and
nuisances (`action_units.py`) and the head moves a little (pose `T_o` becomes `T_a`). The ground
truth forward flow on the onset grid is therefore

  g(p) = T_a^-1(T_o(p) + d(T_o(p))) - p,   so that onset(p) = apex(p + g(p)),

the convention of OpenCV's and the project's flow maps (u to the right, v down).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator, Sequence

import numpy as np

from data_prep.synthetic import action_units
from data_prep.synthetic import domains as domains_lib
from data_prep.synthetic import faces
from rcn_jax import sample_list


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
  """Everything that decides the synthetic composite; equal configs give identical data.

  Attributes:
    seed: the global seed.
    domains: one spec per dataset (sizes, camera, nuisances, amplitudes).
    blink_probability: chance of an eyelid closing motion (AU45) unrelated to the class.
    fidget_probability: chance of one extra random local motion unrelated to the class.
    unilateral_probability: chance that an action unit acts on one side only.
    atypical_probability: chance that a sample shows the action units of another class than its
      label, as ambiguous or disputed clips do in the real databases (coders label the emotion
      from the context, not only from the movement). It bounds the attainable accuracy.
    jitter: per-sample spread of action-unit positions and directions (`build_field`).
  """
  seed: int = 0
  domains: tuple[domains_lib.DomainSpec, ...] = domains_lib.DOMAINS
  blink_probability: float = 0.15
  fidget_probability: float = 0.2
  unilateral_probability: float = 0.2
  atypical_probability: float = 0.04
  jitter: float = 0.05

  def fingerprint(self) -> str:
    """A short digest of the config, to tell generated data sets apart."""
    return hashlib.blake2b(repr(self).encode(), digest_size=6).hexdigest()


@dataclasses.dataclass(frozen=True)
class Pose:
  """Image pixel p to canvas point: `centre + scale * R(angle) (p - centre) + shift`."""
  shift: tuple[float, float]
  angle: float
  scale: float

  def to_canvas(self, x: np.ndarray, y: np.ndarray,
                centre: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    cos, sin = self.scale * np.cos(self.angle), self.scale * np.sin(self.angle)
    dx, dy = x - centre[0], y - centre[1]
    return (centre[0] + cos * dx - sin * dy + self.shift[0],
            centre[1] + sin * dx + cos * dy + self.shift[1])

  def matrix(self, centre: tuple[float, float]) -> np.ndarray:
    """`[2, 3]` affine matrix of `to_canvas` on (x, y, 1)."""
    origin = self.to_canvas(np.zeros(1), np.zeros(1), centre)
    unit_x = self.to_canvas(np.ones(1), np.zeros(1), centre)
    unit_y = self.to_canvas(np.zeros(1), np.ones(1), centre)
    return np.array([[unit_x[0][0] - origin[0][0], unit_y[0][0] - origin[0][0], origin[0][0]],
                     [unit_x[1][0] - origin[1][0], unit_y[1][0] - origin[1][0], origin[1][0]]])

  def to_image(self, x: np.ndarray, y: np.ndarray,
               centre: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    cos, sin = np.cos(self.angle) / self.scale, np.sin(self.angle) / self.scale
    dx, dy = x - centre[0] - self.shift[0], y - centre[1] - self.shift[1]
    return centre[0] + cos * dx + sin * dy, centre[1] - sin * dx + cos * dy


@dataclasses.dataclass(frozen=True)
class SamplePlan:
  """The random choices of one sample: what the frames will show, before any pixel is rendered.

  `motion` holds the expression and the nuisance bumps in canvas pixels, already scaled;
  `expressed_label` is the class whose action units the motion shows (`label` unless atypical).
  """
  dataset: str
  subject: str
  sample: str
  label: int
  height: int
  width: int
  colour: bool
  expressed_label: int
  activations: tuple[action_units.Activation, ...]
  amplitude: float
  motion: action_units.MotionField
  onset_pose: Pose
  apex_pose: Pose
  gain: float
  illumination: tuple[float, float, float]
  noise_sigma: float
  onset_frame: int
  apex_frame: int


@dataclasses.dataclass(frozen=True)
class SyntheticSample:
  """A generated sample.

  Attributes:
    plan: its random choices and metadata.
    onset: `[H, W, 3]` BGR uint8, or `[H, W]` uint8 for grayscale domains.
    apex: same shape and type.
    motion: `[H, W, 2]` float32 ground-truth forward flow (u, v) on the onset grid, pixels.
  """
  plan: SamplePlan
  onset: np.ndarray
  apex: np.ndarray
  motion: np.ndarray


def stream(seed: int, *names: str) -> np.random.Generator:
  """A random stream of its own for `names` (hashed stably, unlike Python's `hash`)."""
  digest = hashlib.blake2b("/".join(names).encode(), digest_size=16).digest()
  words = np.frombuffer(digest, dtype=np.uint32)
  return np.random.default_rng(np.random.SeedSequence([seed, *words.tolist()]))


def subject_face(config: SyntheticConfig, dataset: str, subject: str) -> faces.Face:
  """The face of a subject; its frame size is drawn around its domain's size."""
  spec = domains_lib.domain(dataset, config.domains)
  rng = stream(config.seed, dataset, subject, "face")
  height, width = (int(side + rng.integers(-spec.size_jitter, spec.size_jitter + 1))
                   for side in spec.size)
  return faces.sample_face(rng, height, width)


def _nuisance_motion(config: SyntheticConfig, rng: np.random.Generator, face: faces.Face,
                     amplitude: float) -> action_units.MotionField:
  """Blinks and random local motions that carry no class information."""
  field = action_units.empty_field()
  if rng.uniform() < config.blink_probability:
    blink = action_units.build_field(face, (action_units.Activation("AU45", 1.0),), rng,
                                     config.jitter)
    field = field + blink.scaled(rng.uniform(0.3, 1.5))
  if rng.uniform() < config.fidget_probability:
    cx, cy = face.centre
    ax, ay = face.half_axes
    angle, radius = rng.uniform(0, 2 * np.pi), np.sqrt(rng.uniform(0, 0.5))
    direction = rng.uniform(0, 2 * np.pi)
    field = field + action_units.MotionField(
        centres=np.array([[cx + ax * radius * np.cos(angle), cy + ay * radius * np.sin(angle)]]),
        radii=np.array([ax * rng.uniform(0.15, 0.3)]),
        displacements=rng.uniform(0.1, 0.5) * amplitude
        * np.array([[np.cos(direction), np.sin(direction)]]))
  return field


def plan_sample(config: SyntheticConfig, listed: sample_list.ListedSample,
                face: faces.Face | None = None) -> SamplePlan:
  """Draws the random choices of one listed sample.

  Args:
    config: the synthetic composite's config.
    listed: the sample, as in the organisers' list.
    face: the subject's face, when already at hand (it is `subject_face(...)`).
  Returns:
    The plan.
  """
  if listed.label not in range(len(sample_list.CLASS_NAMES)):
    raise ValueError(f"sample {listed.dataset}/{listed.subject}/{listed.sample}: unknown label "
                     f"{listed.label}")
  spec = domains_lib.domain(listed.dataset, config.domains)
  if face is None:
    face = subject_face(config, listed.dataset, listed.subject)
  rng = stream(config.seed, listed.dataset, listed.subject, listed.sample, "motion")

  expressed_label = listed.label
  if rng.uniform() < config.atypical_probability:
    others = [label for label in range(len(sample_list.CLASS_NAMES)) if label != listed.label]
    expressed_label = int(rng.choice(others))
  profile = action_units.CLASS_PROFILES[sample_list.CLASS_NAMES[expressed_label]]
  activations = action_units.sample_activations(rng, profile, config.unilateral_probability)
  expression = action_units.build_field(face, activations, rng, config.jitter)
  amplitude = float(rng.uniform(*spec.amplitude_range))
  expression = expression.scaled(amplitude / action_units.peak_displacement(expression))
  motion = expression + _nuisance_motion(config, rng, face, amplitude)

  radius = 0.5 * max(face.height, face.width)
  onset_pose = Pose(shift=tuple(rng.uniform(-3.0, 3.0, 2)), angle=float(rng.normal(0.0, 0.025)),
                    scale=float(rng.uniform(0.96, 1.04)))
  head = spec.head_motion_px
  apex_pose = Pose(shift=tuple(np.add(onset_pose.shift, rng.normal(0.0, head, 2))),
                   angle=onset_pose.angle + float(rng.normal(0.0, head / radius)),
                   scale=onset_pose.scale * (1.0 + float(rng.normal(0.0, 0.5 * head / radius))))
  illumination = tuple(float(v) for v in rng.normal(0.0, spec.illumination_change, 3))
  onset_frame = int(rng.integers(1, 150))
  return SamplePlan(
      dataset=listed.dataset, subject=listed.subject, sample=listed.sample, label=listed.label,
      height=face.height, width=face.width, colour=spec.colour, expressed_label=expressed_label,
      activations=activations,
      amplitude=amplitude, motion=motion, onset_pose=onset_pose, apex_pose=apex_pose,
      gain=float(rng.uniform(0.85, 1.15)), illumination=illumination, noise_sigma=spec.noise_sigma,
      onset_frame=onset_frame, apex_frame=onset_frame + int(rng.integers(*spec.apex_delay_frames)))


def ground_truth_motion(plan: SamplePlan) -> np.ndarray:
  """`[H, W, 2]` float32 forward flow (u, v) from onset to apex on the onset pixel grid."""
  centre = (plan.width / 2, plan.height / 2)
  y, x = np.mgrid[0:plan.height, 0:plan.width].astype(np.float64)
  fx, fy = plan.onset_pose.to_canvas(x.ravel(), y.ravel(), centre)
  moved = np.stack([fx, fy], 1) + action_units.evaluate(plan.motion, fx, fy)
  qx, qy = plan.apex_pose.to_image(moved[:, 0], moved[:, 1], centre)
  motion = np.stack([qx - x.ravel(), qy - y.ravel()], 1)
  return motion.reshape(plan.height, plan.width, 2).astype(np.float32)


def _to_frame(rgb: np.ndarray, plan: SamplePlan, rng: np.random.Generator) -> np.ndarray:
  """Camera: gain, colour or gray, sensor noise, 8-bit quantisation."""
  if plan.colour:
    image = rgb[..., ::-1] * (255.0 * plan.gain)
  else:
    luminance = np.einsum("hwc,c->hw", rgb, np.array([0.299, 0.587, 0.114], np.float32))
    image = luminance * (255.0 * plan.gain)
  image = image + plan.noise_sigma * rng.standard_normal(image.shape, dtype=np.float32)
  return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def render_sample(plan: SamplePlan, face: faces.Face, seed: int) -> SyntheticSample:
  """Renders the onset and apex frames of a plan.

  Args:
    plan: the sample's choices.
    face: the subject's face.
    seed: the global seed (for the sensor-noise stream).
  Returns:
    The sample with its frames and ground-truth motion.
  """
  centre = (plan.width / 2, plan.height / 2)
  y, x = np.mgrid[0:plan.height, 0:plan.width].astype(np.float64)
  onset_texture = faces.skin_texture_on_grid(face, plan.onset_pose.matrix(centre), plan.height,
                                             plan.width)
  onset = faces.render(face, *plan.onset_pose.to_canvas(x, y, centre), texture=onset_texture)
  # Each apex pixel shows the face point that the motion carried there; the texture factors over
  # the grid except where the motion moved the point.
  ax, ay = plan.apex_pose.to_canvas(x.ravel(), y.ravel(), centre)
  source = action_units.invert(plan.motion, ax, ay)
  apex_texture = faces.skin_texture_on_grid(face, plan.apex_pose.matrix(centre), plan.height,
                                            plan.width)
  moved = np.nonzero(np.any(source != np.stack([ax, ay], 1), axis=1))[0]
  apex_texture[moved] = faces.skin_texture(face, source[moved, 0], source[moved, 1])
  apex = faces.render(face, source[:, 0], source[:, 1], texture=apex_texture)
  apex = apex.reshape(plan.height, plan.width, 3)
  gain, slope_x, slope_y = plan.illumination
  lighting = 1.0 + gain + slope_x * (x / plan.width - 0.5) + slope_y * (y / plan.height - 0.5)
  apex *= lighting[..., None].astype(np.float32)
  rng = stream(seed, plan.dataset, plan.subject, plan.sample, "noise")
  return SyntheticSample(plan=plan, onset=_to_frame(onset, plan, rng),
                         apex=_to_frame(apex, plan, rng), motion=ground_truth_motion(plan))


def generate_sample(config: SyntheticConfig, listed: sample_list.ListedSample) -> SyntheticSample:
  """Generates one listed sample from scratch (independent of every other sample)."""
  face = subject_face(config, listed.dataset, listed.subject)
  return render_sample(plan_sample(config, listed, face), face, config.seed)


def plan_composite(config: SyntheticConfig,
                   datasets: Sequence[str] | None = None) -> list[SamplePlan]:
  """The plans of every listed sample, in the organisers' order (no frames rendered).

  Args:
    config: the synthetic composite's config.
    datasets: keep only these datasets; all when None.
  Returns:
    One plan per listed sample.
  """
  listed = sample_list.read_official_list(datasets)
  face_of = {(row.dataset, row.subject): None for row in listed}
  for dataset, subject in face_of:
    face_of[dataset, subject] = subject_face(config, dataset, subject)
  return [plan_sample(config, row, face_of[row.dataset, row.subject]) for row in listed]


def generate_composite(config: SyntheticConfig,
                       datasets: Sequence[str] | None = None) -> Iterator[SyntheticSample]:
  """Generates every listed sample, in the organisers' order.

  Args:
    config: the synthetic composite's config.
    datasets: keep only these datasets; all when None.
  Yields:
    The samples.
  """
  for row in sample_list.read_official_list(datasets):
    yield generate_sample(config, row)

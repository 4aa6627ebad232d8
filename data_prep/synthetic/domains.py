"""The three recording domains of the composite, imitated: frame size, colour, camera and nuisances.

Sizes follow the paper's Sec. IV-B (average face regions: SMIC 160x140, CASME II 210x200, SAMM
230x210, read as rows x columns). The difficulty knobs are the named fields of `DomainSpec`; the
defaults make SMIC the hardest domain (small noisy frames, flicker, head motion, weaker motion)
and CASME II the easiest, as in published results on the real data.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class DomainSpec:
  """How one dataset's clips look.

  Attributes:
    name: dataset key of the organisers' list (`smic`, `casme2`, `samm`).
    size: mean frame size (rows, columns).
    size_jitter: per-subject size change, +- pixels on each side.
    colour: whether frames are colour (BGR) or grayscale.
    noise_sigma: sensor noise, standard deviation in grey levels (0-255), independent per frame.
    head_motion_px: standard deviation of the rigid head motion between onset and apex, in pixels
      at the face border.
    illumination_change: standard deviation of the relative brightness change between onset and
      apex (global gain and linear gradient): flicker and auto-exposure.
    amplitude_range: range of the expression's peak displacement, in pixels (drawn uniformly).
    apex_delay_frames: range of the apex frame's distance from the onset frame (frame rate).
  """
  name: str
  size: tuple[int, int]
  size_jitter: int
  colour: bool
  noise_sigma: float
  head_motion_px: float
  illumination_change: float
  amplitude_range: tuple[float, float]
  apex_delay_frames: tuple[int, int]


DOMAINS: tuple[DomainSpec, ...] = (
    DomainSpec(name="casme2", size=(210, 200), size_jitter=8, colour=True, noise_sigma=1.5,
               head_motion_px=0.1, illumination_change=0.005, amplitude_range=(0.3, 2.0),
               apex_delay_frames=(10, 45)),
    DomainSpec(name="smic", size=(160, 140), size_jitter=6, colour=True, noise_sigma=3.0,
               head_motion_px=0.2, illumination_change=0.015, amplitude_range=(0.2, 1.6),
               apex_delay_frames=(5, 22)),
    DomainSpec(name="samm", size=(230, 210), size_jitter=8, colour=False, noise_sigma=0.8,
               head_motion_px=0.08, illumination_change=0.003, amplitude_range=(0.2, 1.8),
               apex_delay_frames=(15, 60)),
)


def domain(name: str, domains: tuple[DomainSpec, ...] = DOMAINS) -> DomainSpec:
  """The spec of a dataset, by its key in the organisers' list."""
  for spec in domains:
    if spec.name == name:
      return spec
  known = [spec.name for spec in domains]
  raise KeyError(f"no synthetic domain for dataset {name!r}; known: {known}")

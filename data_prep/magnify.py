"""Linear Eulerian video magnification (Wu et al., SIGGRAPH 2012) in JAX, batched over clips.

Each frame is split into a Laplacian pyramid; every pyramid coefficient is filtered in time, the
filtered band is multiplied by a per-level gain and added back, and the pyramid is collapsed. For a
small motion `I(x, t) = f(x + d(t))` the result approximates `f(x + (1 + alpha) d(t))` wherever
`(1 + alpha) d` stays below about an eighth of the spatial wavelength, so levels that hold
wavelengths shorter than `cutoff_wavelength` get a gain reduced to `(lambda / lambda_c)(1 + alpha)
- 1` (never below 0); the low-pass residual is not amplified (it holds lighting, not motion).

Temporal filters:
- `onset`: the change since the first frame, `I(t) - I(0)`. It is what an onset/apex pair allows
  (two frames carry no temporal frequencies to select), and the usual choice in micro-expression
  work: the onset stays as it is and the apex moves `(1 + alpha)` times as far.
- `ideal`: an ideal band-pass `[low_hz, high_hz]` by FFT along time (clips of several frames).

`python -m data_prep.magnify --alpha=A -- <data_prep.build arguments>` builds a magnified
`megc2019` dataset; `build_magnified_synthetic` does the same for the built-in synthetic
composite (paper Table III compares the two).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import functools
import json
import multiprocessing
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from data_prep import InputError, locks
from rcn_jax import errors

FILTERS = ("onset", "ideal")
_BINOMIAL = (1.0, 4.0, 6.0, 4.0, 1.0)  # the pyramid's 5-tap low-pass, /16
MAGNIFICATION_FILE = "magnification.json"


@dataclasses.dataclass(frozen=True)
class MagnificationConfig:
  """How to magnify.

  Attributes:
    alpha: amplification of the filtered band (0 leaves frames unchanged).
    cutoff_wavelength: lambda_c in px; levels of shorter wavelength get an attenuated gain.
    levels: Laplacian levels below the residual (each halves the size).
    temporal_filter: `onset` or `ideal`.
    low_hz: lower edge of the `ideal` band.
    high_hz: upper edge of the `ideal` band.
    fps: frame rate of the clips (`ideal` only).
  """
  alpha: float = 10.0
  cutoff_wavelength: float = 16.0
  levels: int = 4
  temporal_filter: str = "onset"
  low_hz: float = 0.5
  high_hz: float = 10.0
  fps: float = 200.0

  def __post_init__(self):
    if not np.isfinite(self.alpha) or self.alpha < 0:
      raise InputError(f"magnification alpha={self.alpha} must be finite and >= 0")
    if not self.cutoff_wavelength > 0:
      raise InputError(f"magnification cutoff_wavelength={self.cutoff_wavelength} must be > 0")
    if self.levels < 1:
      raise InputError(f"magnification levels={self.levels} must be >= 1")
    if self.temporal_filter not in FILTERS:
      raise InputError(f"magnification temporal_filter={self.temporal_filter!r}: expected one "
                       f"of {FILTERS}")
    if self.temporal_filter == "ideal" and not 0 <= self.low_hz < self.high_hz <= self.fps / 2:
      raise InputError(f"magnification band [{self.low_hz}, {self.high_hz}] Hz must satisfy "
                       f"0 <= low < high <= fps/2 = {self.fps / 2}")

  def level_gains(self) -> tuple[float, ...]:
    """The gain of each Laplacian level, finest first.

    Level l holds wavelengths of about `4 * 2**l` px; Wu et al.'s bound `(1 + a) d < lambda / 8`
    with `d = lambda_c / (8 (1 + alpha))` gives `a = (lambda / lambda_c)(1 + alpha) - 1`.
    """
    gains = []
    for level in range(self.levels):
      wavelength = 4.0 * 2.0 ** level
      gains.append(float(min(self.alpha, max(0.0, wavelength / self.cutoff_wavelength
                                                 * (1.0 + self.alpha) - 1.0))))
    return tuple(gains)

  def to_json(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


def _down(x):
  """Binomial low-pass and every second row and column of `[..., H, W, C]`.

  One strided convolution, normalised by the kernel mass inside the image so the border keeps
  its brightness (no padding values enter).
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  taps = jnp.asarray(_BINOMIAL, x.dtype)
  kernel = (taps[:, None] * taps[None, :])[:, :, None, None]
  lead, (height, width, channels) = x.shape[:-3], x.shape[-3:]
  # Channels join the batch so a single-channel kernel serves every channel.
  images = jnp.moveaxis(x.reshape((-1, height, width, channels)), -1, 1).reshape(-1, height, width, 1)

  def convolve(values):
    return jax.lax.conv_general_dilated(values, kernel, (2, 2), ((2, 2), (2, 2)),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))

  blurred = convolve(images) / convolve(jnp.ones((1, height, width, 1), x.dtype))
  small_h, small_w = blurred.shape[1:3]
  blurred = jnp.moveaxis(blurred.reshape(-1, channels, small_h, small_w), 1, -1)
  return blurred.reshape(lead + (small_h, small_w, channels))


def _up(x, shape):
  """Bilinear resize of `[..., h, w, C]` to the rows and columns of `shape`."""
  import jax  # pylint: disable=g-import-not-at-top

  return jax.image.resize(x, x.shape[:-3] + tuple(shape[-3:-1]) + x.shape[-1:], "linear")


def laplacian_pyramid(frames, levels: int) -> list:
  """`levels` band-pass images and the low-pass residual of `[..., H, W, C]` float frames.

  Collapsing (`collapse_pyramid`) gives the frames back exactly (up to float rounding): each band
  is defined as the difference to the upsampled next level.
  """
  bands, current = [], frames
  for _ in range(levels):
    smaller = _down(current)
    bands.append(current - _up(smaller, current.shape))
    current = smaller
  return bands + [current]


def collapse_pyramid(pyramid: Sequence) -> Any:
  """Inverse of `laplacian_pyramid`."""
  current = pyramid[-1]
  for band in reversed(pyramid[:-1]):
    current = band + _up(current, band.shape)
  return current


def _temporal_band(level, config: MagnificationConfig):
  """The filtered signal of one level `[B, T, h, w, C]` along T."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  if config.temporal_filter == "onset":
    return level - level[:, :1]
  frequencies = jnp.abs(jnp.fft.fftfreq(level.shape[1], d=1.0 / config.fps))
  keep = (frequencies >= config.low_hz) & (frequencies <= config.high_hz)
  spectrum = jnp.fft.fft(level, axis=1) * keep[None, :, None, None, None]
  return jnp.real(jnp.fft.ifft(spectrum, axis=1))


@functools.lru_cache(maxsize=None)
def _magnify_program(config: MagnificationConfig):
  import jax  # pylint: disable=g-import-not-at-top

  gains = config.level_gains()

  def magnify(clips):
    pyramid = laplacian_pyramid(clips, config.levels)
    amplified = [band + gain * _temporal_band(band, config) if gain else band
                 for band, gain in zip(pyramid[:-1], gains)]
    return collapse_pyramid(amplified + [pyramid[-1]])

  return jax.jit(magnify)


def _check_clips(clips: np.ndarray, name: str) -> np.ndarray:
  clips = np.asarray(clips)
  if clips.ndim not in (4, 5):
    raise InputError(f"{name}: expected clips [B, T, H, W] or [B, T, H, W, C], got shape "
                     f"{clips.shape}")
  if clips.shape[1] < 2:
    raise InputError(f"{name}: a clip needs at least 2 frames, got {clips.shape[1]}")
  if not np.issubdtype(clips.dtype, np.number) or not np.all(np.isfinite(clips)):
    raise InputError(f"{name}: frames must be finite numbers")
  return clips


def magnify_clips(clips: np.ndarray, config: MagnificationConfig) -> np.ndarray:
  """Magnifies the motion of a batch of equally sized clips.

  Args:
    clips: `[B, T, H, W]` (grey) or `[B, T, H, W, C]` frames, any real dtype; uint8 input is
      rounded and clipped back to uint8.
    config: the magnification.

  Returns:
    The magnified clips, same shape and dtype (float input stays unclipped float32).
  """
  clips = _check_clips(clips, "magnify_clips")
  if config.levels > np.log2(min(clips.shape[2:4])):
    raise InputError(f"magnification levels={config.levels} too many for {clips.shape[2:4]} "
                     "frames: each level halves the size")
  grey = clips.ndim == 4
  frames = np.asarray(clips[..., None] if grey else clips, np.float32)
  out = np.asarray(_magnify_program(config)(frames)) if config.alpha else frames
  out = out[..., 0] if grey else out
  if clips.dtype == np.uint8:
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
  return out.astype(np.float32)


def magnify_pairs(onsets: np.ndarray, apexes: np.ndarray,
                  config: MagnificationConfig) -> np.ndarray:
  """The magnified apex frames of onset/apex pairs (the onset frames stay as they are).

  Args:
    onsets: `[B, H, W]` or `[B, H, W, C]` frames.
    apexes: the same shape.
    config: a magnification with the `onset` temporal filter.

  Returns:
    `[B, H, W(, C)]` magnified apexes, dtype of `apexes`.
  """
  if config.temporal_filter != "onset":
    raise InputError(f"onset/apex pairs need temporal_filter='onset', got "
                     f"{config.temporal_filter!r}")
  onsets, apexes = np.asarray(onsets), np.asarray(apexes)
  if onsets.shape != apexes.shape:
    raise InputError(f"onsets {onsets.shape} and apexes {apexes.shape} differ in shape")
  return magnify_clips(np.stack([onsets, apexes], axis=1), config)[:, 1]


@dataclasses.dataclass(frozen=True)
class MagnifiedFlowMap:
  """`(onset, apex) -> [H, W, 3]` flow map of the magnified pair; picklable for worker processes.

  Attributes:
    magnification: the magnification (`onset` filter).
    backend: the optical-flow backend.
  """
  magnification: MagnificationConfig
  backend: str = "tvl1"

  def __call__(self, onset: np.ndarray, apex: np.ndarray) -> np.ndarray:
    from data_prep.flowmap import compute_flow_map  # pylint: disable=g-import-not-at-top

    magnified = magnify_pairs(onset[None], apex[None], self.magnification)[0]
    return compute_flow_map(onset, magnified, backend=self.backend)


def _flow_of_pair(backend: str, pair: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
  from data_prep.flowmap import compute_flow_map  # pylint: disable=g-import-not-at-top

  return compute_flow_map(pair[0], pair[1], backend=backend)


def build_magnified_synthetic(data_dir: str | Path, magnification: MagnificationConfig, *,
                              backend: str = "tvl1", workers: int = 1, listed: Sequence[Any] | None = None
                              ) -> Path:
  """The synthetic composite with magnified motion, as a `megc2019` flow-map dataset.

  Frames come from the same generator as `megc2019_synthetic`; the apex of each pair is
  magnified before the flow (the same backend), so with `alpha=0` the maps equal the plain
  synthetic composite's. Nothing is rebuilt when `data_dir` already holds the dataset.

  Args:
    data_dir: the TFDS data dir to write `megc2019/<backend>/<version>/` into.
    magnification: the magnification (`onset` filter).
    backend: the flow backend.
    workers: processes for the flow (1: this process).
    listed: the `rcn_jax.sample_list.ListedSample`s to make (default: the organisers' whole list,
      which the loader needs for the datasets a run uses).

  Returns:
    The dataset folder.
  """
  from data_prep.flow_dataset import prepare, write_manifest  # pylint: disable=g-import-not-at-top
  from data_prep.megc2019 import Megc2019  # pylint: disable=g-import-not-at-top
  from data_prep.synthetic import generate  # pylint: disable=g-import-not-at-top
  from data_prep.synthetic.builder import grey_pair  # pylint: disable=g-import-not-at-top
  from rcn_jax import sample_list  # pylint: disable=g-import-not-at-top

  data_dir = Path(data_dir)
  listed = sample_list.read_official_list() if listed is None else list(listed)
  record = {"synthetic": True, "backend": backend, "magnification": magnification.to_json(),
            "num_samples": len(listed)}
  # Processes that start together (a multi-process study) build once: the others wait, then read.
  with locks.exclusive(data_dir / "magnified.lock"):
    existing = sorted((data_dir / "megc2019" / backend).glob("*/dataset_info.json"))
    marker = data_dir / MAGNIFICATION_FILE
    if existing and marker.is_file():
      if json.loads(marker.read_text()) != record:
        raise InputError(f"{data_dir}: holds a dataset made with {marker.read_text()}; use another "
                         "data_dir")
      return existing[-1].parent
    generator_config = generate.SyntheticConfig()
    pairs = [grey_pair(generator_config, row) for row in listed]
    apexes: list[np.ndarray | None] = [None] * len(pairs)
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for index, (_, onset, _) in enumerate(pairs):
      by_shape.setdefault(onset.shape, []).append(index)
    for indices in by_shape.values():
      magnified = magnify_pairs(np.stack([pairs[i][1] for i in indices]),
                                np.stack([pairs[i][2] for i in indices]), magnification)
      for index, apex in zip(indices, magnified):
        apexes[index] = apex
    jobs = [(onset, apex) for (_, onset, _), apex in zip(pairs, apexes)]
    flow = functools.partial(_flow_of_pair, backend)
    if workers > 1:
      # spawn: forking a process that already runs JAX threads can deadlock.
      context = multiprocessing.get_context("spawn")
      with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        maps = list(pool.map(flow, jobs, chunksize=4))
    else:
      maps = [flow(job) for job in jobs]
    with tempfile.TemporaryDirectory(dir=data_dir) as staged:
      entries = []
      for index, ((plan, _, _), flow_map) in enumerate(zip(pairs, maps)):
        name = f"{index:05d}.npz"
        np.savez(Path(staged) / name, flow=flow_map)
        entries.append({"file": name, "label": plan.label, "dataset": plan.dataset,
                        "subject": plan.subject, "sample": plan.sample,
                        "onset_frame": plan.onset_frame, "apex_frame": plan.apex_frame})
      write_manifest(staged, entries, record)
      folder = prepare(Megc2019, data_dir, staged, config=backend)
    marker.write_text(json.dumps(record, indent=1))
    return folder


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
  """Splits `[options] -- [data_prep.build arguments]`."""
  argv = list(sys.argv[1:] if argv is None else argv)
  split = argv.index("--") if "--" in argv else len(argv)
  parser = argparse.ArgumentParser(
      prog="python -m data_prep.magnify",
      description="Builds a megc2019 dataset from motion-magnified onset/apex pairs: "
      "python -m data_prep.magnify --alpha=10 -- --casme2=DIR --samm=DIR --smic=DIR --out=DIR")
  parser.add_argument("--alpha", type=float, default=MagnificationConfig.alpha)
  parser.add_argument("--cutoff-wavelength", type=float,
                      default=MagnificationConfig.cutoff_wavelength)
  parser.add_argument("--levels", type=int, default=MagnificationConfig.levels)
  return parser.parse_args(argv[:split]), argv[split + 1:]


def main(argv: Sequence[str] | None = None) -> int:
  """Runs `data_prep.build` with a magnified flow function; returns its exit status."""
  from data_prep import build  # pylint: disable=g-import-not-at-top

  args, build_argv = parse_args(argv)
  try:
    magnification = MagnificationConfig(alpha=args.alpha, cutoff_wavelength=args.cutoff_wavelength,
                                        levels=args.levels)
  except InputError as error:
    return errors.report(error)
  build_args = build.parse_args(build_argv)
  if Path(build_args.out).resolve() == Path(build.default_data_dir()).resolve():
    return errors.report("give the build an --out folder of its own: a magnified dataset must not "
                         "replace the plain one")
  Path(build_args.out).mkdir(parents=True, exist_ok=True)
  (Path(build_args.out) / MAGNIFICATION_FILE).write_text(json.dumps(
      {"synthetic": False, "backend": build_args.backend,
       "magnification": magnification.to_json()}, indent=1))
  return build.main(build_argv, flow_fn=MagnifiedFlowMap(magnification, build_args.backend),
                    flow_variant=json.dumps({"magnification": magnification.to_json()}, sort_keys=True))


if __name__ == "__main__":
  sys.exit(main())

"""Dense optical flow between onset and apex frames, by name.

`BACKENDS` lists the implementations: `tvl1` (OpenCV contrib Dual TV-L1, the default), `dis` and
`farneback` (OpenCV, fast and less accurate), and the JAX solvers, jit-compiled and batched over
pairs so they run on GPU/TPU: `jax_tvl1` (a step-by-step port of OpenCV's TV-L1) and the robust
coarse-to-fine family `jax_c2f_charbonnier` (Ce Liu's Coarse2Fine) and `jax_c2f_lorentzian`
(Sun-Roth-Black `classic-l`, the paper's stated penalty). Flow is `[..., H, W, 2]` = (u, v) in
pixels, u along columns (+right), v along rows (+down), with `frame0(p) ~ frame1(p + (u, v))`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from data_prep import InputError
from data_prep.flow import configs
from data_prep.flow import opencv_backends

BACKENDS = ("tvl1", "dis", "farneback", "jax_tvl1", "jax_c2f_charbonnier", "jax_c2f_lorentzian")
OPENCV_BACKENDS = ("tvl1", "dis", "farneback")
JAX_BACKENDS = ("jax_tvl1", "jax_c2f_charbonnier", "jax_c2f_lorentzian")
DEFAULT_CONFIGS = {
    "tvl1": configs.TVL1Config(),
    "dis": configs.DISConfig(),
    "farneback": configs.FarnebackConfig(),
    "jax_tvl1": configs.TVL1Config(),
    "jax_c2f_charbonnier": configs.CHARBONNIER,
    "jax_c2f_lorentzian": configs.LORENTZIAN,
}
_OPENCV_SOLVERS = {
    "tvl1": opencv_backends.tvl1_flow,
    "dis": opencv_backends.dis_flow,
    "farneback": opencv_backends.farneback_flow,
}
MIN_SIDE = 16  # the pyramids need at least this many pixels per side


def _check_backend(backend: str, config: Any) -> Any:
  if backend not in BACKENDS:
    raise InputError(f"unknown flow backend {backend!r}; expected one of {list(BACKENDS)}")
  default = DEFAULT_CONFIGS[backend]
  if config is None:
    return default
  if type(config) is not type(default):
    raise TypeError(f"flow backend {backend!r} takes a {type(default).__name__}, "
                    f"got {type(config).__name__}")
  if isinstance(config, configs.RobustFlowConfig) and config.penalty != default.penalty:
    raise InputError(f"flow backend {backend!r} needs penalty {default.penalty!r}, "
                     f"got {config.penalty!r}")
  return config


def _jax_solver(backend: str):
  """The jitted batch solver of a JAX backend; imported on first use, so that OpenCV-only users
  (and processes forked for them) never start JAX."""
  if backend == "jax_tvl1":
    from data_prep.flow import tvl1_jax  # pylint: disable=g-import-not-at-top
    return tvl1_jax.tvl1_flow
  from data_prep.flow import coarse2fine_jax  # pylint: disable=g-import-not-at-top
  return coarse2fine_jax.robust_flow


def _check_frames(frames0: np.ndarray, frames1: np.ndarray, batched: bool) -> None:
  rank = 3 if batched else 2
  layout = "[B, H, W]" if batched else "[H, W]"
  for name, frames in (("frames0", frames0), ("frames1", frames1)):
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != rank:
      dtype = getattr(frames, "dtype", type(frames).__name__)
      raise InputError(f"{name}: expected uint8 grey frames {layout}, got {dtype} "
                       f"of shape {np.shape(frames)}")
    if min(frames.shape[-2:]) < MIN_SIDE:
      raise InputError(f"{name}: frames of {frames.shape[-2:]} px are too small, "
                       f"need >= {MIN_SIDE} per side")
  if frames0.shape != frames1.shape:
    raise ValueError(f"frames0 {frames0.shape} and frames1 {frames1.shape} differ in shape")


def compute_flow(frame0: np.ndarray, frame1: np.ndarray, *, backend: str = "tvl1",
                 config: Any = None) -> np.ndarray:
  """Flow of one pair.

  Args:
    frame0: the first (onset) frame, uint8 grey `[H, W]`.
    frame1: the second (apex) frame, uint8 grey `[H, W]`.
    backend: one of `BACKENDS`.
    config: the backend's parameters (its type in `DEFAULT_CONFIGS`); the defaults when None.
  Returns:
    The flow `[H, W, 2]` float32.
  """
  config = _check_backend(backend, config)
  _check_frames(frame0, frame1, batched=False)
  if backend in _OPENCV_SOLVERS:
    return _OPENCV_SOLVERS[backend](frame0, frame1, config)
  return compute_flows(frame0[None], frame1[None], backend=backend, config=config)[0]


def compute_flows(frames0: np.ndarray, frames1: np.ndarray, *, backend: str = "tvl1",
                  config: Any = None, batch_size: int | None = None) -> np.ndarray:
  """Flow of a batch of pairs: the JAX backends solve each chunk of pairs in one vmapped call.

  Args:
    frames0: first frames, uint8 grey `[B, H, W]`.
    frames1: second frames, uint8 grey `[B, H, W]`.
    backend: one of `BACKENDS`; the OpenCV ones loop over pairs.
    config: the backend's parameters; the defaults when None.
    batch_size: pairs per JAX call (all at once when None); the last chunk is padded to the same
      size, so every chunk reuses one compilation.
  Returns:
    The flows `[B, H, W, 2]` float32.
  """
  config = _check_backend(backend, config)
  _check_frames(frames0, frames1, batched=True)
  if len(frames0) == 0:
    return np.zeros(frames0.shape + (2,), np.float32)
  if backend in _OPENCV_SOLVERS:
    solve = _OPENCV_SOLVERS[backend]
    return np.stack([solve(a, b, config) for a, b in zip(frames0, frames1)])
  count = len(frames0)
  batch_size = count if batch_size is None else batch_size
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  solve = _jax_solver(backend)
  chunks = []
  for start in range(0, count, batch_size):
    chunk0, chunk1 = frames0[start:start + batch_size], frames1[start:start + batch_size]
    real = len(chunk0)
    if real < batch_size and start > 0:  # pad with the first pair: same shape, same compilation
      chunk0 = np.concatenate([chunk0, np.repeat(frames0[:1], batch_size - real, axis=0)])
      chunk1 = np.concatenate([chunk1, np.repeat(frames1[:1], batch_size - real, axis=0)])
    chunks.append(np.asarray(solve(chunk0, chunk1, config=config))[:real])
  return np.concatenate(chunks)

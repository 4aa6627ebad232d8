"""Optical flow with OpenCV: Dual TV-L1 (contrib build), DIS and Farneback, one pair at a time.

All take uint8 grey frames `[H, W]` and return float32 `[H, W, 2]` = (u, v) with
`frame0(p) ~ frame1(p + (u, v))`. OpenCV's input-type traps are avoided by always
passing uint8: TV-L1 would rescale float input by 255, Farneback returns no flow on floats in
[0, 1], and DIS accepts only uint8.
"""

from __future__ import annotations

import cv2
import numpy as np

from data_prep.flow.configs import DISConfig
from data_prep.flow.configs import FarnebackConfig
from data_prep.flow.configs import TVL1Config

_DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


def _tvl1_solver(config: TVL1Config):
  if not hasattr(cv2, "optflow"):
    raise ImportError("TV-L1 needs OpenCV's contrib modules: install "
                      "opencv-contrib-python-headless (not opencv-python or "
                      "opencv-python-headless, which replace its cv2)")
  solver = cv2.optflow.DualTVL1OpticalFlow_create()
  solver.setTau(config.tau)
  solver.setLambda(config.lambda_)
  solver.setTheta(config.theta)
  solver.setScalesNumber(config.num_scales)
  solver.setScaleStep(config.scale_step)
  solver.setWarpingsNumber(config.warps)
  solver.setEpsilon(config.epsilon)
  solver.setInnerIterations(config.inner_iterations)
  solver.setOuterIterations(config.outer_iterations)
  solver.setMedianFiltering(config.median_size)
  return solver


def tvl1_flow(frame0: np.ndarray, frame1: np.ndarray,
              config: TVL1Config = TVL1Config()) -> np.ndarray:
  """Dual TV-L1 flow `[H, W, 2]` of OpenCV contrib (which fixes `subpixel_bins` at 32)."""
  return _tvl1_solver(config).calc(frame0, frame1, None)


def dis_flow(frame0: np.ndarray, frame1: np.ndarray, config: DISConfig = DISConfig()) -> np.ndarray:
  """Dense Inverse Search flow `[H, W, 2]`."""
  return cv2.DISOpticalFlow_create(_DIS_PRESETS[config.preset]).calc(frame0, frame1, None)


def farneback_flow(frame0: np.ndarray, frame1: np.ndarray,
                   config: FarnebackConfig = FarnebackConfig()) -> np.ndarray:
  """Farneback polynomial-expansion flow `[H, W, 2]`."""
  solver = cv2.FarnebackOpticalFlow_create(
      numLevels=config.num_levels, pyrScale=config.pyr_scale, winSize=config.win_size,
      numIters=config.num_iters, polyN=config.poly_n, polySigma=config.poly_sigma)
  return solver.calc(frame0, frame1, None)

"""Parameters of the flow backends: frozen (hashable) dataclasses, free of JAX and OpenCV imports.

Each backend of `data_prep.flow.BACKENDS` takes one of these; the JAX solvers compile once per
configuration and frame shape.
"""

from __future__ import annotations

import dataclasses

DIS_PRESETS = ("ultrafast", "fast", "medium")


@dataclasses.dataclass(frozen=True)
class TVL1Config:
  """Dual TV-L1 (`tvl1`, `jax_tvl1`): OpenCV's parameters and defaults, intensities on 0..255."""
  tau: float = 0.25  # dual time step
  lambda_: float = 0.15  # weight of the data term (smaller: smoother flow)
  theta: float = 0.3  # coupling between u and v
  num_scales: int = 5
  scale_step: float = 0.8
  warps: int = 5
  epsilon: float = 0.01  # stopping threshold per warp
  inner_iterations: int = 30
  outer_iterations: int = 10
  median_size: int = 5  # median filter of the flow per outer iteration; 1 disables it
  subpixel_bins: int = 32  # warp coordinates rounded to 1/bins px as cv2.remap does; 0 disables


@dataclasses.dataclass(frozen=True)
class DISConfig:
  """DIS preset: `ultrafast`, `fast` or `medium` (the most accurate of the three on the synthetic pairs)."""
  preset: str = "medium"

  def __post_init__(self):
    if self.preset not in DIS_PRESETS:
      raise ValueError(f"DISConfig.preset: unknown preset {self.preset!r}; "
                       f"expected one of {list(DIS_PRESETS)}")


@dataclasses.dataclass(frozen=True)
class FarnebackConfig:
  """Farneback parameters; the defaults are those of `cv2.FarnebackOpticalFlow_create()`."""
  num_levels: int = 5
  pyr_scale: float = 0.5
  win_size: int = 13
  num_iters: int = 10
  poly_n: int = 5
  poly_sigma: float = 1.1


PENALTIES = ("charbonnier", "lorentzian")


@dataclasses.dataclass(frozen=True)
class RobustFlowConfig:
  """Robust coarse-to-fine flow (`jax_c2f_*`, see `coarse2fine_jax`); intensities on [0, 1]."""
  penalty: str = "charbonnier"  # 'charbonnier' (sqrt(s^2 + eps^2)) or 'lorentzian'
  alpha: float = 0.012  # smoothness weight
  epsilon: float = 1e-3  # Charbonnier's epsilon, data and smoothness
  sigma_data: float = 1.5 / 255.0  # Lorentzian scale of the data residual
  sigma_smooth: float = 0.03  # Lorentzian scale of the flow derivatives (px per px)
  # One penalty per flow derivative (Black-Anandan) or one on |grad u|^2 + |grad v|^2 (Ce Liu).
  separable_smoothness: bool = False
  ratio: float = 0.75  # pyramid downsampling factor
  min_width: int = 20  # coarsest level side, px
  outer_iterations: int = 7  # warps at the finest level; level k runs outer + k
  inner_iterations: int = 1  # IRLS reweightings per warp
  sor_iterations: int = 30  # red-black sweeps at the finest level; level k runs sor + 3k
  omega: float = 1.8  # over-relaxation
  damping: float = 0.05  # added to the diagonal as damping * alpha (Tikhonov on the increment)
  gnc_blends: tuple[float, ...] = (0.0,)  # weight of the quadratic penalty per GNC stage
  median_size: int = 1  # median filter of the flow after every update; 1 disables it

  def __post_init__(self):
    if self.penalty not in PENALTIES:
      raise ValueError(f"RobustFlowConfig.penalty: unknown penalty {self.penalty!r}; "
                       f"expected one of {PENALTIES}")
    if not self.gnc_blends:
      raise ValueError("RobustFlowConfig.gnc_blends: needs at least one stage")


# Ce Liu's Coarse2Fine with the parameters of the pyflow demo.
CHARBONNIER = RobustFlowConfig()
# Sun, Roth and Black's `classic-l` (Black-Anandan) on [0, 1] intensities: sigma_data 1.5 grey
# levels, sigma_smooth 0.03, lambda 0.06, three GNC stages and a 5x5 median; gradient features kept.
LORENTZIAN = RobustFlowConfig(
    penalty="lorentzian", alpha=0.06, sigma_data=1.5 / 255.0, sigma_smooth=0.03,
    separable_smoothness=True, gnc_blends=(1.0, 0.5, 0.0), median_size=5)

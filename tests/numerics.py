"""Float32 comparisons that hold on any CPU: differences measured against the tensor's scale.

XLA picks kernels per instruction set, so float32 results differ in the last bits between CPUs;
an element-wise relative bound fails on elements near zero, an absolute one depends on the
tensor's magnitude. `benchmarks/float32_spread.py` measured the spread of model outputs under
other XLA CPU settings and one-ulp perturbations at about 2e-6 of each tensor's max.
"""

import numpy as np

FLOAT32_SCALE = 1e-5  # of the tensor's max magnitude: 5x the measured spread


def assert_close_to_scale(actual, expected, fraction: float = FLOAT32_SCALE, err_msg: str = "") -> None:
  """|actual - expected| <= fraction * max|expected| everywhere (shapes must match)."""
  actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
  assert actual.shape == expected.shape, f"{err_msg}: shapes {actual.shape} and {expected.shape}"
  scale = max(float(np.abs(expected).max(initial=0.0)), np.finfo(np.float32).tiny)
  error = float(np.abs(actual - expected).max(initial=0.0))
  assert error <= fraction * scale, f"{err_msg}: {error:.3g} > {fraction:.0e} of the scale {scale:.3g}"

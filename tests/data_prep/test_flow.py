"""Flow backends on synthetic pairs with known motion.

Every backend solves the same eight 128x128 pairs once (the JAX backends in vmapped chunks, which
also exercises the padding of the last chunk); the tests then check sign and axes, sub-pixel
translations, identity, sensor noise, the synthetic micro-expression pair and, for the JAX TV-L1,
agreement with OpenCV. Thresholds for the TV-L1 type and the Ce Liu port are the values measured on
a photographed face (scikit-image's astronaut) with some margin; elsewhere the values measured here
with margin.
"""

import dataclasses
import subprocess
import sys

import cv2
import numpy as np
import pytest

from data_prep import flow as flow_lib
from data_prep import strain
from data_prep.flow import configs
from data_prep.flow import jax_ops
from data_prep.flow import synthetic
from data_prep.flow import tvl1_jax

# `solve` computes each backend's flows once per module: keep the module on one xdist worker.
pytestmark = pytest.mark.xdist_group("flow")

SIZE = 128
BORDER = 8  # metrics ignore this ring, where the solvers leave border artefacts
SHIFTS = (0.25, 0.5, 1.0)
JAX_BATCH_SIZE = {"jax_tvl1": 3, "jax_c2f_charbonnier": 4, "jax_c2f_lorentzian": 4}

# Tolerances on the mean interior u of a translation: (at 0.25 px, at >= 0.5 px).
TRANSLATION_TOLERANCE = {
    "tvl1": (0.07, 0.02), "jax_tvl1": (0.07, 0.02),
    "jax_c2f_charbonnier": (0.07, 0.04), "jax_c2f_lorentzian": (0.07, 0.04),
    "dis": (0.07, 0.05), "farneback": (0.07, 0.05),
}
# Interior mean |w| between two noise realisations of one frame (sigma = 2 grey levels).
NOISE_LIMIT = {"tvl1": 0.03, "jax_tvl1": 0.03, "jax_c2f_charbonnier": 0.08,
               "jax_c2f_lorentzian": 0.08, "dis": 0.08, "farneback": 0.08}


@dataclasses.dataclass(frozen=True)
class PairLimits:
  """Micro-expression pair limits: EPE on moving pixels, EPE overall, strain correlation."""
  epe_moving: float
  epe_all: float
  strain_r: float
  noisy_epe_moving: float
  noisy_strain_r: float


TVL1_LIMITS = PairLimits(0.10, 0.02, 0.85, 0.13, 0.6)
C2F_LIMITS = PairLimits(0.09, 0.03, 0.75, 0.13, 0.5)
PAIR_LIMITS = {
    "tvl1": TVL1_LIMITS, "jax_tvl1": TVL1_LIMITS,
    "jax_c2f_charbonnier": C2F_LIMITS, "jax_c2f_lorentzian": C2F_LIMITS,
    "dis": PairLimits(0.20, 0.05, 0.5, 0.20, 0.35),
    "farneback": PairLimits(0.20, 0.05, 0.6, 0.20, 0.35),
}


def _noise_only_pair() -> synthetic.SyntheticPair:
  rng = np.random.default_rng(5)
  face = synthetic.face_image(SIZE, seed=3)
  frame0 = synthetic.to_uint8(face + rng.normal(0.0, 2.0 / 255.0, face.shape))
  frame1 = synthetic.to_uint8(face + rng.normal(0.0, 2.0 / 255.0, face.shape))
  return synthetic.SyntheticPair(frame0, frame1, np.zeros((SIZE, SIZE, 2), np.float32))


@pytest.fixture(scope="module")
def pairs() -> dict[str, synthetic.SyntheticPair]:
  pairs = {f"shift_x_{d}": synthetic.translated_pair(SIZE, d, 0.0) for d in SHIFTS}
  pairs["shift_y_1.0"] = synthetic.translated_pair(SIZE, 0.0, 1.0)
  expression = synthetic.micro_expression_pair(SIZE)
  pairs["identical"] = synthetic.SyntheticPair(expression.frame0, expression.frame0.copy(),
                                               np.zeros_like(expression.flow))
  pairs["noise_only"] = _noise_only_pair()
  pairs["expression"] = expression
  pairs["expression_noisy"] = synthetic.micro_expression_pair(SIZE, noise_grey_levels=2.0)
  return pairs


@pytest.fixture(scope="module")
def solve(pairs):
  """`solve(backend) -> {pair name: flow [H, W, 2]}`, each backend solved once for the module."""
  cache = {}

  def flows_of(backend):
    if backend not in cache:
      names = list(pairs)
      frames0 = np.stack([pairs[name].frame0 for name in names])
      frames1 = np.stack([pairs[name].frame1 for name in names])
      flows = flow_lib.compute_flows(frames0, frames1, backend=backend,
                                     batch_size=JAX_BATCH_SIZE.get(backend))
      cache[backend] = dict(zip(names, flows))
    return cache[backend]

  return flows_of


def _interior(field: np.ndarray) -> np.ndarray:
  return field[BORDER:-BORDER, BORDER:-BORDER]


def _end_point_errors(estimate: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
  """Mean EPE over moving pixels (|truth| > 0.1 px) and over all interior pixels."""
  error = _interior(np.linalg.norm(estimate - truth, axis=-1))
  moving = _interior(np.linalg.norm(truth, axis=-1)) > 0.1
  return float(error[moving].mean()), float(error.mean())


def _strain_correlation(estimate: np.ndarray, truth: np.ndarray) -> float:
  return float(np.corrcoef(_interior(strain.optical_strain(estimate)).ravel(),
                           _interior(strain.optical_strain(truth)).ravel())[0, 1])


def test_every_backend_has_a_default_config():
  assert set(flow_lib.DEFAULT_CONFIGS) == set(flow_lib.BACKENDS)


def test_synthetic_pair_matches_its_ground_truth(pairs):
  expression = pairs["expression"]
  peak = np.linalg.norm(expression.flow, axis=-1).max()
  assert peak == pytest.approx(1.504, abs=0.01)  # the canonical bumps' peak
  zero_flow_error, _ = _end_point_errors(np.zeros_like(expression.flow), expression.flow)
  assert 0.3 < zero_flow_error < 0.45  # zero flow's error on the photographed face: 0.379
  # Warping the second frame back with the true flow restores the first up to rounding.
  rows, cols = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
  frame0, frame1 = expression.frame0.astype(np.float32), expression.frame1.astype(np.float32)
  warped_back = cv2.remap(frame1, cols + expression.flow[..., 0], rows + expression.flow[..., 1],
                          cv2.INTER_CUBIC)
  moving = _interior(np.linalg.norm(expression.flow, axis=-1)) > 0.1
  residual = np.abs(_interior(warped_back - frame0))[moving].mean()
  unwarped = np.abs(_interior(frame1 - frame0))[moving].mean()
  assert residual < 1.0 < 3.0 < unwarped  # grey levels


@pytest.mark.parametrize("backend", flow_lib.BACKENDS)
def test_axis_and_sign(solve, backend):
  flows = solve(backend)
  mean_x = _interior(flows["shift_x_1.0"]).mean(axis=(0, 1))
  mean_y = _interior(flows["shift_y_1.0"]).mean(axis=(0, 1))
  np.testing.assert_allclose(mean_x, [1.0, 0.0], atol=0.05)
  np.testing.assert_allclose(mean_y, [0.0, 1.0], atol=0.05)


@pytest.mark.parametrize("backend", flow_lib.BACKENDS)
def test_sub_pixel_translations(solve, backend):
  flows = solve(backend)
  quarter_tolerance, tolerance = TRANSLATION_TOLERANCE[backend]
  for shift in SHIFTS:
    u, v = _interior(flows[f"shift_x_{shift}"]).mean(axis=(0, 1))
    assert abs(u - shift) < (quarter_tolerance if shift < 0.5 else tolerance), (shift, u)
    assert abs(v) < 0.01, (shift, v)


@pytest.mark.parametrize("backend", flow_lib.BACKENDS)
def test_identical_frames(solve, backend):
  flow = solve(backend)["identical"]
  if backend == "farneback":
    # OpenCV's Farneback moves the bottom rows even here (up to 1.25 px); not the interior.
    assert np.abs(_interior(flow)).max() < 0.01
  else:
    assert np.all(flow == 0.0)


@pytest.mark.parametrize("backend", flow_lib.BACKENDS)
def test_sensor_noise_alone(solve, backend):
  flow = solve(backend)["noise_only"]
  assert np.linalg.norm(_interior(flow), axis=-1).mean() < NOISE_LIMIT[backend]


@pytest.mark.parametrize("backend", flow_lib.BACKENDS)
def test_micro_expression_pair(solve, pairs, backend):
  limits = PAIR_LIMITS[backend]
  clean = solve(backend)["expression"]
  epe_moving, epe_all = _end_point_errors(clean, pairs["expression"].flow)
  assert epe_moving < limits.epe_moving
  assert epe_all < limits.epe_all
  assert _strain_correlation(clean, pairs["expression"].flow) > limits.strain_r
  noisy = solve(backend)["expression_noisy"]
  noisy_epe_moving, _ = _end_point_errors(noisy, pairs["expression_noisy"].flow)
  assert noisy_epe_moving < limits.noisy_epe_moving
  assert _strain_correlation(noisy, pairs["expression_noisy"].flow) > limits.noisy_strain_r


def test_jax_tvl1_matches_opencv(solve, pairs):
  jax_flows, opencv_flows = solve("jax_tvl1"), solve("tvl1")
  for name in pairs:
    difference = np.linalg.norm(_interior(jax_flows[name] - opencv_flows[name]), axis=-1)
    assert difference.mean() < 0.03, name


def test_lorentzian_and_charbonnier_are_different_solvers(solve):
  lorentzian = solve("jax_c2f_lorentzian")["expression_noisy"]
  difference = lorentzian - solve("jax_c2f_charbonnier")["expression_noisy"]
  assert np.abs(difference).mean() > 1e-3


def test_compute_flow_rejects_bad_input():
  frame = np.zeros((32, 32), np.uint8)
  with pytest.raises(ValueError, match="unknown flow backend 'pyflow'"):
    flow_lib.compute_flow(frame, frame, backend="pyflow")
  with pytest.raises(ValueError, match="frames0: expected uint8"):
    flow_lib.compute_flow(frame.astype(np.float32), frame)
  with pytest.raises(ValueError, match="differ in shape"):
    flow_lib.compute_flow(frame, np.zeros((32, 31), np.uint8))
  with pytest.raises(ValueError, match="too small"):
    flow_lib.compute_flow(frame[:8], frame[:8])
  with pytest.raises(TypeError, match="takes a TVL1Config"):
    flow_lib.compute_flow(frame, frame, backend="tvl1", config=configs.CHARBONNIER)
  with pytest.raises(ValueError, match="needs penalty 'charbonnier'"):
    flow_lib.compute_flow(frame, frame, backend="jax_c2f_charbonnier",
                          config=configs.LORENTZIAN)
  with pytest.raises(ValueError, match="batch_size"):
    flow_lib.compute_flows(frame[None], frame[None], backend="jax_tvl1", batch_size=0)
  with pytest.raises(ValueError, match="unknown penalty 'huber'"):
    configs.RobustFlowConfig(penalty="huber")


def test_opencv_backends_do_not_import_jax():
  # Build workers forked for the OpenCV backends must not inherit a started JAX runtime.
  code = ("import sys, numpy as np; from data_prep import flowmap; "
          "frame = np.zeros((32, 32), np.uint8); flowmap.compute_flow_map(frame, frame); "
          "print('jax' in sys.modules)")
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert result.stdout.strip() == "False"


def test_empty_batch():
  empty = np.zeros((0, 32, 40), np.uint8)
  for backend in ("tvl1", "jax_tvl1"):
    assert flow_lib.compute_flows(empty, empty, backend=backend).shape == (0, 32, 40, 2)


def test_tvl1_pyramid_follows_opencv_sizes():
  assert tvl1_jax.pyramid_shapes((128, 128), 5, 0.8) == [
      (128, 128), (102, 102), (82, 82), (66, 66), (53, 53)]
  # OpenCV stops adding scales once a side would drop below 16 px.
  assert tvl1_jax.pyramid_shapes((40, 200), 5, 0.8) == [
      (40, 200), (32, 160), (26, 128), (21, 102), (17, 82)]
  assert tvl1_jax.pyramid_shapes((24, 24), 5, 0.8) == [(24, 24), (19, 19)]


def test_median_filter_matches_opencv():
  field = np.random.default_rng(0).normal(size=(2, 23, 31)).astype(np.float32)
  filtered = np.asarray(jax_ops.median_filter(field, 5))
  for channel in range(2):
    np.testing.assert_array_equal(filtered[channel], cv2.medianBlur(field[channel], 5))


def test_selection_network_finds_the_median():
  network = jax_ops.selection_network(25, 12)
  rng = np.random.default_rng(1)
  for _ in range(200):
    wires = list(rng.permutation(25))
    for low, high in network:
      wires[low], wires[high] = min(wires[low], wires[high]), max(wires[low], wires[high])
    assert wires[12] == 12


def test_cubic_remap_matches_opencv():
  rng = np.random.default_rng(2)
  image = rng.uniform(0, 255, size=(20, 26)).astype(np.float32)
  map_x = rng.uniform(-3, 29, size=(20, 26)).astype(np.float32)  # some taps fall outside
  map_y = rng.uniform(-3, 23, size=(20, 26)).astype(np.float32)
  expected = cv2.remap(image, map_x, map_y, cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT)
  warped = np.asarray(jax_ops.remap_cubic(image[None], map_x, map_y))[0]
  np.testing.assert_allclose(warped, expected, atol=2e-3)


def test_linear_resize_matches_opencv():
  image = np.random.default_rng(3).uniform(size=(40, 30)).astype(np.float32)
  expected = cv2.resize(image, None, fx=0.8, fy=0.8)  # TV-L1's pyramid step
  rows = jax_ops.linear_resize_matrix(40, expected.shape[0], 0.8)
  cols = jax_ops.linear_resize_matrix(30, expected.shape[1], 0.8)
  np.testing.assert_allclose(np.asarray(jax_ops.apply_separable(image, rows, cols)), expected,
                             atol=1e-5)
  expected = cv2.resize(image, (45, 52))  # flow upsampling between scales
  rows, cols = jax_ops.linear_resize_matrix(40, 52), jax_ops.linear_resize_matrix(30, 45)
  np.testing.assert_allclose(np.asarray(jax_ops.apply_separable(image, rows, cols)), expected,
                             atol=1e-5)

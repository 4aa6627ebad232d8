"""Optical strain on analytic flow fields, border zeroing and the flow map of a sample."""

import numpy as np
import pytest

from data_prep import flowmap
from data_prep import strain
from data_prep.flow import synthetic

SHAPE = (40, 48)


def _field(u_of, v_of) -> np.ndarray:
  """Flow `[H, W, 2]` from functions of (x = column, y = row)."""
  y, x = np.mgrid[0:SHAPE[0], 0:SHAPE[1]].astype(np.float64)
  return np.stack([u_of(x, y), v_of(x, y)], axis=-1).astype(np.float32)


@pytest.mark.parametrize("a", [0.05, -0.2])
def test_stretch_along_x(a):
  result = strain.optical_strain(_field(lambda x, y: a * x, lambda x, y: 0 * x))
  np.testing.assert_allclose(result, abs(a), rtol=1e-5)  # every pixel, borders included


def test_stretch_along_y_uses_rows():
  result = strain.optical_strain(_field(lambda x, y: 0 * x, lambda x, y: 0.1 * y))
  np.testing.assert_allclose(result, 0.1, rtol=1e-5)


def test_pure_shear():
  b = 0.03
  result = strain.optical_strain(_field(lambda x, y: b * y, lambda x, y: b * x))
  np.testing.assert_allclose(result, np.sqrt(2.0) * b, rtol=1e-5)


def test_rigid_rotation_has_no_strain():
  omega = 0.02
  result = strain.optical_strain(_field(lambda x, y: -omega * y, lambda x, y: omega * x))
  np.testing.assert_allclose(result, 0.0, atol=1e-7)


def test_translation_has_no_strain():
  result = strain.optical_strain(_field(lambda x, y: 0 * x + 1.3, lambda x, y: 0 * x - 0.4))
  assert np.all(result == 0.0)


def test_shear_weight_and_axis_order():
  # u = c y alone: u_y = c, so strain = sqrt(1/2) c. A 1/4 weight would give c / 2, and swapped
  # np.gradient axes would read u_x = c and give c.
  c = 0.08
  result = strain.optical_strain(_field(lambda x, y: c * y, lambda x, y: 0 * x))
  np.testing.assert_allclose(result, np.sqrt(0.5) * c, rtol=1e-5)


def test_quadratic_field_matches_hand_derivatives_inside():
  flow = _field(lambda x, y: 0.01 * x * y, lambda x, y: 0.002 * x ** 2)
  y, x = 20, 30  # central differences are exact on quadratics inside the image
  u_x, u_y, v_x, v_y = 0.01 * y, 0.01 * x, 0.004 * x, 0.0
  expected = np.sqrt(u_x ** 2 + v_y ** 2 + 0.5 * (u_y + v_x) ** 2)
  assert strain.optical_strain(flow)[y, x] == pytest.approx(expected, rel=1e-5)


def test_sobel_is_exact_inside_on_linear_fields():
  flow = _field(lambda x, y: 0.04 * x + 0.01 * y, lambda x, y: -0.02 * y + 0.01 * x)
  central = strain.optical_strain(flow)
  sobel = strain.optical_strain(flow, method="sobel")
  np.testing.assert_allclose(sobel[1:-1, 1:-1], central[1:-1, 1:-1], rtol=1e-4)


def test_strain_rejects_bad_input():
  with pytest.raises(ValueError, match="unknown strain method 'forward'"):
    strain.optical_strain(np.zeros((8, 8, 2)), method="forward")
  with pytest.raises(ValueError, match=r"expected \[H, W, 2\]"):
    strain.optical_strain(np.zeros((8, 8, 3)))
  bad = np.zeros((8, 8, 2))
  bad[3, 3, 0] = np.nan
  with pytest.raises(ValueError, match="NaN"):
    strain.optical_strain(bad)


def test_zero_border():
  maps = np.ones((20, 24, 3), np.float32)
  zeroed = strain.zero_border(maps, 3)
  assert np.all(zeroed[:3] == 0) and np.all(zeroed[-3:] == 0)
  assert np.all(zeroed[:, :3] == 0) and np.all(zeroed[:, -3:] == 0)
  assert np.all(zeroed[3:-3, 3:-3] == 1)
  assert np.all(maps == 1)  # the input is left alone
  np.testing.assert_array_equal(strain.zero_border(maps, 0), maps)
  with pytest.raises(ValueError, match="border width 10"):
    strain.zero_border(maps, 10)


def test_flow_map_takes_strain_before_zeroing_the_ring():
  flow = _field(lambda x, y: 0.05 * x, lambda x, y: 0 * x)
  flow[:2] += 3.0  # a border artefact, as flow solvers leave one
  flow_map = flowmap.flow_map_from_flow(flow, border=4)
  assert flow_map.shape == SHAPE + (3,) and flow_map.dtype == np.float32
  assert np.all(flow_map[:4] == 0) and np.all(flow_map[:, -4:] == 0)
  # Inside, the strain is the field's own: neither the artefact nor the ring edge shows.
  np.testing.assert_allclose(flow_map[4:-4, 4:-4, 2], 0.05, rtol=1e-5)
  np.testing.assert_allclose(flow_map[4:-4, 4:-4, :2], flow[4:-4, 4:-4])


def test_compute_flow_map_accepts_grey_and_bgr():
  pair = synthetic.micro_expression_pair(64)
  grey = flowmap.compute_flow_map(pair.frame0, pair.frame1)
  bgr = flowmap.compute_flow_map(np.repeat(pair.frame0[..., None], 3, axis=-1),
                                 np.repeat(pair.frame1[..., None], 3, axis=-1))
  assert grey.shape == (64, 64, 3) and grey.dtype == np.float32
  np.testing.assert_array_equal(grey, bgr)
  assert np.abs(grey[..., :2]).max() > 0.3  # the bumps move
  assert np.all(grey[:8] == 0)


def test_compute_flow_maps_equals_one_at_a_time():
  pairs = [synthetic.micro_expression_pair(64, seed=seed) for seed in (0, 1)]
  batch = flowmap.compute_flow_maps(np.stack([p.frame0 for p in pairs]),
                                    np.stack([p.frame1 for p in pairs]), backend="dis",
                                    strain_method="sobel", border=4)
  for flow_map, pair in zip(batch, pairs):
    single = flowmap.compute_flow_map(pair.frame0, pair.frame1, backend="dis",
                                      strain_method="sobel", border=4)
    np.testing.assert_array_equal(flow_map, single)


def test_compute_flow_map_rejects_bad_frames():
  frame = np.zeros((32, 32), np.uint8)
  with pytest.raises(ValueError, match="onset: expected a uint8 frame"):
    flowmap.compute_flow_map(frame.astype(np.float32), frame)
  with pytest.raises(ValueError, match=r"apex: expected grey \[H, W\] or BGR"):
    flowmap.compute_flow_map(frame, np.zeros((32, 32, 4), np.uint8))
  with pytest.raises(ValueError, match="differ in size"):
    flowmap.compute_flow_map(frame, np.zeros((32, 30), np.uint8))
  with pytest.raises(ValueError, match="unknown flow backend"):
    flowmap.compute_flow_map(frame, frame, backend="deepflow")

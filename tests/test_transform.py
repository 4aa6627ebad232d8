"""The load-time transform: area resize, per-channel min-max, PNG round trip."""

import subprocess
import sys

import cv2
import numpy as np
import pytest

from data_prep import flowmap
from data_prep.flow import synthetic
from rcn_jax import transform


def _random_map(shape=(96, 80, 3), seed=0) -> np.ndarray:
  rng = np.random.default_rng(seed)
  return (rng.normal(size=shape) * np.array([1.5, 0.7, 0.1])).astype(np.float32)


@pytest.mark.parametrize("resolution", [20, 28, 60, 128, 300])
def test_output_range_and_shape(resolution):
  network_input = transform.to_network_input(_random_map(), resolution)
  assert network_input.shape == (resolution, resolution, 3)
  assert network_input.dtype == np.float32
  np.testing.assert_allclose(network_input.min(axis=(0, 1)), 0.0)
  np.testing.assert_allclose(network_input.max(axis=(0, 1)), 1.0)


def test_float16_maps_as_stored_in_the_dataset():
  stored = _random_map().astype(np.float16)
  np.testing.assert_allclose(transform.to_network_input(stored, 60),
                             transform.to_network_input(stored.astype(np.float32), 60))


def test_constant_channel_gives_zero_not_nan():
  flow_map = _random_map()
  flow_map[..., 1] = 2.5
  network_input = transform.to_network_input(flow_map, 40)
  assert np.all(network_input[..., 1] == 0.0)
  assert np.isfinite(network_input).all()


def test_min_max_is_per_channel():
  flow_map = _random_map()
  flow_map[..., 0] *= 100.0
  flow_map[..., 2] = flow_map[..., 2] * 0.01 + 0.5  # small variations on an offset still count
  network_input = transform.to_network_input(flow_map, 48)
  expected = transform.to_network_input(_random_map(), 48)
  np.testing.assert_allclose(network_input, expected, atol=1e-4)


def test_area_resize_averages_blocks():
  # A 2-px checkerboard halved: area averaging gives its mean, a bilinear resize would alias.
  board = (np.indices((60, 60)).sum(axis=0) % 2).astype(np.float32)
  flow_map = np.stack([board, 2.0 * board, board], axis=-1)
  resized = transform.resize_area(flow_map, 30)
  np.testing.assert_allclose(resized, np.broadcast_to([0.5, 1.0, 0.5], (30, 30, 3)), atol=1e-6)
  blocks = np.kron(np.arange(9, dtype=np.float32).reshape(3, 3), np.ones((20, 20), np.float32))
  resized = transform.resize_area(np.stack([blocks] * 3, axis=-1), 30)
  np.testing.assert_allclose(resized[::10, ::10, 0], np.arange(9).reshape(3, 3), atol=1e-5)


def test_png_round_trip_is_stable():
  network_input = transform.to_network_input(_random_map(), 60)
  image = transform.to_png(network_input)
  assert image.dtype == np.uint8
  assert np.abs(transform.from_png(image) - network_input).max() <= 0.5 / 255.0 + 1e-7
  np.testing.assert_array_equal(transform.to_png(transform.from_png(image)), image)
  ok, encoded = cv2.imencode(".png", image)
  assert ok
  np.testing.assert_array_equal(cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED), image)
  quantised = transform.to_network_input(_random_map(), 60, png_round_trip=True)
  np.testing.assert_array_equal(quantised, transform.from_png(image))
  with pytest.raises(ValueError, match="uint8"):
    transform.from_png(network_input)


def test_rejects_bad_maps_and_resolutions():
  for resolution in (19, 301):
    with pytest.raises(ValueError, match=f"resolution {resolution} outside"):
      transform.to_network_input(_random_map(), resolution)
  with pytest.raises(ValueError, match=r"expected \[H, W, 3\]"):
    transform.to_network_input(np.zeros((30, 30, 2), np.float32), 28)
  bad = _random_map()
  bad[5, 5, 2] = np.inf
  with pytest.raises(ValueError, match="NaN or infinite"):
    transform.to_network_input(bad, 28)


def test_loader_transform_does_not_need_data_prep():
  code = ("import sys, rcn_jax.transform; "
          "print(any(m.split('.')[0] == 'data_prep' for m in sys.modules))")
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert result.stdout.strip() == "False"


def _channel_correlations(estimate: np.ndarray, truth: np.ndarray) -> np.ndarray:
  return np.array([np.corrcoef(estimate[..., c].ravel(), truth[..., c].ravel())[0, 1]
                   for c in range(3)])


def test_border_zeroing_and_area_resize_keep_the_strain_channel():
  # The OpenCV TV-L1 map of the canonical pair, border zeroed before min-max and resized by area,
  # keeps its strain channel (r > 0.9 against the true map at 60x60; 0.5 without border handling).
  clean = synthetic.micro_expression_pair(128)
  truth = transform.to_network_input(flowmap.flow_map_from_flow(clean.flow), 60)
  estimate = transform.to_network_input(flowmap.compute_flow_map(clean.frame0, clean.frame1), 60)
  assert _channel_correlations(estimate, truth)[2] > 0.9
  # With sensor noise the usual recipe (no border handling, bilinear resize) loses much more of it.
  noisy = synthetic.micro_expression_pair(128, noise_grey_levels=2.0)
  truth = transform.to_network_input(flowmap.flow_map_from_flow(noisy.flow), 60)
  estimate = transform.to_network_input(flowmap.compute_flow_map(noisy.frame0, noisy.frame1), 60)
  raw_truth = flowmap.flow_map_from_flow(noisy.flow, border=0)
  raw_estimate = flowmap.compute_flow_map(noisy.frame0, noisy.frame1, border=0)
  usual_truth = transform.normalise_min_max(cv2.resize(raw_truth, (60, 60)))
  usual_estimate = transform.normalise_min_max(cv2.resize(raw_estimate, (60, 60)))
  recommended_r = _channel_correlations(estimate, truth)
  usual_r = _channel_correlations(usual_estimate, usual_truth)
  assert recommended_r[2] > 0.8
  assert recommended_r[2] > usual_r[2] + 0.1

"""data_prep.inference: frames read and sized as a build reads them, pairs to network inputs, clips."""

import subprocess
import sys

import cv2
import numpy as np
import pytest

from data_prep import inference
from data_prep.flowmap import compute_flow_map
from rcn_jax import errors, sample_list, transform


def test_frame_size_follows_the_build():
  assert inference.frame_size("auto", "megc2019") == (220, 200)
  assert inference.frame_size("auto", "synthetic") is None
  assert inference.frame_size("64x48", "synthetic") == (64, 48)
  assert inference.frame_size("none", "megc2019") is None
  with pytest.raises(ValueError, match="at least 16 px per side"):
    inference.frame_size("12x48", "synthetic")


def test_frames_are_read_grey_and_resized(tmp_path):
  colour = np.zeros((40, 30, 3), np.uint8)
  colour[..., 2] = 200  # red in BGR
  path = tmp_path / "frame.png"
  cv2.imwrite(str(path), colour)
  grey = inference.read_frame(path)
  assert grey.shape == (40, 30) and grey.dtype == np.uint8
  assert grey[0, 0] == cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY)[0, 0]
  assert inference.read_frame(path, data_name="megc2019", size=(20, 16)).shape == (20, 16)
  with pytest.raises(errors.MissingInput, match="gone.png: frame image not found"):
    inference.read_frame(tmp_path / "gone.png")


def test_a_pair_becomes_the_network_input_of_its_stored_flow_map():
  listed = sample_list.read_official_list(("smic",))[0]
  onset, apex = inference.synthetic_frames(listed)
  assert onset.shape == apex.shape and onset.dtype == np.uint8 and not np.array_equal(onset, apex)
  np.testing.assert_array_equal(
      inference.synthetic_apex_frame(listed.dataset, listed.subject, listed.sample, listed.label), apex)
  network_input = inference.network_input(onset, apex, backend="dis", resolution=24)
  assert network_input.shape == (24, 24, 3) and network_input.dtype == np.float32
  np.testing.assert_allclose(network_input.min(axis=(0, 1)), 0.0)
  np.testing.assert_allclose(network_input.max(axis=(0, 1)), 1.0)
  # The loader's transform of the map as the datasets store it (float16).
  stored = compute_flow_map(onset, apex, backend="dis").astype(np.float16).astype(np.float32)
  np.testing.assert_array_equal(network_input, transform.to_network_input(stored, 24))
  # Magnification changes the apex, so the flow the network sees.
  magnified = inference.network_input(onset, apex, backend="dis", resolution=24,
                                      magnification=inference.MagnificationConfig(alpha=10.0, levels=3).to_json())
  assert not np.allclose(magnified, network_input)


def test_clips_need_a_detector_and_two_frames(tmp_path):
  assert "annotated" not in inference.APEX_DETECTORS and "xia_std" in inference.APEX_DETECTORS
  with pytest.raises(errors.UserError, match="--apex_method='annotated'"):
    inference.clip_pair(tmp_path, apex_method="annotated")
  cv2.imwrite(str(tmp_path / "img1.png"), np.zeros((20, 20), np.uint8))
  with pytest.raises(errors.UserError, match="a clip needs at least 2 frames, found 1"):
    inference.clip_pair(tmp_path)


def test_inference_needs_neither_jax_nor_the_dataset_builders():
  code = ("import sys, data_prep.inference; "
          "print(sorted({m.split('.')[0] for m in sys.modules} & {'jax', 'tensorflow', 'tensorflow_datasets'}))")
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert result.stdout.strip() == "[]"

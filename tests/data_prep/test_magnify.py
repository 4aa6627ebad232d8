"""Linear Eulerian magnification: identity at alpha 0, (1 + alpha) x motion, temporal band, batching, builds."""

import json
import types

import numpy as np
import pytest

from data_prep import InputError, magnify, samples

WIDTH, HEIGHT, WAVELENGTH = 128, 32, 32.0
COLUMNS = np.arange(WIDTH)


def grating(shift: float, contrast: float = 0.25) -> np.ndarray:
  """A vertical sine grating (wavelength 32 px) moved right by `shift` px, values around 0.5."""
  row = 0.5 + contrast * np.sin(2 * np.pi * (COLUMNS - shift) / WAVELENGTH)
  return np.tile(row, (HEIGHT, 1)).astype(np.float32)


def measured_shift(image: np.ndarray) -> float:
  """The grating's displacement, from the phase of a least-squares sine fit of its middle row."""
  angle = 2 * np.pi * COLUMNS / WAVELENGTH
  design = np.stack([np.sin(angle), np.cos(angle), np.ones(WIDTH)], axis=1)
  sine, cosine, _ = np.linalg.lstsq(design, image[HEIGHT // 2].astype(np.float64), rcond=None)[0]
  return float(-np.arctan2(cosine, sine) * WAVELENGTH / (2 * np.pi))


def test_alpha_zero_returns_the_frames():
  rng = np.random.default_rng(0)
  clips = rng.integers(0, 256, (2, 3, 20, 24), dtype=np.uint8)
  out = magnify.magnify_clips(clips, magnify.MagnificationConfig(alpha=0.0, levels=2))
  assert out.dtype == np.uint8
  np.testing.assert_array_equal(out, clips)


def test_pyramid_collapses_back_to_the_frames():
  import jax

  def round_trip(frames):
    pyramid = magnify.laplacian_pyramid(frames, 3)
    return pyramid, magnify.collapse_pyramid(pyramid)

  frames = np.random.default_rng(1).random((2, 37, 29, 1)).astype(np.float32)
  pyramid, collapsed = jax.jit(round_trip)(frames)
  assert [tuple(level.shape[1:3]) for level in pyramid] == [(37, 29), (19, 15), (10, 8), (5, 4)]
  np.testing.assert_allclose(np.asarray(collapsed), frames, atol=1e-5)


def test_small_motion_is_magnified_about_one_plus_alpha_times_and_batching_changes_nothing():
  config = magnify.MagnificationConfig(alpha=4.0, levels=5)
  assert config.level_gains() == (0.25, 1.5, 4.0, 4.0, 4.0)  # wavelengths 4, 8 px are attenuated
  shifts = (0.1, -0.06)
  onsets = np.stack([grating(0.0)] * 2)
  apexes = np.stack([grating(s) for s in shifts])
  batched = magnify.magnify_pairs(onsets, apexes, config)
  for index, shift in enumerate(shifts):
    magnified = measured_shift(batched[index]) - measured_shift(onsets[index])
    assert abs(measured_shift(apexes[index]) - shift) < 1e-4
    # First-order Eulerian magnification: (1 + alpha) shift, less the share of the grating in the
    # unamplified low-pass residual.
    assert 0.8 * 5 * shift * np.sign(shift) < magnified * np.sign(shift) < 1.02 * 5 * shift * np.sign(shift)
    alone = magnify.magnify_pairs(onsets[index:index + 1], apexes[index:index + 1], config)[0]
    np.testing.assert_allclose(alone, batched[index], atol=1e-5)
  # The onset frame is the reference: it comes back unchanged.
  clip = magnify.magnify_clips(np.stack([onsets, apexes], axis=1), config)
  np.testing.assert_allclose(clip[:, 0], onsets, atol=1e-5)


def test_ideal_filter_amplifies_only_the_band():
  fps, frames, alpha = 32.0, 32, 3.0
  config = magnify.MagnificationConfig(alpha=alpha, levels=5, temporal_filter="ideal", low_hz=2.0,
                                       high_hz=6.0, fps=fps)
  times = np.arange(frames) / fps
  base = grating(0.0) - 0.5

  def clip(frequency):
    modulation = 1.0 + 0.05 * np.sin(2 * np.pi * frequency * times)
    return 0.5 + modulation[:, None, None] * base[None]

  for frequency, gain in ((4.0, 1.0 + alpha), (12.0, 1.0)):
    original = clip(frequency)
    out = magnify.magnify_clips(original[None], config)[0]
    # The grating's contrast over time: its oscillation grows by the band's gain.
    contrast_in = original[:, HEIGHT // 2].std(axis=1)
    contrast_out = out[:, HEIGHT // 2].std(axis=1)
    ratio = np.ptp(contrast_out) / np.ptp(contrast_in)
    assert 0.8 * gain < ratio < 1.05 * gain, (frequency, ratio)
  static = np.repeat(grating(0.0)[None], frames, axis=0)
  np.testing.assert_allclose(magnify.magnify_clips(static[None], config)[0], static, atol=1e-5)


def test_magnified_flow_map_moves_further():
  rng = np.random.default_rng(3)
  texture = rng.random((72, 72)).astype(np.float32)
  import cv2
  texture = cv2.GaussianBlur(texture, (0, 0), 3.0)
  texture = (texture - texture.min()) / np.ptp(texture)
  shifted = cv2.warpAffine(texture, np.float32([[1, 0, 0.3], [0, 1, 0]]), (72, 72), borderMode=cv2.BORDER_REFLECT)
  onset, apex = (np.round(255 * t).astype(np.uint8) for t in (texture, shifted))
  config = magnify.MagnificationConfig(alpha=4.0, levels=3, cutoff_wavelength=8.0)
  plain = magnify.MagnifiedFlowMap(magnify.MagnificationConfig(alpha=0.0, levels=3), "farneback")(onset, apex)
  magnified = magnify.MagnifiedFlowMap(config, "farneback")(onset, apex)
  centre = (slice(16, 56), slice(16, 56), 0)
  assert plain[centre].mean() == pytest.approx(0.3, abs=0.1)
  assert magnified[centre].mean() > 2.5 * plain[centre].mean()


def test_bad_input_and_settings_are_named():
  with pytest.raises(ValueError, match="alpha=-1"):
    magnify.MagnificationConfig(alpha=-1)
  with pytest.raises(ValueError, match="temporal_filter='iir'"):
    magnify.MagnificationConfig(temporal_filter="iir")
  with pytest.raises(ValueError, match=r"band \[5.0, 1.0\] Hz"):
    magnify.MagnificationConfig(temporal_filter="ideal", low_hz=5.0, high_hz=1.0)
  config = magnify.MagnificationConfig(levels=2)
  with pytest.raises(InputError, match="expected clips"):
    magnify.magnify_clips(np.zeros((4, 4), np.uint8), config)
  nan = np.zeros((1, 2, 16, 16), np.float32)
  nan[0, 1, 3, 3] = np.nan
  with pytest.raises(InputError, match="finite"):
    magnify.magnify_clips(nan, config)
  with pytest.raises(InputError, match="levels=6 too many"):
    magnify.magnify_clips(np.zeros((1, 2, 16, 16), np.uint8), magnify.MagnificationConfig(levels=6))
  with pytest.raises(InputError, match="differ in shape"):
    magnify.magnify_pairs(np.zeros((1, 8, 8)), np.zeros((1, 8, 9)), config)
  with pytest.raises(InputError, match="temporal_filter='onset'"):
    magnify.magnify_pairs(np.zeros((1, 8, 8)), np.zeros((1, 8, 8)),
                          magnify.MagnificationConfig(temporal_filter="ideal"))


def test_magnified_synthetic_build_holds_the_magnified_maps(tmp_path):
  from data_prep.flowmap import to_grey
  from data_prep.synthetic import generate
  from rcn_jax import sample_list
  import tensorflow_datasets as tfds

  listed = sample_list.read_official_list(("smic",))[:2]
  config = magnify.MagnificationConfig(alpha=8.0, levels=3)
  folder = magnify.build_magnified_synthetic(tmp_path, config, backend="dis", listed=listed)
  source = tfds.builder_from_directory(str(folder)).as_data_source("train")
  assert len(source) == 2
  record = source[1]
  assert record["sample"].decode() == listed[1].sample
  sample = generate.generate_sample(generate.SyntheticConfig(), listed[1])
  onset, apex = to_grey(sample.onset, "onset"), to_grey(sample.apex, "apex")
  expected = magnify.MagnifiedFlowMap(config, "dis")(onset, apex).astype(np.float16)
  np.testing.assert_array_equal(record["flow"], expected)
  plain = magnify.MagnifiedFlowMap(magnify.MagnificationConfig(alpha=0.0, levels=3), "dis")(onset, apex)
  assert np.abs(record["flow"][..., :2].astype(np.float32)).mean() > 1.5 * np.abs(plain[..., :2]).mean()
  marker = json.loads((tmp_path / magnify.MAGNIFICATION_FILE).read_text())
  assert marker["magnification"]["alpha"] == 8.0 and marker["backend"] == "dis"
  # Built once: the same request returns the folder, another magnification is refused.
  assert magnify.build_magnified_synthetic(tmp_path, config, backend="dis", listed=listed) == folder
  with pytest.raises(InputError, match="holds a dataset made with"):
    magnify.build_magnified_synthetic(tmp_path, magnify.MagnificationConfig(alpha=2.0, levels=3),
                                      backend="dis", listed=listed)


def test_cli_runs_the_build_with_a_magnified_flow_cached_apart(tmp_path, monkeypatch, capsys):
  from data_prep import build
  calls = []
  monkeypatch.setattr(build, "main", lambda argv, flow_fn=None, flow_variant="": calls.append(
      (argv, flow_fn, flow_variant)) or 0)
  out = tmp_path / "mm"
  assert magnify.main(["--alpha=12", "--", "--smic=/data/smic", f"--out={out}", "--backend=dis"]) == 0
  argv, flow_fn, flow_variant = calls[0]
  assert argv == ["--smic=/data/smic", f"--out={out}", "--backend=dis"]
  assert flow_fn == magnify.MagnifiedFlowMap(magnify.MagnificationConfig(alpha=12.0), "dis")
  assert json.loads(flow_variant)["magnification"]["alpha"] == 12.0
  assert json.loads((out / magnify.MAGNIFICATION_FILE).read_text())["magnification"]["alpha"] == 12.0
  # Maps made with another alpha (or none) have other cache files, whatever the cache folder.
  sample = types.SimpleNamespace(dataset="smic", subject="s01", sample="s01_po_01", clip_dir="/data/smic/s01",
                                 annotation=types.SimpleNamespace(onset=1, apex=5, offset=9))
  paths = {variant: samples.cache_path(tmp_path, sample, samples.SampleSettings(backend="dis", flow_variant=variant))
           for variant in ("", flow_variant, json.dumps({"magnification": {"alpha": 20.0}}))}
  assert len(set(paths.values())) == 3
  assert magnify.main(["--alpha=-2", "--", f"--out={out}"]) == 2
  assert "alpha=-2" in capsys.readouterr().err
  assert magnify.main(["--alpha=2", "--", "--smic=/data/smic"]) == 2
  assert "--out folder of its own" in capsys.readouterr().err

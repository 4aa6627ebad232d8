"""Apex location: annotated apex against the frames present, and the detectors."""

import math
from pathlib import Path

import numpy as np
import pytest

from data_prep import InputError
from data_prep import apex
from data_prep.annotations import Annotation
from data_prep.frames import ClipFrames


def _frames(first: int, last: int) -> ClipFrames:
  numbers = tuple(range(first, last + 1))
  return ClipFrames(Path("clips/sub01/EP01"), numbers, tuple(Path(f"img{n}.jpg") for n in numbers))


def _annotation(onset, apex_frame, offset):
  return Annotation("casme2", "sub01", "EP01", "disgust", onset, apex_frame, offset,
                    "coding.xlsx row 9")


def _clip(differences) -> np.ndarray:
  """Frames `[K, 12, 10]`: frame k differs from frame 0 by noise of std `differences[k]`."""
  rng = np.random.default_rng(0)
  base = np.full((12, 10), 120.0)
  pattern = rng.standard_normal((12, 10))
  pattern /= pattern.std()
  return np.stack([np.clip(base + d * pattern, 0, 255) for d in differences]).astype(np.uint8)


def test_annotated_apex_inside_the_clip():
  frames = _frames(46, 86)
  segment = apex.resolve_segment(frames, _annotation(46, 59, 86))
  assert (segment.onset, segment.offset, segment.notes) == (0, 40, ())
  position, notes = apex.annotated_apex(frames, _annotation(46, 59, 86), segment)
  assert frames.numbers[position] == 59 and notes == ()


def test_annotated_apex_clamped_to_the_frames_present():
  # CASME II sub12/EP09_06: annotated 66/111/111 but the folder ends at 106.
  frames = _frames(66, 106)
  annotation = _annotation(66, 111, 111)
  segment = apex.resolve_segment(frames, annotation)
  assert segment.notes == ("offset 111 clamped to the last frame present, 106",)
  position, notes = apex.annotated_apex(frames, annotation, segment)
  assert frames.numbers[position] == 106
  assert notes == ("apex 111 moved to frame 106 (frames present 66..106)",)


def test_annotation_outside_the_clip_is_an_error():
  # CASME II sub12/EP09_02: annotated 16..101 but the folder holds 161..206.
  with pytest.raises(InputError, match=r"coding.xlsx row 9: onset..offset 16..101 lies outside "
                     r"the frames present 161..206"):
    apex.resolve_segment(_frames(161, 206), _annotation(16, 59, 101))


@pytest.mark.parametrize("onset, apex_frame, offset, message", [
    (1071, 1143, 1134, r"apex 1143 is outside onset..offset 1071..1134"),  # SAMM 028_4_1
    (4896, 1930, 4970, r"apex 1930 is outside onset..offset 4896..4970"),  # SAMM 032_3_1
    (1071, None, 1134, r"no apex annotated"),  # CASME II's `/`
    (1071, 1071, 1134, r"apex 1071 falls on the onset frame"),  # CASME II sub05/EP09_05f
])
def test_unusable_annotated_apex(onset, apex_frame, offset, message):
  frames = _frames(onset, offset)
  annotation = _annotation(onset, apex_frame, offset)
  with pytest.raises(InputError, match=f"coding.xlsx row 9: {message}"):
    apex.annotated_apex(frames, annotation, apex.resolve_segment(frames, annotation))


def test_segment_without_annotated_frames_is_the_whole_folder():
  frames = _frames(559740, 559775)
  segment = apex.resolve_segment(frames, _annotation(None, None, None))
  assert (segment.onset, segment.offset) == (0, 35)


def test_xia_std_picks_the_most_different_frame():
  clip = _clip([0, 2, 5, 9, 7, 9, 3])
  scores = apex.xia_std_scores(clip)
  assert scores[0] == 0 and np.argmax(scores) == 3
  assert apex.xia_std_apex(clip) == 3  # the first of two maxima
  assert apex.xia_std_apex(_clip([0, 0, 0, 0, 0])) == 2  # nothing moves: the middle frame


def test_xia_std_uses_the_sample_std():
  clip = np.zeros((2, 1, 2), np.uint8)
  clip[1, 0] = (0, 2)
  assert apex.xia_std_scores(clip)[1] == pytest.approx(math.sqrt(2))  # N-1 normalised


def test_strcn_window_and_its_index_quirk():
  count = 20  # window: frames floor(0.2K)..ceil(0.7K) = 4..14 (1-based), positions 3..13
  differences = [0] * count
  differences[9] = 20  # the most changed frame, inside the window
  differences[17] = 40  # larger, but outside the window
  clip = _clip(differences)
  assert apex.strcn_apex(clip) == 9
  # The released script adds the 1-based position in the window (9 - 3 + 1) to the onset.
  assert apex.strcn_apex(clip, index_quirk=True) == 7
  assert apex.detect_apex("xia_std", clip) == 17


def test_middle_and_detect_apex_dispatch():
  assert apex.middle_position(7) == 3 and apex.middle_position(36) == 17
  assert apex.detect_apex("middle", _clip([0] * 9)) == 4
  with pytest.raises(InputError, match="unknown apex method 'peak'"):
    apex.detect_apex("peak", _clip([0, 1]))
  with pytest.raises(InputError, match="max_flow needs a flow function"):
    apex.detect_apex("max_flow", _clip([0, 1]))


def test_max_flow_uses_the_flow_function():
  calls = []

  def flow_fn(onset, frame):
    calls.append(frame)
    magnitude = float(np.abs(frame.astype(float) - onset).mean())
    return np.stack([np.full(onset.shape, magnitude), np.zeros(onset.shape),
                     np.zeros(onset.shape)], axis=-1)

  clip = _clip([0, 1, 6, 3, 2])
  assert apex.detect_apex("max_flow", clip, flow_fn=flow_fn) == 2
  assert len(calls) == 4  # every frame after the onset


def _plan(onset, apex_frame, offset, first, last, **settings):
  from data_prep.composite import CompositeSample
  from data_prep.samples import SampleSettings, plan_apex

  sample = CompositeSample("casme2", "sub12", "EP09_02", 0, Path("clips/sub12/EP09_02"),
                           _annotation(onset, apex_frame, offset))
  return plan_apex(_frames(first, last), sample, SampleSettings(backend="tvl1", **settings))


def test_plan_uses_the_fallback_only_where_the_annotation_is_unusable():
  plan = _plan(66, 70, 106, 66, 106, apex_fallback="xia_std")
  assert (plan.method, plan.position, plan.problem) == ("annotated", 4, None)
  plan = _plan(66, 120, 106, 66, 106, apex_fallback="xia_std")  # apex after the offset
  assert (plan.method, plan.position) == ("xia_std", None)
  assert plan.problem.startswith("annotated apex unusable (coding.xlsx row 9: apex 120")
  # CASME II sub12/EP09_02: annotated 16..101, folder 161..206: the whole folder is searched.
  plan = _plan(16, 59, 101, 161, 206, apex_fallback="middle")
  assert (plan.method, plan.segment.onset, plan.segment.offset) == ("middle", 0, 45)
  assert "whole clip searched" in plan.problem
  with pytest.raises(InputError, match="lies outside the frames present 161..206"):
    _plan(16, 59, 101, 161, 206)
  plan = _plan(16, 59, 101, 161, 206, apex="xia_std")  # the chosen detector, on the whole folder
  assert (plan.method, plan.segment.offset) == ("xia_std", 45)
  plan = _plan(66, 70, 106, 66, 106, apex="xia_std")  # a detector ignores the annotated apex
  assert (plan.method, plan.position, plan.problem) == ("xia_std", None, None)

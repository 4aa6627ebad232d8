"""Clip folders (natural frame order, layouts) and the face crop."""

from pathlib import Path

import cv2
import numpy as np
import pytest
from fixtures import images

from data_prep import InputError
from data_prep import face
from data_prep.frames import (find_layout_root, frame_number, index_clips, list_frames,
                              natural_key, read_gray)


def _touch(directory: Path, names):
  directory.mkdir(parents=True, exist_ok=True)
  for name in names:
    (directory / name).touch()


def test_natural_order():
  names = ["img10.jpg", "img9.jpg", "img100.jpg", "img46.jpg"]
  assert sorted(names, key=natural_key) == ["img9.jpg", "img10.jpg", "img46.jpg", "img100.jpg"]
  assert sorted(names) != sorted(names, key=natural_key)  # plain string order is wrong


@pytest.mark.parametrize("name, number", [
    ("img46.jpg", 46), ("reg_img100.jpg", 100), ("reg_image036237.bmp", 36237),
    ("006_05562.jpg", 5562), ("009_3577.jpg", 3577), ("image17581039.jpg", 17581039)])
def test_frame_number_of_every_layout(name, number):
  assert frame_number(Path(name)) == number


def test_list_frames_sorts_by_number_and_ignores_other_files(tmp_path):
  _touch(tmp_path, ["reg_img99.jpg", "reg_img101.jpg", "reg_img100.jpg", "reg_img98.jpg",
                    "Thumbs.db", "notes.txt"])
  frames = list_frames(tmp_path)
  assert frames.numbers == (98, 99, 100, 101)
  assert [p.name for p in frames.paths][:2] == ["reg_img98.jpg", "reg_img99.jpg"]
  assert (frames.first, frames.last) == (98, 101)
  assert frames.position(100) == 2 and frames.position(500) == 3


def test_list_frames_errors(tmp_path):
  with pytest.raises(InputError, match="missing: clip folder not found"):
    list_frames(tmp_path / "missing")
  _touch(tmp_path / "empty", ["readme.txt"])
  with pytest.raises(InputError, match="empty: clip folder holds no frame images"):
    list_frames(tmp_path / "empty")
  _touch(tmp_path / "twice", ["img9.jpg", "img09.jpg"])
  with pytest.raises(InputError, match="twice: img09.jpg and img9.jpg are both frame 9"):
    list_frames(tmp_path / "twice")
  _touch(tmp_path / "unnumbered", ["onset.jpg"])
  with pytest.raises(InputError, match="onset.jpg: frame file name has no frame number"):
    list_frames(tmp_path / "unnumbered")


def test_read_gray(tmp_path):
  cv2.imwrite(str(tmp_path / "img1.png"), np.full((6, 5, 3), (10, 20, 30), np.uint8))
  gray = read_gray(tmp_path / "img1.png")
  assert gray.shape == (6, 5) and gray.dtype == np.uint8
  (tmp_path / "img2.jpg").write_bytes(b"not a jpeg")
  with pytest.raises(InputError, match="img2.jpg: cannot read the image"):
    read_gray(tmp_path / "img2.jpg")


def test_layout_root_found_below_the_given_folder(tmp_path):
  _touch(tmp_path / "CASME2" / "Cropped" / "sub01" / "EP02_01f", ["reg_img46.jpg"])
  _touch(tmp_path / "CASME2" / "Cropped" / "sub17" / "EP13_09", ["reg_img6.jpg"])
  assert find_layout_root("casme2", tmp_path / "CASME2") == tmp_path / "CASME2" / "Cropped"
  clips = index_clips("casme2", tmp_path)
  assert set(clips) == {("sub01", "EP02_01f"), ("sub17", "EP13_09")}
  _touch(tmp_path / "CASME2" / "CASME2_RAW_selected" / "sub01" / "EP02_01f", ["img46.jpg"])
  with pytest.raises(InputError, match="several casme2 layouts found .*CASME2_RAW_selected.*Cropped"):
    find_layout_root("casme2", tmp_path / "CASME2")


def test_samm_layout(tmp_path):
  _touch(tmp_path / "SAMM" / "006" / "006_1_2", ["006_05562.jpg"])
  _touch(tmp_path / "SAMM" / "037" / "037_7_4", ["037_01000.jpg"])
  assert set(index_clips("samm", tmp_path)) == {("006", "006_1_2"), ("037", "037_7_4")}
  with pytest.raises(InputError, match="no samm subject folders"):
    index_clips("samm", tmp_path / "SAMM" / "006" / "006_1_2")


def test_face_detected_on_a_drawn_face():
  frame = images.face_frame(rows=650, cols=960, centre=(330, 470), scale=1.6)
  detection = face.detect_face(frame, face.load_face_detector(), "onset.jpg")
  assert detection.top < 330 < detection.bottom and detection.left < 470 < detection.right
  box = face.face_box(detection, frame.shape, margin=0.15, aspect=220 / 200)
  assert box.top <= detection.top and box.bottom >= detection.bottom
  assert abs((box.bottom - box.top) / (box.right - box.left) - 1.1) < 0.02
  crop = face.resize(box.crop(frame), (220, 200))
  assert crop.shape == (220, 200)


def test_no_face_is_reported_with_the_file():
  blank = np.full((480, 640), 128, np.uint8)
  with pytest.raises(face.FaceNotFound, match="sub01/EP02_01f/img46.jpg: no face found"):
    face.detect_face(blank, face.load_face_detector(), "sub01/EP02_01f/img46.jpg")


def test_face_box_stays_inside_the_image():
  detection = face.Box(top=5, bottom=105, left=590, right=690)
  box = face.face_box(detection, (480, 700), margin=0.2, aspect=1.1)
  assert box.top == 0 and box.right == 700
  assert box.bottom - box.top == round(140 * 1.1) and box.right - box.left == 140


def test_resize_shrinks_by_area_and_keeps_size_none():
  image = np.zeros((40, 40), np.uint8)
  image[::2] = 255  # stripes: area averaging gives a flat grey, sampling would alias
  small = face.resize(image, (20, 20))
  assert small.shape == (20, 20) and np.all(np.abs(small.astype(int) - 128) <= 1)
  assert face.resize(image, None) is image
  assert face.resize(image, (50, 45)).shape == (50, 45)

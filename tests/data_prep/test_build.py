"""The build: per-sample maps (crop, apex, flow), the cache, worker processes, the TFDS dataset and
the CLI's report, on small fixtures in the real layouts with a simple flow function."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import tensorflow_datasets as tfds
from fixtures import images
from fixtures import megc_layouts as layouts
from rcn_jax.sample_list import read_official_list

from data_prep import build, pipeline
from data_prep import face
from data_prep.composite import join_composite, read_dataset_inputs
from data_prep.samples import SampleSettings

CASME2_CLIPS = (("01", "EP02_01f"), ("01", "EP19_05f"), ("02", "EP09_01"))
SAMM_CLIPS = ("006_1_2", "006_1_3", "028_4_1")
BLANK_SAMM_CLIP = "006_1_3"
# Lives in a light module: worker processes import it to unpickle it.
difference_flow = images.difference_flow


def _shifted(base: np.ndarray, shift: int) -> np.ndarray:
  return np.roll(base, shift, axis=1)


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
  """Full sheets, but clip folders with real frames only for a few clips."""
  root = tmp_path_factory.mktemp("raw")
  (root / "CASME2").mkdir()
  (root / "SAMM").mkdir()
  casme2 = layouts.casme2_clips()
  layouts.write_casme2_sheet(root / "CASME2" / "CASME2-coding-20140508.xlsx", casme2)
  base = images.texture(240, 200)
  for clip in casme2:
    if (clip.subject, clip.sample) in CASME2_CLIPS:
      # Motion grows until the annotated apex, then fades: the apex is the most changed frame.
      layouts.write_frames(
          root / "CASME2" / "Cropped" / f"sub{clip.subject}" / clip.sample,
          range(clip.onset, clip.offset + 1), "reg_img{}.jpg",
          lambda n, clip=clip: _shifted(base, 2 * (clip.apex - clip.onset) - 2 * abs(n - clip.apex)))
  samm = layouts.samm_clips()
  layouts.write_samm_sheet(root / "SAMM" / "SAMM_Micro_FACS_Codes_v2.xlsx", samm)
  for clip in samm:
    if clip.sample in SAMM_CLIPS:
      blank = clip.sample == BLANK_SAMM_CLIP
      layouts.write_frames(
          root / "SAMM" / clip.subject / clip.sample, range(clip.onset, clip.offset + 1),
          f"{clip.subject}_{{:05d}}.jpg",
          lambda n, clip=clip, blank=blank: np.full((480, 640), 128, np.uint8) if blank else
          images.face_frame(mouth_drop=min(n - clip.onset, 3) * 2.0))
  return root


def _composite(raw, datasets=("casme2",)):
  inputs = {name: read_dataset_inputs(name, raw / {"casme2": "CASME2", "samm": "SAMM"}[name],
                                      sheet=build.find_sheet(name, raw / name.upper()))
            for name in datasets}
  composite, _ = join_composite(read_official_list(list(datasets)), inputs)
  keys = {f"sub{s}/{c}" for s, c in CASME2_CLIPS} | {f"{c[:3]}/{c}" for c in SAMM_CLIPS}
  return [s for s in composite if f"{s.subject}/{s.sample}" in keys]


def _read(dataset_dir):
  return tfds.builder_from_directory(str(dataset_dir)).as_data_source("train")


def test_build_writes_a_readable_dataset(raw, tmp_path):
  composite = _composite(raw)
  settings = {"casme2": SampleSettings(backend="farneback")}
  outcomes, dataset_dir = pipeline.build_dataset(composite, settings, difference_flow,
                                              out_dir=tmp_path, progress=False)
  assert dataset_dir == tmp_path / "megc2019" / "farneback" / "1.0.0"
  source = _read(dataset_dir)
  assert len(source) == 3
  assert [example["sample"] for example in source] == [b"EP02_01f", b"EP19_05f", b"EP09_01"]
  first = source[0]
  clip = next(c for c in layouts.casme2_clips() if (c.subject, c.sample) == ("01", "EP02_01f"))
  assert first["flow"].dtype == np.float16 and first["flow"].shape == (220, 200, 3)
  assert (first["dataset"], first["subject"], first["label"]) == (b"casme2", b"sub01", 1)
  assert (first["onset_frame"], first["apex_frame"]) == (clip.onset, clip.apex)
  folder = raw / "CASME2" / "Cropped" / "sub01" / "EP02_01f"
  onset, apex = (face.resize(cv2.imread(str(folder / f"reg_img{n}.jpg"), 0), (220, 200))
                 for n in (clip.onset, clip.apex))
  np.testing.assert_allclose(first["flow"], difference_flow(onset, apex), atol=1e-3)
  metadata = tfds.builder_from_directory(str(dataset_dir)).info.metadata
  assert metadata["backend"] == "farneback" and metadata["datasets"] == ["casme2"]
  assert all(o.info["crop"] == "none" for o in outcomes)  # reg_img frames: official crops


def test_interrupted_build_resumes_from_the_cache(raw, tmp_path):
  composite = _composite(raw)
  settings = {"casme2": SampleSettings(backend="farneback")}
  calls = []

  def interrupted(onset, apex):
    calls.append(1)
    if len(calls) == 2:
      raise KeyboardInterrupt
    return difference_flow(onset, apex)

  with pytest.raises(KeyboardInterrupt):
    pipeline.build_dataset(composite, settings, interrupted, out_dir=tmp_path, progress=False)
  cache = tmp_path / "megc2019_cache" / "farneback"
  assert len(list(cache.rglob("*.npz"))) == 1
  assert not [p for p in cache.rglob("*") if p.name.startswith(".")]  # no half-written file

  def counting(onset, apex):
    calls.append(1)
    return difference_flow(onset, apex)

  calls.clear()
  outcomes, _ = pipeline.build_dataset(composite, settings, counting, out_dir=tmp_path,
                                    progress=False)
  assert len(calls) == 2 and [o.cached for o in outcomes] == [True, False, False]

  def never(onset, apex):
    raise AssertionError("every map is cached")

  outcomes, dataset_dir = pipeline.build_dataset(composite, settings, never, out_dir=tmp_path,
                                              progress=False)
  assert all(o.cached for o in outcomes) and len(_read(dataset_dir)) == 3
  calls.clear()
  smaller = {"casme2": SampleSettings(backend="farneback", size=(110, 100))}
  _, dataset_dir = pipeline.build_dataset(composite, smaller, counting, out_dir=tmp_path,
                                       progress=False)
  assert len(calls) == 3 and _read(dataset_dir)[0]["flow"].shape == (110, 100, 3)


def test_worker_processes_give_the_same_maps(raw, tmp_path):
  composite = _composite(raw)
  settings = {"casme2": SampleSettings(backend="farneback", apex="xia_std")}
  _, serial = pipeline.build_dataset(composite, settings, difference_flow,
                                  out_dir=tmp_path / "serial", progress=False)
  outcomes, parallel = pipeline.build_dataset(composite, settings, difference_flow,
                                           out_dir=tmp_path / "parallel", workers=2,
                                           progress=False)
  for one, other in zip(_read(serial), _read(parallel)):
    np.testing.assert_array_equal(one["flow"], other["flow"])
  # xia_std finds the most changed frame, which the fixture puts at the annotated apex.
  assert all(o.info["apex_frame"] == o.info["annotated_apex"] for o in outcomes)


def test_face_crop_and_per_sample_failures(raw, tmp_path):
  composite = _composite(raw, datasets=("samm",))
  settings = {"samm": SampleSettings(backend="farneback")}
  with pytest.raises(pipeline.BuildFailed) as failure:
    pipeline.build_dataset(composite, settings, difference_flow, out_dir=tmp_path, progress=False)
  message = str(failure.value)
  assert "2 sample(s) failed" in message
  assert f"samm 006/{BLANK_SAMM_CLIP}: " in message and "no face found on the onset frame" in message
  assert "samm 028/028_4_1: " in message and "is outside onset..offset" in message
  outcomes, dataset_dir = pipeline.build_dataset(composite, settings, difference_flow,
                                              out_dir=tmp_path, allow_missing=True,
                                              progress=False)
  built = [o for o in outcomes if o.error is None]
  assert [o.sample for o in built] == ["006_1_2"]
  assert built[0].info["crop"] == "haar"
  top, bottom, left, right = built[0].info["crop_box"]
  assert top < 240 < bottom and left < 320 < right  # the drawn face's centre
  assert _read(dataset_dir)[0]["flow"].shape == (220, 200, 3)
  # A fallback detector rescues the clip whose annotated apex lies outside the clip.
  fallback = {"samm": SampleSettings(backend="farneback", apex_fallback="middle")}
  outcomes, _ = pipeline.build_dataset(composite, fallback, difference_flow, out_dir=tmp_path,
                                    allow_missing=True, progress=False)
  rescued = next(o for o in outcomes if o.sample == "028_4_1")
  assert rescued.error is None and rescued.info["apex_method"] == "middle"
  assert "annotated apex unusable" in rescued.info["notes"][0]


def test_crop_none_keeps_the_frame(raw, tmp_path):
  composite = [s for s in _composite(raw, datasets=("samm",)) if s.sample == BLANK_SAMM_CLIP]
  settings = {"samm": SampleSettings(backend="farneback", crop="none", size=None)}
  outcomes, dataset_dir = pipeline.build_dataset(composite, settings, difference_flow,
                                              out_dir=tmp_path, progress=False)
  assert outcomes[0].info["crop_box"] is None
  assert _read(dataset_dir)[0]["flow"].shape == (480, 640, 3)


def test_cli_builds_and_reports(raw, tmp_path, capsys):
  args = [f"--casme2={raw / 'CASME2'}", f"--samm={raw / 'SAMM'}", "--datasets=casme2,samm",
          f"--out={tmp_path}", "--backend=farneback", "--workers=1", "--no-progress"]
  assert build.main(args, flow_fn=difference_flow) == 2  # most listed clips have no folder
  assert "rerun with --allow-missing" in capsys.readouterr().err
  assert build.main(args + ["--allow-missing"], flow_fn=difference_flow) == 0
  printed = capsys.readouterr().out
  assert "samples per class: built / official" in printed and "FAILED samm 006/006_1_3" in printed
  report = json.loads((tmp_path / "megc2019_farneback_build_report.json").read_text())
  assert report["counts"]["casme2"]["negative"] == {"built": 1, "official": 88}
  assert report["counts"]["total"]["positive"] == {"built": 2, "official": 58}
  assert report["samples"] == {"built": 4, "from_cache": 0, "failed": 2, "listed": 278}
  assert report["apex"]["casme2"]["methods"] == {"annotated": 3}
  assert report["apex"]["casme2"]["abs_difference_to_annotated_apex"]["max"] == 0
  assert report["match"]["datasets"]["casme2"]["matched"] == 3
  assert len(_read(Path(report["dataset_dir"]))) == 4


def test_flow_map_examples_and_manifests_are_checked(tmp_path):
  from data_prep import InputError
  from data_prep.flow_dataset import make_example, read_manifest, write_manifest

  metadata = {"label": 1, "dataset": "samm", "subject": "006", "sample": "006_1_2",
              "onset_frame": 5562, "apex_frame": 5588}
  example = make_example(np.ones((4, 5, 3), np.float32), **metadata)
  assert example["flow"].dtype == np.float16 and example["apex_frame"] == 5588
  with pytest.raises(InputError, match=r"samm/006/006_1_2: flow map has shape \(4, 5\)"):
    make_example(np.ones((4, 5), np.float32), **metadata)
  with pytest.raises(InputError, match="samm/006/006_1_2: flow map has non-finite values"):
    make_example(np.full((4, 5, 3), np.nan, np.float32), **metadata)
  with pytest.raises(InputError, match="samm/006/006_1_2: flow map exceeds the float16 range"):
    make_example(np.full((4, 5, 3), 1e6, np.float32), **metadata)
  write_manifest(tmp_path, [{"file": "a.npz", "label": 0, "dataset": "samm"}], {"backend": "dis"})
  with pytest.raises(InputError, match=r"manifest.json: sample 0 lacks key\(s\) \['apex_frame'"):
    read_manifest(tmp_path)
  with pytest.raises(InputError, match="empty/manifest.json: no manifest"):
    read_manifest(tmp_path / "empty")


def test_staged_maps_of_another_backend_are_rejected(raw, tmp_path):
  from data_prep import InputError
  from data_prep.flow_dataset import prepare
  from data_prep.megc2019 import Megc2019

  composite = _composite(raw)[:1]
  settings = {"casme2": SampleSettings(backend="dis")}
  pipeline.build_dataset(composite, settings, difference_flow, out_dir=tmp_path, progress=False)
  with pytest.raises(InputError, match="computed with backend 'dis', not 'farneback'"):
    prepare(Megc2019, tmp_path, tmp_path / "megc2019_cache" / "dis", config="farneback")


def test_batched_flow_matches_the_per_pair_flow(raw, tmp_path):
  composite = _composite(raw)
  settings = {"casme2": SampleSettings(backend="jax_tvl1")}
  batch_sizes = []

  def batched(onsets, apexes):
    batch_sizes.append(len(onsets))
    return np.stack([difference_flow(a, b) for a, b in zip(onsets, apexes)])

  outcomes, batched_dir = pipeline.build_dataset(
      composite, settings, difference_flow, out_dir=tmp_path / "batched", progress=False,
      batch_flow_fn=batched, batch_size=2)
  assert batch_sizes == [2, 2]  # 3 pairs: the last chunk is padded to keep one compiled shape
  assert all(o.error is None for o in outcomes)
  _, single_dir = pipeline.build_dataset(composite, settings, difference_flow,
                                      out_dir=tmp_path / "single", progress=False)
  for one, other in zip(_read(batched_dir), _read(single_dir)):
    np.testing.assert_array_equal(one["flow"], other["flow"])


def test_named_backends():
  flow_fn, batched = pipeline.make_flow_fns("dis")
  assert flow_fn.keywords == {"backend": "dis"} and batched is None
  flow_fn, batched = pipeline.make_flow_fns("jax_c2f_lorentzian")
  assert batched.func.__name__ == "compute_flow_maps"
  assert batched.keywords == {"backend": "jax_c2f_lorentzian"}
  with pytest.raises(build.InputError, match="--backend: unknown backend 'pyflow'"):
    pipeline.make_flow_fns("pyflow")


def test_cli_with_a_real_backend_and_the_official_layout_export(raw, tmp_path, capsys):
  from rcn_jax.transform import from_png, to_network_input

  export = tmp_path / "official"
  args = [f"--casme2={raw / 'CASME2'}", "--datasets=casme2", f"--out={tmp_path}",
          "--backend=farneback", "--workers=1", "--no-progress", "--allow-missing",
          f"--export={export}", "--export-resolution=28"]
  assert build.main(args) == 0
  assert "exported 3 maps" in capsys.readouterr().out
  source = _read(tmp_path / "megc2019" / "farneback" / "1.0.0")
  flow = np.asarray(source[0]["flow"], np.float32)
  assert np.abs(flow[..., 0]).max() > 0.5  # the fixture's frames move by pixels
  png = cv2.imread(str(export / "flow" / "casme2_sub01_EP02_01f.png"))[..., ::-1]
  np.testing.assert_allclose(from_png(png), to_network_input(flow, 28), atol=0.5 / 255 + 1e-6)
  assert (export / "sub01_test.txt").read_text().splitlines() == [
      "flow/casme2_sub01_EP02_01f.png 1 0", "flow/casme2_sub01_EP19_05f.png 0 0"]
  assert (export / "sub01_train.txt").read_text().splitlines() == [
      "flow/casme2_sub02_EP09_01.png 1 0"]
  assert (export / "video442subName.txt").read_text().split() == ["sub01", "sub02"]

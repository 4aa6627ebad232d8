"""`data_prep.import_flowmaps`: the shared flow-image layouts imported, joined with the list, trained on."""

import json
import shutil

import numpy as np
import pytest
import tensorflow_datasets as tfds
from fixtures import flow_images as fi
from fixtures.loso_runs import launch, write_megc2019
from rcn_jax import config as config_lib
from rcn_jax import data, folds, validation
from rcn_jax.analysis import predict
from rcn_jax.transform import from_png, to_network_input

from data_prep import import_flowmaps
from data_prep.export import export_official_layout

# Two samples of every subject: all three databases, 68 subjects, a partial composite.
FEW = fi.samples(per_subject=2)
TREE = [s for s in fi.samples(per_subject=1) if s.subject in ("sub01", "sub02", "s01", "s02", "006", "007")]


def _import(tmp_path, layout, source, *extra, name="mine"):
  out = tmp_path / "data"
  status = import_flowmaps.main([f"--layout={layout}", f"--source={source}", f"--out={out}", f"--name={name}",
                                 *extra])
  return status, out


def _read(out, name="mine", resolution=28):
  return data.read_flow_dataset(data.megc2019_directory(str(out), name), resolution=resolution)


def _expected(listed):
  return np.stack([from_png(fi.pixels(s)) for s in listed])


@pytest.fixture(scope="module")
def flat(tmp_path_factory):
  return fi.write_flat(tmp_path_factory.mktemp("flat"), FEW)


def test_flat_folder_joins_all_three_databases_and_reads_as_png_input(flat, tmp_path, capsys):
  status, out = _import(tmp_path, "ststnet", flat, "--allow-missing")
  assert status == 0
  composite = _read(out)
  assert [(d, s, n) for d, s, n in zip(composite.datasets, composite.subjects, composite.samples)] == [
      (s.dataset, s.subject, s.sample) for s in FEW]
  assert {"casme2", "smic", "samm"} == set(composite.datasets) and "006" in composite.subjects
  np.testing.assert_array_equal(composite.flows, _expected(FEW))  # ToTensor's x / 255, u v strain
  metadata = data.dataset_metadata(data.megc2019_directory(str(out), "mine"))
  assert (metadata["channels"], metadata["value_range"], metadata["image_size"]) == ("rgb", [0, 255], [28, 28])
  assert len(metadata["missing"]) == 442 - len(FEW)
  assert data.configured_resolution({"name": "megc2019", "data_dir": str(out), "flow_backend": "mine",
                                     "resolution": None}) == 28
  assert data.configured_resolution({"name": "synthetic", "resolution": None}) == data.DEFAULT_RESOLUTION
  # Other resolutions are area-resized from the stored pixels.
  assert _read(out, resolution=20).flows.shape == (len(FEW), 20, 20, 3)


def test_missing_samples_are_listed_and_dry_run_reports(flat, tmp_path, capsys):
  status, out = _import(tmp_path, "ststnet", flat)
  assert status == 2
  error = capsys.readouterr().err.strip()
  assert error.count("\n") == 0 and f"{442 - len(FEW)} listed sample(s) have no image" in error
  absent = [s for s in fi.samples() if s not in FEW]
  assert all(f"{s.dataset}/{s.subject}/{s.sample}" in error for s in absent)
  assert "--allow-missing" in error and not out.exists()
  assert import_flowmaps.main(["--layout=ststnet", f"--source={flat}", "--dry-run"]) == 1
  report = json.loads(capsys.readouterr().out)
  assert (report["ok"], report["matched"], report["image_size"]) == (False, len(FEW), [28, 28])
  assert report["datasets"]["samm"]["matched"] == (samm := sum(s.dataset == "samm" for s in FEW))
  assert len(report["datasets"]["samm"]["unmatched"]) == 133 - samm


def test_loso_tree_dedupes_its_copies_and_equals_the_flat_folder(tmp_path):
  tree = fi.write_loso_tree(tmp_path / "tree", TREE)
  assert len(list(tree.rglob("*.png"))) == len(TREE) ** 2
  status, out = _import(tmp_path, "ststnet", tree, "--allow-missing")
  assert status == 0
  composite = _read(out)
  assert list(composite.samples) == [s.sample for s in TREE]
  np.testing.assert_array_equal(composite.flows, _expected(TREE))


def test_rcn_release_layout_round_trips_through_export(tmp_path):
  built = write_megc2019(tmp_path / "built", FEW[:12], size=40)
  export_official_layout(built, tmp_path / "release", resolution=28)
  status, out = _import(tmp_path, "rcn", tmp_path / "release", "--allow-missing")
  assert status == 0
  imported = _read(out)
  assert list(imported.samples) == [s.sample for s in FEW[:12]]
  assert imported.labels.tolist() == [s.label for s in FEW[:12]]
  # The export's 8-bit PNGs read back exactly: the built input quantised as the release's images.
  source = tfds.builder_from_directory(str(built)).as_data_source("train")
  original = [to_network_input(np.asarray(source[i]["flow"], np.float32), 28, png_round_trip=True) for i in range(12)]
  np.testing.assert_array_equal(imported.flows, np.stack(original))


def test_manifest_with_bgr_files_and_unpadded_samm_subjects(tmp_path):
  listed = [s for s in FEW if s.subject in ("sub01", "s01", "006")]
  manifest = fi.write_manifest(tmp_path / "own", listed, channels="bgr")
  assert ",samm,6,006_" in manifest.read_text()
  status, out = _import(tmp_path, "manifest", manifest, "--channels=bgr", "--allow-missing")
  assert status == 0
  composite = _read(out)
  assert list(composite.subjects) == [s.subject for s in listed] == ["sub01"] * 2 + ["s01"] * 2 + ["006"] * 2
  np.testing.assert_array_equal(composite.flows, _expected(listed))  # reordered to u, v, strain


def _break_flat(folder, listed, problem):
  """Plants one problem in a flat folder; returns the file the error must name."""
  if problem == "unknown name":
    path = folder / "sub01_EP99_99 .png"
    fi.write_png(path, fi.pixels(listed[0]))
  elif problem == "duplicate":
    path = folder / fi.ststnet_name(listed[1]).replace(" .png", ".png")
    shutil.copy(folder / fi.ststnet_name(listed[1]), path)
  elif problem == "size":
    path = folder / fi.ststnet_name(listed[2])
    fi.write_png(path, fi.pixels(listed[2], size=30))
  elif problem == "non-png":
    path = folder / "notes.txt"
    path.write_text("flow maps")
  else:  # a file named .png that is not one
    path = folder / fi.ststnet_name(listed[3])
    path.write_bytes(b"JFIF not a png")
  return path


@pytest.mark.parametrize("problem, message", [
    ("unknown name", "is not a sample of the organisers' list"), ("duplicate", "duplicate of"),
    ("size", "30x30 px but"), ("non-png", "not a PNG file"), ("fake png", "not a PNG file")])
def test_flat_folder_errors_name_the_file_and_write_nothing(tmp_path, capsys, problem, message):
  folder = fi.write_flat(tmp_path / "flat", FEW[:6])
  path = _break_flat(folder, FEW[:6], problem)
  status, out = _import(tmp_path, "ststnet", folder, "--allow-missing")
  error = capsys.readouterr().err.strip()
  assert status == 2 and error.count("\n") == 0 and error.startswith("error: ")
  assert str(path) in error and message in error
  assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("problem, message", [
    ("label folder", "label folder 2 says surprise"), ("other content", "again with other content"),
    ("own u_train", "is in its own subject's u_train")])
def test_loso_tree_errors_name_the_file(tmp_path, capsys, problem, message):
  tree = fi.write_loso_tree(tmp_path / "tree", TREE)
  sample = TREE[0]  # casme2 sub01, negative
  if problem == "label folder":
    path = fi.write_png(tree / "s01" / "u_train" / "2" / fi.ststnet_name(sample), fi.pixels(sample))
    (tree / "s01" / "u_train" / str(sample.label) / fi.ststnet_name(sample)).unlink()
  elif problem == "other content":
    path = fi.write_png(tree / "006" / "u_train" / str(sample.label) / fi.ststnet_name(sample),
                        255 - fi.pixels(sample))
  else:
    path = fi.write_png(tree / "sub01" / "u_train" / str(sample.label) / fi.ststnet_name(sample), fi.pixels(sample))
  status, out = _import(tmp_path, "ststnet", tree, "--allow-missing")
  error = capsys.readouterr().err.strip()
  assert status == 2 and error.count("\n") == 0 and str(path) in error and message in error
  assert not out.exists() or not any(out.iterdir())


def test_a_failure_while_writing_leaves_no_dataset_and_a_reimport_replaces(flat, tmp_path, monkeypatch):
  status, out = _import(tmp_path, "ststnet", flat, "--allow-missing")
  before = (data.megc2019_directory(str(out), "mine") / "metadata.json").read_text()

  def failing(*args, **kwargs):
    raise RuntimeError("disk full")
  monkeypatch.setattr("data_prep.flow_dataset.make_example", failing)
  with pytest.raises(RuntimeError, match="disk full"):
    _import(tmp_path, "ststnet", flat, "--allow-missing")
  # The old import is untouched and no temporary folder is left.
  assert (data.megc2019_directory(str(out), "mine") / "metadata.json").read_text() == before
  assert sorted(p.name for p in out.iterdir()) == ["megc2019"]
  monkeypatch.undo()
  single = tmp_path / "one"
  fi.write_flat(single, FEW[:2])
  assert _import(tmp_path, "ststnet", single, "--allow-missing")[0] == 0
  assert len(_read(out)) == 2


def test_import_folds_equal_the_built_datasets_folds(tmp_path):
  casme2 = fi.samples(["casme2"])
  _, out = _import(tmp_path, "ststnet", fi.write_flat(tmp_path / "flat", casme2), "--allow-missing")
  built = data.read_flow_dataset(write_megc2019(tmp_path / "built", casme2, size=24), resolution=24,
                                 datasets=("casme2",))
  imported = data.read_flow_dataset(data.megc2019_directory(str(out), "mine"), resolution=28, datasets=("casme2",))
  mine, theirs = (folds.make_folds(c.subjects, c.datasets, "loso") for c in (imported, built))
  assert len(mine) == 24
  assert [(f.name, f.train_indices.tolist(), f.test_indices.tolist()) for f in mine] == [
      (f.name, f.train_indices.tolist(), f.test_indices.tolist()) for f in theirs]


def test_names_that_would_shadow_a_build_are_refused(flat, tmp_path, capsys):
  assert _import(tmp_path, "ststnet", flat, "--allow-missing", name="tvl1")[0] == 2
  assert "flow backend's build name" in capsys.readouterr().err


def test_a_28px_import_trains_rcn_a_and_rcn_f_smoke_through_launch_and_predict_reopens_it(flat, tmp_path, capsys):
  _, out = _import(tmp_path, "ststnet", flat, "--allow-missing")
  tiny = ["--config.model.features=4", "--config.data.name=megc2019", f"--config.data.data_dir={out}",
          "--config.data.flow_backend=mine", "--config.protocol.max_folds=2", "--config.train.num_epochs=1",
          "--config.report.bootstrap_resamples=10", "--config.parallel.models_per_call=1"]
  processes = {name: launch([f"--config=configs/{name}.py:smoke", f"--workdir={tmp_path / name}", *tiny],
                            cache_dir=tmp_path / "xla", devices=1, fast_compile=True)
               for name in ("rcn_a", "rcn_f")}
  for name, process in processes.items():
    _, errors_text = process.communicate(timeout=300)
    assert process.returncode == 0, errors_text[-2000:]
    config = json.loads((tmp_path / name / "config.json").read_text())
    assert config["data"]["resolution"] == 28  # the import's own size, recorded for predict/cam/report
    results = json.loads((tmp_path / name / "results.json").read_text())
    assert results["training"]["epochs_trained_min"] == 1 and results["execution"]["models"] == 2
  # predict reopens the run at 28 px; the import names no flow backend, so the frames need one named.
  frames = [fi.write_png(tmp_path / f"{n}.png", np.repeat(fi.pixels(FEW[n], 64)[..., :1], 3, axis=2)) for n in (0, 1)]
  command = [f"--workdir={tmp_path / 'rcn_f'}", f"--onset={frames[0]}", f"--apex={frames[1]}", "--json"]
  assert predict.main(command) == 2
  assert "--flow_backend=" in capsys.readouterr().err
  assert predict.main([*command, "--flow_backend=farneback"]) == 0
  prediction = json.loads(capsys.readouterr().out)
  assert len(prediction["models"]) == 2 and abs(sum(prediction["probabilities"].values()) - 1) < 1e-5


def test_a_model_that_cannot_take_the_size_names_the_smallest_it_takes(monkeypatch):
  from rcn_jax import config as config_lib  # pylint: disable=import-outside-toplevel
  from rcn_jax.engine import plan  # pylint: disable=import-outside-toplevel

  traced = plan.trace_model

  def needs_32(program, size):  # a stand-in for an architecture whose pools need 32 px
    if size[0] < 32:
      raise ValueError(f"negative dimension at {size[0]} px")
    return traced(program, size)
  monkeypatch.setattr(plan, "trace_model", needs_32)
  config = config_lib.make_config(preset="rcn_f", features=4, pool_size=2, arg="smoke")
  with pytest.raises(data.errors.UserError, match=r"cannot take inputs of 28x28 px \(the smallest it takes is "
                     r"32x32 px \(data.resolution=32\)\)"):
    plan.check_model(config, (28, 28))


def test_an_import_smaller_than_the_networks_take_asks_for_a_resolution(tmp_path, capsys):
  status, out = _import(tmp_path, "ststnet", fi.write_flat(tmp_path / "small", FEW[:2], size=12), "--allow-missing")
  section = {"name": "megc2019", "data_dir": str(out), "flow_backend": "mine", "resolution": None,
             "datasets": ("casme2", "smic", "samm")}
  with pytest.raises(data.errors.UserError, match=r"'mine' maps are 12x12 px; the networks take 20..300 px"):
    data.check_configured(section)
  config = config_lib.make_config(preset="rcn_a", features=4, pool_size=2, arg=None)
  config.data.update(section)
  with pytest.raises(data.errors.UserError, match=r"'mine' maps are 12x12 px"):
    validation.validate(config)  # what every command runs first
  data.check_configured({**section, "resolution": 20})
  assert _read(out, resolution=20).flows.shape == (2, 20, 20, 3)

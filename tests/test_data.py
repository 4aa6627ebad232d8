"""`rcn_jax.data`: the composite's arrays, the flow-map dataset reader in list order, and its errors."""

import dataclasses

import numpy as np
import pytest

from fixtures.loso_runs import write_megc2019
from rcn_jax import data
from rcn_jax import sample_list


def _composite(datasets, labels=None, flows=None):
  count = len(datasets)
  return data.Composite(
      flows=np.zeros((count, 4, 4, 3), np.float32) if flows is None else flows,
      labels=np.zeros(count, np.int64) if labels is None else np.asarray(labels),
      subjects=np.array([f"s{i:02d}" for i in range(count)]), datasets=np.array(datasets),
      samples=np.array([f"clip{i}" for i in range(count)]), source="made up")


def test_tiny_tfds_directory_reads_back_in_list_order(megc2019_dir):
  composite = data.load_composite("megc2019", data_dir=str(megc2019_dir), resolution=20, datasets=("smic",))
  listed = sample_list.read_official_list(("smic",))
  assert len(composite) == 164
  assert composite.flows.shape == (164, 20, 20, 3) and composite.flows.dtype == np.float32
  assert 0.0 <= composite.flows.min() and composite.flows.max() <= 1.0
  assert composite.samples.tolist() == [s.sample for s in listed]
  assert composite.subjects.tolist() == [s.subject for s in listed]
  assert composite.labels.tolist() == [s.label for s in listed]
  assert set(composite.datasets) == {"smic"}
  # The class band on u survives the load-time transform (area resize and per-map min-max).
  right_band = composite.flows[:, :, 14:, 0].mean(axis=(1, 2))
  left_band = composite.flows[:, :, :6, 0].mean(axis=(1, 2))
  assert np.all(right_band[composite.labels == 2] > left_band[composite.labels == 2] + 0.2)


def test_loader_names_what_is_wrong(megc2019_dir, tmp_path):
  with pytest.raises(ValueError, match=r"listed sample\(s\) missing, e.g. \['casme2/sub01/EP02_01f'"):
    data.load_composite("megc2019", data_dir=str(megc2019_dir), resolution=20)
  with pytest.raises(FileNotFoundError, match="no megc2019 flow-map dataset for backend 'dis'"):
    data.load_composite("megc2019", data_dir=str(megc2019_dir), flow_backend="dis")
  with pytest.raises(ValueError, match="data.name='casme'"):
    data.load_composite("casme", data_dir=str(tmp_path))
  with pytest.raises(ValueError, match=r"data.datasets=\['smic', 'mmew'\]"):
    data.load_composite("megc2019", data_dir=str(megc2019_dir), datasets=("smic", "mmew"))
  with pytest.raises(ValueError, match=r"data.resolution=10: expected 20..300"):
    data.load_composite("synthetic", resolution=10)
  flows = np.zeros((2, 4, 4, 3), np.float32)
  flows[1, 0, 0, 0] = np.nan
  with pytest.raises(ValueError, match=r"non-finite flow values in sample\(s\) \['smic/s02/b'\]"):
    data.Composite(flows, np.array([0, 1]), np.array(["s01", "s02"]), np.array(["smic"] * 2), np.array(["a", "b"]))


@pytest.mark.parametrize("second, message", [
    (lambda listed: dataclasses.replace(listed[1], label=(listed[1].label + 1) % 3), r"label \d but the list says \d"),
    (lambda listed: dataclasses.replace(listed[1], sample="unlisted_clip"), "not in the organisers' list"),
    (lambda listed: listed[0], "duplicate sample"),
])
def test_reader_names_a_sample_the_list_disagrees_with(tmp_path, second, message):
  listed = sample_list.read_official_list(("smic",))
  bad = second(listed)
  directory = write_megc2019(tmp_path, [listed[0], bad])
  where = rf"example 1 \(smic/{bad.subject}/{bad.sample}\)"
  with pytest.raises(ValueError, match=rf"{where}: {message}"):
    data.read_flow_dataset(directory, resolution=20, datasets=("smic",))


def test_select_keeps_the_given_datasets_in_their_order():
  composite = _composite(["casme2", "smic", "samm", "smic", "casme2"], labels=[0, 1, 2, 0, 1])
  chosen = composite.select(["smic", "casme2"])
  assert chosen.samples.tolist() == ["clip0", "clip1", "clip3", "clip4"]
  assert chosen.labels.tolist() == [0, 1, 0, 1] and chosen.subjects.tolist() == ["s00", "s01", "s03", "s04"]
  assert chosen.datasets.tolist() == ["casme2", "smic", "smic", "casme2"]
  assert chosen.flows.shape == (4, 4, 4, 3) and chosen.source == "made up"
  assert len(composite.select(["samm"])) == 1
  assert chosen.name_of(2) == "smic/s03/clip3"


def test_composite_refuses_ragged_fields_and_unknown_labels():
  with pytest.raises(ValueError, match="Composite.flows has 2 rows, labels has 3"):
    _composite(["smic"] * 3, flows=np.zeros((2, 4, 4, 3), np.float32))
  with pytest.raises(ValueError, match=r"Composite.flows must be \[N, H, W, 3\], got \(3, 4, 4, 2\)"):
    _composite(["smic"] * 3, flows=np.zeros((3, 4, 4, 2), np.float32))
  with pytest.raises(ValueError, match=r"made up: unknown label index\(es\) \[3\]"):
    _composite(["smic"] * 3, labels=[0, 3, 1])


def test_the_newest_complete_build_is_read(tmp_path, monkeypatch):
  base = tmp_path / "megc2019" / "tvl1"
  for version in ("1.2.0", "1.10.0", "2.0.0"):
    (base / version).mkdir(parents=True)
  for version in ("1.2.0", "1.10.0"):  # 2.0.0 has no dataset_info.json: an interrupted build
    (base / version / "dataset_info.json").write_text("{}")
  assert data.megc2019_directory(str(tmp_path), "tvl1") == base / "1.10.0"  # by number, not by text
  monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path))
  assert data.default_data_dir() == str(tmp_path)


def test_a_config_data_section_is_checked_and_loaded(megc2019_dir):
  section = {"name": "megc2019", "data_dir": str(megc2019_dir), "resolution": 20, "datasets": ("smic",),
             "flow_backend": "tvl1"}
  data.check_configured(section)
  composite = data.load_configured(section)
  assert composite.flows.shape == (164, 20, 20, 3) and set(composite.datasets) == {"smic"}
  with pytest.raises(FileNotFoundError, match="no megc2019 flow-map dataset for backend 'dis'"):
    data.check_configured({**section, "flow_backend": "dis"})
  with pytest.raises(ValueError, match="data.resolution=400"):
    data.check_configured({**section, "resolution": 400})

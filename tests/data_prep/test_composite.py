"""The composite: the organisers' list joined with the sheets and folders, and the dry-run report."""

import json
import shutil
from collections import Counter

import pytest
from fixtures import megc_layouts as layouts
from rcn_jax.sample_list import read_official_list

from data_prep import InputError
from data_prep import build
from data_prep.annotations import shipped_smic_table
from data_prep.composite import join_composite, read_dataset_inputs

OFFICIAL = {  # the organisers' published counts: samples per class (negative, positive, surprise), subjects
    "smic": ((70, 51, 43), 16), "casme2": ((88, 32, 25), 24), "samm": ((92, 26, 15), 28)}


@pytest.fixture(scope="module")
def composite_tree(tmp_path_factory):
  return layouts.full_composite(tmp_path_factory.mktemp("raw"))


def _inputs(paths, **overrides):
  inputs = {
      "casme2": read_dataset_inputs("casme2", paths["casme2"], sheet=paths["casme2_sheet"]),
      "samm": read_dataset_inputs("samm", paths["samm"], sheet=paths["samm_sheet"]),
      "smic": read_dataset_inputs("smic", paths["smic"], frame_table=shipped_smic_table()),
  }
  inputs.update(overrides)
  return inputs


def test_the_join_reproduces_the_official_counts(composite_tree):
  composite, report = join_composite(read_official_list(), _inputs(composite_tree))
  assert report.ok and len(composite) == 442
  for dataset, (classes, subjects) in OFFICIAL.items():
    samples = [s for s in composite if s.dataset == dataset]
    counts = Counter(s.label for s in samples)
    assert (counts[0], counts[1], counts[2]) == classes
    assert len({s.subject for s in samples}) == subjects
  assert Counter(s.label for s in composite) == {0: 250, 1: 109, 2: 83}
  assert [(s.dataset, s.subject, s.sample) for s in composite] == [
      (s.dataset, s.subject, s.sample) for s in read_official_list()]  # the list's order
  # Listed-class clips that MEGC2019 left out are reported, not failed.
  casme2 = report.datasets["casme2"]
  assert {entry["sample"] for entry in casme2.not_listed} == {"EP12_01f", "EP09_05f"}
  smic = next(s for s in composite if s.sample == "s01_ne_01")
  assert (smic.annotation.onset, smic.annotation.apex) == (559740, 559753)
  assert smic.clip_dir.name == "s1_ne_01"  # unpadded on disk


def test_unmatched_and_disagreeing_samples_are_reported(composite_tree, tmp_path):
  clips = layouts.casme2_clips()
  clips = [c for c in clips if (c.subject, c.sample) != ("01", "EP02_01f")]  # no sheet row
  next(c for c in clips if c.sample == "EP19_05f").emotion = "surprise"  # listed negative
  sheet = layouts.write_casme2_sheet(tmp_path / "coding.xlsx", clips)
  samm_root = tmp_path / "SAMM"
  shutil.copytree(composite_tree["samm"], samm_root)
  shutil.rmtree(samm_root / "006" / "006_1_2")
  inputs = _inputs(composite_tree,
                   casme2=read_dataset_inputs("casme2", composite_tree["casme2"], sheet=sheet),
                   samm=read_dataset_inputs("samm", samm_root, sheet=composite_tree["samm_sheet"]))
  composite, report = join_composite(read_official_list(), inputs)
  assert not report.ok and len(composite) == 439
  casme2, samm = report.datasets["casme2"], report.datasets["samm"]
  assert casme2.unmatched == [{"subject": "sub01", "sample": "EP02_01f",
                               "reason": "not in the annotations"}]
  assert (casme2.listed, casme2.matched, casme2.label_agreement) == (145, 144, 143)
  disagreement = casme2.label_disagreements[0]
  assert (disagreement["sample"], disagreement["listed"], disagreement["mapped"]) == (
      "EP19_05f", "negative", "surprise")
  assert samm.unmatched == [{"subject": "006", "sample": "006_1_2", "reason": "no clip folder"}]
  summary = report.to_json()
  assert (summary["listed"], summary["matched"], summary["label_agreement"]) == (442, 440, 439)


def test_smic_e_sheet_frames_and_its_label_disagreement(composite_tree, tmp_path):
  clips = layouts.smic_e_clips()
  next(c for c in clips if c.sample == "s18_sur_03").emotion = "negative"  # as in the release
  sheet = layouts.write_smic_e_sheet(tmp_path / "SMIC-HS-E_annotation.xlsx", clips)
  inputs = read_dataset_inputs("smic", composite_tree["smic"], sheet=sheet)
  composite, report = join_composite(read_official_list(["smic"]), {"smic": inputs})
  assert report.ok and len(composite) == 164  # the folder decides the class
  notes = report.datasets["smic"].notes
  assert len(notes) == 1 and "Emotion 'negative' but the clip folder says surprise" in notes[0]
  sample = next(s for s in composite if s.sample == "s01_ne_01")
  assert (sample.annotation.onset, sample.annotation.apex, sample.annotation.offset) == (
      559740, None, 559775)


def test_partial_composite_and_missing_inputs(composite_tree):
  inputs = _inputs(composite_tree)
  composite, report = join_composite(read_official_list(["casme2", "samm"]), inputs)
  assert set(report.datasets) == {"casme2", "samm"} and len(composite) == 278
  with pytest.raises(InputError, match="smic: listed samples but no smic inputs"):
    join_composite(read_official_list(["smic"]), {"casme2": inputs["casme2"]})


def _dry_run(capsys, *args):
  status = build.main(["--dry-run", *args])
  return status, json.loads(capsys.readouterr().out)


def test_dry_run_prints_the_match_report(composite_tree, capsys):
  status, report = _dry_run(capsys, f"--casme2={composite_tree['casme2'].parent}",
                            f"--samm={composite_tree['samm']}", f"--smic={composite_tree['smic']}")
  # The sheets are found inside the dataset folders. The SAMM apex errors make it fail.
  assert report["datasets"]["casme2"]["sources"]["sheet"].endswith("CASME2-coding-20140508.xlsx")
  assert (report["listed"], report["matched"], report["label_agreement"]) == (442, 442, 442)
  assert {p["sample"] for p in report["frame_problems"]} == {"028_4_1", "032_3_1"}
  assert status == 1 and report["ok"] is False
  status, report = _dry_run(capsys, f"--casme2={composite_tree['casme2'].parent}",
                            f"--samm={composite_tree['samm']}", f"--smic={composite_tree['smic']}",
                            "--apex-fallback=xia_std")
  assert status == 0 and report["ok"] is True
  assert {p["fallback"] for p in report["frame_problems"]} == {"xia_std"}


def test_dry_run_partial_and_allow_missing(composite_tree, capsys, tmp_path):
  status, report = _dry_run(capsys, "--datasets=casme2,smic", f"--smic={composite_tree['smic']}",
                            f"--casme2={composite_tree['casme2']}",
                            f"--casme2-sheet={composite_tree['casme2_sheet']}")
  assert status == 0 and set(report["datasets"]) == {"casme2", "smic"}
  assert report["matched"] == 309
  # Without the shipped SMIC table the annotated apex is missing for every SMIC clip.
  status, report = _dry_run(capsys, "--datasets=smic", f"--smic={composite_tree['smic']}",
                            "--frame-table=smic=none")
  assert status == 1 and len(report["frame_problems"]) == 164
  assert "no apex annotated" in report["frame_problems"][0]["error"]
  status, report = _dry_run(capsys, "--datasets=smic", f"--smic={composite_tree['smic']}",
                            "--frame-table=smic=none", "--apex=smic=xia_std")
  assert status == 0 and report["frame_problems"] == []
  smic_root = tmp_path / "SMIC"
  shutil.copytree(composite_tree["smic"], smic_root)
  shutil.rmtree(smic_root / "HS" / "s3" / "micro" / "negative" / "s3_ne_05")
  status, report = _dry_run(capsys, "--datasets=smic", f"--smic={smic_root}")
  assert status == 1
  assert report["datasets"]["smic"]["unmatched"] == [
      {"subject": "s03", "sample": "s03_ne_05", "reason": "not in the annotations"}]
  status, report = _dry_run(capsys, "--datasets=smic", f"--smic={smic_root}", "--allow-missing")
  assert status == 0 and report["matched"] == 163


def test_cli_input_errors(composite_tree, capsys, tmp_path):
  assert build.main(["--dry-run", "--datasets=casme2"]) == 2
  assert "--casme2: the casme2 folder is required" in capsys.readouterr().err
  assert build.main(["--dry-run", "--datasets=samm", f"--samm={tmp_path}"]) == 2
  assert "the samm coding sheet is required" in capsys.readouterr().err
  assert build.main(["--dry-run", "--datasets=smic", f"--smic={composite_tree['smic']}",
                     "--apex=smic=peak"]) == 2
  assert "--apex: unknown choice 'peak'" in capsys.readouterr().err
  assert build.main(["--dry-run", "--datasets=vis"]) == 2
  assert "unknown dataset(s) ['vis']" in capsys.readouterr().err
  smic = f"--smic={composite_tree['smic']}"
  assert build.main(["--dry-run", "--datasets=smic", smic, "--frame-table=smic"]) == 2
  assert "--frame-table: expected DATASET=CSV or DATASET=none, got 'smic'" in capsys.readouterr().err
  assert build.main(["--dry-run", "--datasets=smic", smic, "--size=220"]) == 2
  assert "--size: '220' is not ROWSxCOLS" in capsys.readouterr().err
  assert build.main(["--dry-run", "--datasets=smic", smic, "--size=12x200"]) == 2
  assert "at least 16 px per side" in capsys.readouterr().err
  assert build.main(["--dry-run", "--datasets=smic", smic, "--crop=vis=haar"]) == 2
  assert "--crop: unknown dataset 'vis'" in capsys.readouterr().err
  two_sheets = tmp_path / "CASME2"
  shutil.copytree(composite_tree["casme2"].parent, two_sheets)
  shutil.copy(composite_tree["casme2_sheet"], two_sheets / "CASME2-coding-20190701.xlsx")
  assert build.main(["--dry-run", "--datasets=casme2", f"--casme2={two_sheets}"]) == 2
  assert "several casme2 sheets found" in capsys.readouterr().err

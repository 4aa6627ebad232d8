"""Readers of the raw annotation formats, on fixtures built in the releases' exact layouts."""

from collections import Counter

import pytest
from fixtures import megc_layouts as layouts

from data_prep import InputError
from data_prep.annotations import (EMOTION_CLASSES, apply_frame_table, emotion_class,
                                   read_casme2_sheet, read_frame_table, read_samm_sheet,
                                   read_smic_e_sheet, scan_smic, shipped_smic_table, smic_key)


@pytest.fixture(scope="module")
def casme2_sheet(tmp_path_factory):
  path = tmp_path_factory.mktemp("casme2") / "CASME2-coding-20140508.xlsx"
  return layouts.write_casme2_sheet(path, layouts.casme2_clips())


@pytest.fixture(scope="module")
def samm_sheet(tmp_path_factory):
  path = tmp_path_factory.mktemp("samm") / "SAMM_Micro_FACS_Codes_v2.xlsx"
  return layouts.write_samm_sheet(path, layouts.samm_clips())


def test_casme2_sheet_2014(casme2_sheet):
  annotations = read_casme2_sheet(casme2_sheet)
  assert len(annotations) == 255
  assert Counter(a.emotion for a in annotations) == {
      "others": 99, "disgust": 63, "happiness": 32, "surprise": 25, "repression": 27,
      "sadness": 7, "fear": 2}
  by_key = {a.key: a for a in annotations}
  assert by_key["sub04", "EP12_01f"].apex is None  # the sheet's `/`
  assert by_key["sub05", "EP09_05f"].onset == by_key["sub05", "EP09_05f"].apex == 69
  first = annotations[0]
  assert (first.dataset, first.subject, first.sample) == ("casme2", "sub01", "EP02_01f")
  assert first.source == f"{casme2_sheet} row 2"


def test_casme2_subject_stored_as_number_reads_the_same(casme2_sheet, tmp_path):
  as_text = read_casme2_sheet(casme2_sheet)
  resaved = layouts.write_casme2_sheet(tmp_path / "resaved.xlsx", layouts.casme2_clips(),
                                       subject_as_number=True)
  as_number = read_casme2_sheet(resaved)
  assert [a.key for a in as_number] == [a.key for a in as_text]
  assert [(a.onset, a.apex, a.offset, a.emotion) for a in as_number] == [
      (a.onset, a.apex, a.offset, a.emotion) for a in as_text]


def test_casme2_sheet_2019_release_relabels_three_sub24_clips(tmp_path):
  path = layouts.write_casme2_sheet(tmp_path / "CASME2-coding-20190701.xlsx",
                                    layouts.casme2_clips("20190701"), release="20190701")
  emotions = Counter(a.emotion for a in read_casme2_sheet(path))
  assert (emotions["surprise"], emotions["sadness"]) == (28, 4)
  relabelled = {"EP07_01", "EP07_04f", "EP10_03"}
  assert {a.emotion for a in read_casme2_sheet(path)
          if a.subject == "sub24" and a.sample in relabelled} == {"surprise"}


def test_label_mapping_counts(casme2_sheet, samm_sheet, tmp_path):
  def mapped(annotations):
    return Counter(emotion_class(a.dataset, a.emotion, a.source) for a in annotations)

  # CASME II: disgust + repression -> negative; others, sadness and fear dropped.
  assert mapped(read_casme2_sheet(casme2_sheet)) == {0: 90, 1: 32, 2: 25, None: 108}
  # Filtering the 2019 sheet by emotion gives 150, not 145: MEGC2019 used the 2014 labels.
  release_2019 = layouts.write_casme2_sheet(tmp_path / "2019.xlsx",
                                            layouts.casme2_clips("20190701"), release="20190701")
  assert sum(n for c, n in mapped(read_casme2_sheet(release_2019)).items() if c is not None) == 150
  # SAMM: anger, contempt, disgust, fear, sadness -> negative 92; Other (26) dropped.
  assert mapped(read_samm_sheet(samm_sheet)) == {0: 92, 1: 26, 2: 15, None: 26}
  assert EMOTION_CLASSES["smic"] == {"negative": 0, "positive": 1, "surprise": 2}


def test_unknown_emotion_names_the_row():
  with pytest.raises(InputError, match=r"sheet.xlsx row 7: unknown samm emotion 'Joy'"):
    emotion_class("samm", "Joy", "sheet.xlsx row 7")
  assert emotion_class("samm", " anger ", "x") == 0  # capitalisation and padding do not matter


def test_samm_sheet(samm_sheet):
  annotations = read_samm_sheet(samm_sheet)
  assert len(annotations) == 159
  assert len({a.subject for a in annotations}) == 29
  assert Counter(a.emotion for a in annotations) == {
      "Anger": 57, "Other": 26, "Happiness": 26, "Surprise": 15, "Contempt": 12, "Disgust": 9,
      "Fear": 8, "Sadness": 6}
  first = annotations[0]
  assert (first.subject, first.sample, first.source) == ("006", "006_1_2", f"{samm_sheet} row 15")
  # The released sheet's apex errors are read as written (they are rejected at apex time).
  bad = {a.sample: a for a in annotations if not a.onset <= a.apex <= a.offset}
  assert set(bad) == {"028_4_1", "032_3_1"}


def test_samm_subject_stored_as_number(tmp_path):
  clips = layouts.samm_clips()
  for clip in clips:
    clip.subject = int(clip.subject)
  annotations = read_samm_sheet(layouts.write_samm_sheet(tmp_path / "samm.xlsx", clips))
  assert annotations[0].subject == "006"


def _scan_fixture(root, **kwargs):
  layouts.smic_tree(root, keep=lambda sample: sample.startswith(("s01_", "s02_", "s20_")),
                    **kwargs)
  return scan_smic(root)


@pytest.mark.parametrize("padded", [False, True])
def test_smic_folders_in_both_spellings(tmp_path, padded):
  annotations, folders = _scan_fixture(tmp_path, padded_subjects=padded)
  assert len(annotations) == 6 + 6 + 22
  by_key = {a.key: a for a in annotations}
  assert by_key["s01", "s01_ne_01"].emotion == "negative"
  assert by_key["s02", "s02_sur_05"].emotion == "surprise"
  disk = "s1/micro/negative/s1_ne_01" if not padded else "s01/micro/negative/s01_ne_01"
  assert folders["s01", "s01_ne_01"] == tmp_path / "HS" / disk


def test_smic_skips_other_cameras_and_rejects_duplicates(tmp_path):
  layouts.smic_tree(tmp_path, keep=lambda sample: sample == "s01_ne_01")
  (tmp_path / "VIS" / "s1" / "micro" / "negative" / "s1_ne_01").mkdir(parents=True)
  (tmp_path / "HS" / "s1" / "non_micro" / "s1_ne_01").mkdir(parents=True)
  annotations, _ = scan_smic(tmp_path)
  assert [a.key for a in annotations] == [("s01", "s01_ne_01")]
  layouts.smic_tree(tmp_path / "copy", keep=lambda sample: sample == "s01_ne_01",
                    padded_subjects=True)
  with pytest.raises(InputError, match="s01_ne_01 found twice"):
    scan_smic(tmp_path)


def test_smic_class_folder_must_match_clip_name(tmp_path):
  (tmp_path / "HS" / "s3" / "micro" / "positive" / "s3_ne_02").mkdir(parents=True)
  with pytest.raises(InputError, match=r"s3_ne_02: clip name says negative but it is in a "
                     "positive folder"):
    scan_smic(tmp_path)


def test_smic_key_spellings():
  assert smic_key("s3_ne_03", "x") == ("s03", "s03_ne_03", "negative")
  assert smic_key("s03_ne_03", "x") == ("s03", "s03_ne_03", "negative")
  assert smic_key("s20_sur_01", "x") == ("s20", "s20_sur_01", "surprise")
  with pytest.raises(InputError, match="folder.bmp: 'img1' is not a SMIC clip name"):
    smic_key("img1", "folder.bmp")


@pytest.mark.parametrize("apex_column", [False, True])
def test_smic_e_sheet(tmp_path, apex_column):
  clips = layouts.smic_e_clips()
  path = layouts.write_smic_e_sheet(tmp_path / "SMIC-HS-E_annotation.xlsx", clips,
                                    apex_column=apex_column)
  annotations = read_smic_e_sheet(path)
  assert len(annotations) == 164
  third = next(a for a in annotations if a.sample == "s03_ne_03")
  assert third.subject == "s03" and third.source.endswith("row 16")
  assert (third.onset, third.offset) == (302370, 302380)
  assert third.apex == (302380 if apex_column else None)


def test_shipped_smic_table():
  table = read_frame_table(shipped_smic_table(), "smic")
  assert len(table) == 164
  assert table["s01", "s01_ne_01"].onset == 559740
  assert table["s01", "s01_ne_01"].apex == 559753
  assert all(row.onset < row.apex <= row.offset for row in table.values())


def test_frame_table_replaces_annotated_frames(tmp_path, samm_sheet):
  path = tmp_path / "samm-corrections.csv"
  path.write_text("028,028_4_1,5100,5102,5104,1\n")  # SAMM subjects may be unpadded elsewhere
  table = read_frame_table(path, "samm")
  corrected = {a.sample: a for a in apply_frame_table(read_samm_sheet(samm_sheet), table)}
  assert (corrected["028_4_1"].onset, corrected["028_4_1"].apex) == (5100, 5102)
  assert "samm-corrections.csv row 1" in corrected["028_4_1"].source
  assert corrected["006_1_2"].apex == read_samm_sheet(samm_sheet)[0].apex


# Every malformed input gives an error naming the file and the row (or the missing header).
def _casme2_edit(cell, value):
  def edit(sheet):
    sheet[cell] = value
  return edit


CASME2_CASES = [
    ("E5", "abc", r"row 5: ApexFrame is 'abc', expected an integer"),
    ("D3", None, r"row 3: OnsetFrame is empty"),
    ("D4", "NaN", r"row 4: OnsetFrame is 'NaN'"),  # as written by dataframe exports
    ("E7", "#N/A", r"row 7: ApexFrame is '#N/A'"),  # an Excel error cell
    ("F6", 2.5, r"row 6: OffsetFrame is 2.5"),
    ("I8", "angry", r"row 8: unknown casme2 emotion 'angry'"),
    ("A9", "xx", r"row 9: Subject is 'xx'"),
    ("B10", None, r"row 10: Filename is empty"),
    ("F11", 1, r"row 11: OffsetFrame 1 is before OnsetFrame"),
    ("B12", "EP02_01f", r"row 12: duplicate clip sub01/EP02_01f \(first at .* row 2\)"),
    ("D1", "Onset", r"row 1: header lacks column\(s\) \['OnsetFrame'\]"),
]


@pytest.mark.parametrize("cell, value, message", CASME2_CASES)
def test_malformed_casme2_sheet(tmp_path, cell, value, message):
  clips = layouts.casme2_clips()
  if cell == "B12":
    clips[10].subject = "01"
  path = layouts.write_casme2_sheet(tmp_path / "coding.xlsx", clips, edit=_casme2_edit(cell, value))
  with pytest.raises(InputError, match=f"coding.xlsx.*{message}"):
    read_casme2_sheet(path)


SAMM_CASES = [
    ("A14", "Participant", r", sheet MICRO_ONLY row 14: header lacks column\(s\) "
     r"\['Subject'\]"),
    ("B20", "007_1_1", r"row 20: Filename '007_1_1' does not belong to Subject 006"),
    ("E16", "1930?", r"row 16: Apex Frame is '1930\?'"),
    ("J17", "Joy", r"row 17: unknown samm emotion 'Joy'"),
    ("A18", None, r"row 18: Subject is empty"),
]


@pytest.mark.parametrize("cell, value, message", SAMM_CASES)
def test_malformed_samm_sheet(tmp_path, cell, value, message):
  path = layouts.write_samm_sheet(tmp_path / "coding.xlsx", layouts.samm_clips(),
                                  edit=_casme2_edit(cell, value))
  with pytest.raises(InputError, match=f"coding.xlsx.*{message}"):
    read_samm_sheet(path)


def test_samm_sheet_without_header_rows(tmp_path):
  path = layouts.write_samm_sheet(tmp_path / "coding.xlsx", [],
                                  edit=lambda sheet: sheet.delete_rows(14))
  with pytest.raises(InputError, match="coding.xlsx, sheet MICRO_ONLY: no header row with "
                     "columns .* in the first 30 rows"):
    read_samm_sheet(path)


SMIC_E_CASES = [
    ("A3", 7, r"row 3: Subject 7 does not match Filename 's1_ne_02'"),
    ("B4", "s1_xx_01", r"row 4: 's1_xx_01' is not a SMIC clip name"),
    ("D5", "start", r"row 5: OnsetF is 'start'"),
    ("N6", "happy", r"row 6: unknown smic emotion 'happy'"),
]


@pytest.mark.parametrize("cell, value, message", SMIC_E_CASES)
def test_malformed_smic_e_sheet(tmp_path, cell, value, message):
  path = layouts.write_smic_e_sheet(tmp_path / "smic.xlsx", layouts.smic_e_clips(),
                                    edit=_casme2_edit(cell, value))
  with pytest.raises(InputError, match=f"smic.xlsx.*{message}"):
    read_smic_e_sheet(path)


def test_smic_e_sheet_needs_the_hs_sheet(tmp_path):
  def rename(sheet):
    sheet.title = "VIS_copy"
  path = layouts.write_smic_e_sheet(tmp_path / "smic.xlsx", layouts.smic_e_clips(), edit=rename)
  with pytest.raises(InputError, match=r"smic.xlsx: no sheet named 'HS'"):
    read_smic_e_sheet(path)


@pytest.mark.parametrize("line, message", [
    ("s01,s01_ne_01,1,2,3", r"row 2: expected 6 fields"),
    ("s01,s01_ne_01,10,30,20,2", r"row 2: apex 30 is outside onset..offset 10..20"),
    ("s01,s01_ne_01,10,x,20,2", r"row 2: apex is 'x'"),
    ("s01,s01_ne_02,1,2,3,2", r"row 2: duplicate clip s01/s01_ne_02 \(first at .*row 1\)"),
])
def test_malformed_frame_table(tmp_path, line, message):
  path = tmp_path / "table.csv"
  path.write_text(f"s01,s01_ne_02,1,2,3,2\n{line}\n")
  with pytest.raises(InputError, match=f"table.csv {message}"):
    read_frame_table(path, "smic")


@pytest.mark.parametrize("reader", [read_casme2_sheet, read_samm_sheet, read_smic_e_sheet])
def test_missing_or_unreadable_sheet(tmp_path, reader):
  with pytest.raises(InputError, match="absent.xlsx: annotation sheet not found"):
    reader(tmp_path / "absent.xlsx")
  (tmp_path / "text.xlsx").write_text("Subject,Filename\n")
  with pytest.raises(InputError, match="text.xlsx: not a readable .xlsx workbook"):
    reader(tmp_path / "text.xlsx")

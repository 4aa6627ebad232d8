"""Readers for the raw datasets' annotations: CASME II and SAMM coding sheets, SMIC folders and the
SMIC-E sheet, and onset/apex/offset tables. Each returns `Annotation` records keyed like the
organisers' list, and raises `data_prep.InputError` naming the file and row of any malformed cell."""

from data_prep.annotations.casme2 import read_casme2_sheet
from data_prep.annotations.labels import EMOTION_CLASSES, emotion_class
from data_prep.annotations.records import Annotation
from data_prep.annotations.samm import read_samm_sheet
from data_prep.annotations.smic import read_smic_e_sheet, scan_smic, smic_key
from data_prep.annotations.tables import (FrameRow, apply_frame_table, read_frame_table,
                                          shipped_smic_table)

__all__ = [
    "Annotation", "EMOTION_CLASSES", "FrameRow", "apply_frame_table", "emotion_class",
    "read_casme2_sheet", "read_frame_table", "read_samm_sheet", "read_smic_e_sheet", "scan_smic",
    "shipped_smic_table", "smic_key",
]

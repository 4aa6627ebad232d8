"""MEGC2019's mapping from each database's emotion labels to the three composite classes.

From the organisers' MEGC2019 guideline: only disgust and repression make
CASME II's negative class (its fear and sadness clips are dropped); SAMM's negative class is anger,
contempt, disgust, fear and sadness; SMIC is already 3-class. `None` marks a dropped emotion.
"""

from __future__ import annotations

from rcn_jax.sample_list import CLASS_NAMES

from data_prep import InputError

NEGATIVE, POSITIVE, SURPRISE = (CLASS_NAMES.index(name)
                                 for name in ("negative", "positive", "surprise"))

EMOTION_CLASSES: dict[str, dict[str, int | None]] = {
    "casme2": {
        "disgust": NEGATIVE, "repression": NEGATIVE, "happiness": POSITIVE, "surprise": SURPRISE,
        "others": None, "sadness": None, "fear": None,
    },
    "samm": {
        "anger": NEGATIVE, "contempt": NEGATIVE, "disgust": NEGATIVE, "fear": NEGATIVE,
        "sadness": NEGATIVE, "happiness": POSITIVE, "surprise": SURPRISE,
        # `Other` in the v2 sheet; other releases write `Others`.
        "other": None, "others": None,
    },
    "smic": {"negative": NEGATIVE, "positive": POSITIVE, "surprise": SURPRISE},
}


def emotion_class(dataset: str, emotion: str, where: str) -> int | None:
  """The composite class of one annotated emotion, or None when MEGC2019 drops it.

  Args:
    dataset: `casme2`, `samm` or `smic`.
    emotion: the label as written (CASME II lower-case, SAMM capitalised; compared without case).
    where: the file and row, named in the error for an unknown label.
  Returns:
    0 negative, 1 positive, 2 surprise, or None.
  """
  table = EMOTION_CLASSES[dataset]
  key = emotion.strip().lower()
  if key not in table:
    raise InputError(f"{where}: unknown {dataset} emotion {emotion!r}; expected one of "
                     f"{sorted(table)}")
  return table[key]

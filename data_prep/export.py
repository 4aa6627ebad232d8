"""Export of a flow-map dataset in the layout of the official RCN release's inputs.

One 3-channel PNG per sample, `<dataset>_<subject>_<sample>.png` (R, G, B = u, v, strain of
`rcn_jax.transform.to_network_input`, 8-bit: reading a PNG back gives exactly the network input of
`to_network_input(..., png_round_trip=True)`), per-subject LOSO lists `<subject>_train.txt` / `<subject>_test.txt` with lines
`<png path> <label> <dataset id>`, and `video442subName.txt` with the subjects in list order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rcn_jax import transform

DATASET_IDS = {"casme2": 0, "smic": 1, "samm": 2}  # the release's `dbid`
SUBJECTS_FILE = "video442subName.txt"
IMAGE_FOLDER = "flow"


def export_official_layout(dataset_dir: str | Path, out_dir: str | Path, *,
                           resolution: int) -> list[Path]:
  """Writes the PNGs and LOSO lists of every sample of a flow-map dataset.

  Args:
    dataset_dir: a `megc2019` (or synthetic) dataset folder, `<data_dir>/<name>/<config>/<version>`.
    out_dir: where to write; PNGs go to `<out_dir>/flow/`.
    resolution: side of the square maps (20..300).
  Returns:
    The PNG paths, in dataset order.
  """
  import cv2
  import tensorflow_datasets as tfds

  out_dir = Path(out_dir)
  (out_dir / IMAGE_FOLDER).mkdir(parents=True, exist_ok=True)
  source = tfds.builder_from_directory(str(dataset_dir)).as_data_source("train")
  rows, paths = [], []
  for example in source:
    dataset, subject, sample = (example[key].decode() for key in ("dataset", "subject", "sample"))
    network_input = transform.to_network_input(np.asarray(example["flow"], np.float32), resolution)
    pixels = transform.to_png(network_input)
    relative = Path(IMAGE_FOLDER) / f"{dataset}_{subject}_{sample}.png"
    cv2.imwrite(str(out_dir / relative), pixels[..., ::-1])  # OpenCV writes BGR
    rows.append((subject, f"{relative} {int(example['label'])} {DATASET_IDS[dataset]}"))
    paths.append(out_dir / relative)
  subjects = list(dict.fromkeys(subject for subject, _ in rows))
  for held_out in subjects:
    for split, keep in (("test", True), ("train", False)):
      lines = [line for subject, line in rows if (subject == held_out) == keep]
      (out_dir / f"{held_out}_{split}.txt").write_text("".join(f"{line}\n" for line in lines))
  (out_dir / SUBJECTS_FILE).write_text("\n".join(subjects) + "\n")
  return paths

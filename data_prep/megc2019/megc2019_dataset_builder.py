"""`megc2019`: the 442-sample MEGC2019 composite (SMIC-HS, CASME II, SAMM) as [u, v, strain] maps.

The raw databases are licensed, so the builder reads a folder staged by `python -m data_prep.build`
(per-sample maps and a manifest in the organisers' list order); the dataset lands in
`<data_dir>/megc2019/<backend>/<version>/`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import tensorflow_datasets as tfds

from data_prep import InputError
from data_prep.flow import BACKENDS
from data_prep.flow_dataset import FlowMapBuilder


class Megc2019(FlowMapBuilder):
  """MEGC2019 composite flow maps; the config names the optical-flow backend."""

  name = "megc2019"
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=backend, description=f"{backend} optical flow")
                     for backend in BACKENDS]
  DESCRIPTION = (
      "The MEGC2019 composite micro-expression dataset (SMIC-HS 164, CASME II 145, SAMM 133 "
      "samples; 68 subjects; negative/positive/surprise) as full-resolution optical-flow maps "
      "[u, v, optical strain] between each clip's onset and apex frames.")
  HOMEPAGE = "https://facial-micro-expressiongc.github.io/MEGC2019/"
  CITATION = """@article{xia2020revealing,
  title={Revealing the Invisible with Model and Data Shrinking for Composite-Database
         Micro-Expression Recognition},
  author={Xia, Zhaoqiang and Peng, Wei and Khor, Huai-Qian and Feng, Xiaoyi and Zhao, Guoying},
  journal={IEEE Transactions on Image Processing}, volume={29}, pages={8590--8605}, year={2020}}"""
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  SMIC, CASME II and SAMM are licensed by their owners and must be requested from them. With the
  clip folders and annotation sheets in place, run

    python -m data_prep.build --casme2=DIR --casme2-sheet=XLSX --samm=DIR --samm-sheet=XLSX \\
        --smic=DIR --out=DATA_DIR

  which computes the flow maps, stages them with a manifest and builds this dataset
  (`python -m data_prep.build --help` lists the options, --dry-run checks the inputs only).
  """

  def check_manifest(self, manifest: Mapping[str, Any]) -> None:
    backend = manifest["settings"].get("backend")
    if backend != self.builder_config.name:
      raise InputError(f"the staged maps were computed with backend {backend!r}, not "
                       f"{self.builder_config.name!r}")

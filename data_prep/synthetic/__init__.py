"""The built-in synthetic MEGC2019 composite: the organisers' 442 samples as procedural faces that
move by class-specific facial action units, in three imitated recording domains, with the true
motion kept. `ensure_built()` turns it into the `megc2019_synthetic` flow-map dataset through
data_prep's own flow pipeline. It lets the whole pipeline run without the licensed databases; its
scores say nothing about results on the real data.

Modules: `faces` (one procedural face per subject), `action_units` (motion fields per class),
`domains` (SMIC-, CASME II- and SAMM-like cameras and nuisances), `generate` (frames and ground
truth per sample), `builder` (the TFDS builder and `ensure_built`).
"""

import importlib

from data_prep.synthetic.generate import (SamplePlan, SyntheticConfig, SyntheticSample,
                                          generate_composite, generate_sample, plan_composite)

__all__ = ["SamplePlan", "SyntheticConfig", "SyntheticSample", "ensure_built",
           "generate_composite", "generate_sample", "plan_composite"]


def __getattr__(name: str):
  # The builder pulls in TensorFlow Datasets and the flow backends (JAX); generating frames needs
  # neither, so it is imported on first use.
  if name in ("ensure_built", "Megc2019Synthetic"):
    return getattr(importlib.import_module("data_prep.synthetic.builder"), name)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

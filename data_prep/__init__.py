"""Offline preparation of the MEGC2019 composite: from the licensed CASME II, SAMM and SMIC folders
to a versioned flow-map dataset (annotations, apex, face crop, optical flow, TFDS builder).

`python -m data_prep.build --help` is the entry point (its computation: `pipeline`, its closing
summary: `build_summary`). data_prep uses `rcn_jax`'s sample list, error types and load-time
transform, never its analysis. `rcn_jax` imports data_prep through two modules only: `inference`
(new frames at inference time, for the analysis and the studies) and `synthetic` (the built-in
data, built by `rcn_jax.data`); `tests/test_layout.py` holds both sides to that.
"""

from rcn_jax.errors import UserError


class InputError(UserError):
  """Bad input (a sheet, table, folder or option); the message names the file, row or key."""

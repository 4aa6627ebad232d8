"""Offline preparation of the MEGC2019 composite: from the licensed CASME II, SAMM and SMIC folders
to a versioned flow-map dataset (annotations, apex, face crop, optical flow, TFDS builder).

`python -m data_prep.build --help` is the entry point; `rcn_jax` never imports this package.
"""


class InputError(ValueError):
  """Bad input (a sheet, table, folder or option); the message names the file, row or key."""

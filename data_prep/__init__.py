"""Offline preparation of the MEGC2019 composite: from the licensed CASME II, SAMM and SMIC folders
to a versioned flow-map dataset (annotations, apex, face crop, optical flow, TFDS builder).

`python -m data_prep.build --help` is the entry point. data_prep uses `rcn_jax`'s sample list and
error types; `rcn_jax` imports data_prep to build the built-in data and to read new frames.
"""

from rcn_jax.errors import UserError


class InputError(UserError):
  """Bad input (a sheet, table, folder or option); the message names the file, row or key."""

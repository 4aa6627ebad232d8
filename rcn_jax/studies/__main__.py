"""`python -m rcn_jax.studies`: see `rcn_jax.studies.cli`."""

import sys

from rcn_jax import xla_flags

xla_flags.apply_defaults()  # before JAX starts, as launch.py does

from rcn_jax.studies.cli import main  # pylint: disable=wrong-import-position  # noqa: E402

sys.exit(main())

"""`python -m rcn_jax.studies`: see `rcn_jax.studies.cli`."""

import sys

from rcn_jax.studies.cli import main

sys.exit(main())

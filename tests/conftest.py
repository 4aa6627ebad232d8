"""Test setup: four CPU devices (for the sharding tests) and launch.py's other XLA defaults must be
requested before JAX starts; fixtures shared by several test files (helpers and builders live in
`tests/fixtures/`)."""

from rcn_jax import xla_flags

xla_flags.apply_defaults(devices=4)

import pytest  # noqa: E402


@pytest.fixture(scope="module")
def fast_compile():
  """Tiny runs spend their time compiling; XLA's optimisations are not worth it for them.

  Not for `test_strategies` or `test_search_loop`: without its optimisations XLA:CPU (jaxlib 0.10.2)
  turns a 2-model vmapped RCN training call into NaN where the optimised and the eager programs
  agree to 1.5e-8, and that module's tiny search scores NaN too.
  """
  import jax  # pylint: disable=g-import-not-at-top  (JAX starts after XLA_FLAGS is set above)
  jax.config.update("jax_disable_most_optimizations", True)
  yield
  jax.config.update("jax_disable_most_optimizations", False)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, fast_compile):
  """The shared tiny run's folder (`fixtures.shared_run`)."""
  from fixtures.shared_run import shared_tiny_run  # pylint: disable=g-import-not-at-top
  return shared_tiny_run(tmp_path_factory)


@pytest.fixture(scope="module")
def megc2019_dir(tmp_path_factory):
  """A data dir holding the tiny `megc2019` build of SMIC's listed samples (`fixtures.loso_runs`)."""
  from fixtures.loso_runs import write_tiny_megc2019  # pylint: disable=g-import-not-at-top
  directory = tmp_path_factory.mktemp("data")
  write_tiny_megc2019(directory)
  return directory


@pytest.fixture(scope="module")
def official():
  """`(subjects [442], datasets [442])` of the organisers' list, in its order."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from rcn_jax import sample_list  # pylint: disable=g-import-not-at-top
  listed = sample_list.read_official_list()
  return np.asarray([s.subject for s in listed]), np.asarray([s.dataset for s in listed])

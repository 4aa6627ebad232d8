"""The XLA flags entry points start JAX with: defaults added, the user's own flags kept."""

import os
import pathlib
import subprocess
import sys

from rcn_jax import xla_flags


def test_defaults_are_added_to_empty_flags():
  flags = xla_flags.with_defaults("", 3).split()
  assert "--xla_force_host_platform_device_count=3" in flags
  assert "--xla_cpu_experimental_ynn_fusion_type=reduce" in flags


def test_flags_the_user_set_win():
  user = "--xla_force_host_platform_device_count=8 --xla_cpu_experimental_ynn_fusion_type= --xla_cpu_max_isa=AVX2"
  assert xla_flags.with_defaults(user, 2) == user


def test_missing_defaults_join_the_users_other_flags():
  flags = xla_flags.with_defaults("--xla_cpu_max_isa=AVX2", 2).split()
  assert flags[0] == "--xla_cpu_max_isa=AVX2"
  assert "--xla_force_host_platform_device_count=2" in flags
  assert "--xla_cpu_experimental_ynn_fusion_type=reduce" in flags


def test_jax_accepts_the_defaults():
  """XLA aborts on a flag it does not know: the pinned jaxlib must start with every default."""
  code = ("import os; from rcn_jax import xla_flags; os.environ.pop('XLA_FLAGS', None); "
          "xla_flags.apply_defaults(devices=2); import jax; print(len(jax.devices('cpu')))")
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert result.stdout.strip() == "2"


def test_launch_starts_jax_with_the_defaults(tmp_path):
  """Importing launch.py (what `python launch.py` runs first) sets the defaults before JAX starts."""
  code = ("import os, sys; sys.argv = ['launch.py']; import launch, jax; "
          "print(os.environ['XLA_FLAGS']); print(len(jax.devices('cpu')))")
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env,
                          cwd=pathlib.Path(__file__).resolve().parents[1])
  flags, devices = result.stdout.split("\n")[:2]
  assert flags == xla_flags.with_defaults("", os.cpu_count() or 1)
  assert int(devices) == (os.cpu_count() or 1)


def test_studies_entry_sets_the_defaults():
  """`python -m rcn_jax.studies` applies them too (seen after its `--help` exit)."""
  code = ("import os, runpy, sys; sys.argv = ['studies', '--help']\n"
          "try:\n  runpy.run_module('rcn_jax.studies', run_name='__main__')\n"
          "except SystemExit:\n  pass\nprint(os.environ['XLA_FLAGS'])")
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
  assert result.stdout.strip().split("\n")[-1] == xla_flags.with_defaults("", os.cpu_count() or 1)

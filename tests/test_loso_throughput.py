"""benchmarks/loso_throughput.py's report header: the CPU it ran on and the rcn-jax settings' labels."""

import argparse
import importlib.util
import os

from fixtures.loso_runs import ROOT


def _benchmark():
  spec = importlib.util.spec_from_file_location("loso_throughput", ROOT / "benchmarks" / "loso_throughput.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_the_cpu_is_named_with_its_widest_vector_isa(tmp_path):
  benchmark = _benchmark()
  cpuinfo = tmp_path / "cpuinfo"
  core = "model name\t: Some EPYC\nflags\t\t: fpu sse4_2 avx avx2 fma\n\n"
  cpuinfo.write_text(core * 2)
  assert benchmark.describe_cpu(str(cpuinfo)) == f"Some EPYC, {os.cpu_count()} cores, avx2"
  cpuinfo.write_text(core.replace("avx2", "avx2 avx512f"))
  assert benchmark.describe_cpu(str(cpuinfo)).endswith(", avx512f")
  assert benchmark.describe_cpu(str(tmp_path / "missing")) == f"unknown CPU, {os.cpu_count()} cores"


def test_user_xla_flags_are_named_in_the_rcn_jax_labels(monkeypatch):
  benchmark = _benchmark()
  args = argparse.Namespace(model="rcn_f", folds=2, epochs=1, jax_variants="auto,shard_map:2")
  monkeypatch.delenv("XLA_FLAGS", raising=False)
  names = [name for name, _, _ in benchmark._variants(args) if name.startswith("rcn-jax")]
  assert names == ["rcn-jax (launch.py defaults)", "rcn-jax shard_map:2"]
  monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_max_isa=AVX2")
  names = [name for name, _, _ in benchmark._variants(args) if name.startswith("rcn-jax")]
  assert names == ["rcn-jax (launch.py defaults) XLA_FLAGS=--xla_cpu_max_isa=AVX2",
                   "rcn-jax shard_map:2 XLA_FLAGS=--xla_cpu_max_isa=AVX2"]

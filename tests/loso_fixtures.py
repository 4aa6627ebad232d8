"""Shared test data: a tiny `megc2019` flow-map dataset on disk, in the agreed TFDS schema."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

from rcn_jax import sample_list

ROOT = Path(__file__).resolve().parents[1]


def write_tiny_megc2019(data_dir: Path, datasets=("smic",), size: int = 24, seed: int = 0) -> Path:
  """Writes `<data_dir>/megc2019/tvl1/<version>/` holding the listed samples of `datasets`.

  Each map is noise plus a bright vertical band on u whose position (left, middle, right third)
  is the class, so the class survives per-map min-max and a model can learn it. Samples
  are written in reverse list order, so a reader that keeps file order fails the order checks.
  """
  from data_prep import flow_dataset  # pylint: disable=g-import-not-at-top
  from data_prep.megc2019.megc2019_dataset_builder import Megc2019  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(seed)
  staged = data_dir / "staged"
  staged.mkdir(parents=True)
  entries = []
  for index, sample in enumerate(reversed(sample_list.read_official_list(datasets))):
    flow = rng.normal(0.0, 1.0, (size, size, 3)).astype(np.float32)
    band = slice(sample.label * size // 3, (sample.label + 1) * size // 3)
    flow[:, band, 0] += 4.0
    name = f"{index:04d}.npz"
    np.savez(staged / name, flow=flow)
    entries.append({"file": name, "label": sample.label, "dataset": sample.dataset,
                    "subject": sample.subject, "sample": sample.sample, "onset_frame": 0, "apex_frame": 5})
  flow_dataset.write_manifest(staged, entries, {"backend": "tvl1"})
  return flow_dataset.prepare(Megc2019, data_dir, staged, config="tvl1")


def tiny_overrides(data_dir: Path) -> list[str]:
  """Flags that shrink a smoke config to a seconds-long run on `write_tiny_megc2019` data."""
  return ["--config.model.features=4", "--config.model.pool_size=2", "--config.data.name=megc2019",
          f"--config.data.data_dir={data_dir}", "--config.data.resolution=20",
          "--config.data.datasets=('smic',)", "--config.train.batch_size=32",
          "--config.train.learning_rate=0.01", "--config.parallel.models_per_call=1",
          "--config.report.bootstrap_resamples=20"]


def launch(args: list[str], *, cache_dir: Path, devices: int = 4, **popen_kwargs) -> subprocess.Popen:
  """Starts `launch.py` with `devices` forced host devices and a shared compilation cache."""
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", PYTHONUNBUFFERED="1")
  return subprocess.Popen([sys.executable, str(ROOT / "launch.py"), f"--xla_cache_dir={cache_dir}", *args],
                          cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          **popen_kwargs)


def free_port() -> int:
  """A TCP port on localhost that nothing listens on now (for a distributed run's coordinator)."""
  with socket.socket() as probe:
    probe.bind(("localhost", 0))
    return probe.getsockname()[1]

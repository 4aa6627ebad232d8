"""A run killed with SIGKILL mid-training resumes from its checkpoint and ends bitwise identical."""

import json
import time

from fixtures.loso_runs import launch, tiny_overrides, write_tiny_megc2019

EPOCHS = 12


def _args(data_dir, workdir):
  # Five models on four devices: a padded fold slot, as in the real 68-fold run.
  return ["--config=configs/rcn.py:smoke", f"--workdir={workdir}", *tiny_overrides(data_dir),
          "--config.protocol.max_folds=5", f"--config.train.num_epochs={EPOCHS}"]


def _committed_epochs(workdir):
  directory = workdir / "checkpoints"
  if not directory.is_dir():
    return []
  return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit() and (p / "_CHECKPOINT_METADATA").exists())


def test_resume_after_sigkill_gives_identical_results(tmp_path):
  data_dir = tmp_path / "data"
  write_tiny_megc2019(data_dir)
  cache = tmp_path / "xla"

  whole = tmp_path / "whole"
  process = launch(_args(data_dir, whole), cache_dir=cache)
  _, err = process.communicate(timeout=600)
  assert process.returncode == 0, err[-3000:]

  resumed = tmp_path / "resumed"
  process = launch(_args(data_dir, resumed), cache_dir=cache)
  deadline = time.monotonic() + 600
  while not _committed_epochs(resumed) and process.poll() is None and time.monotonic() < deadline:
    time.sleep(0.02)
  process.kill()
  process.communicate()
  assert process.returncode == -9
  assert not (resumed / "results.json").exists(), "the run finished before it could be killed"
  killed_at = _committed_epochs(resumed)
  assert killed_at and max(killed_at) < EPOCHS

  process = launch(_args(data_dir, resumed), cache_dir=cache)
  _, err = process.communicate(timeout=600)
  assert process.returncode == 0, err[-3000:]
  results = json.loads((resumed / "results.json").read_text())
  reference = json.loads((whole / "results.json").read_text())
  assert results["execution"]["resumed_from_epoch"] >= max(killed_at)
  assert reference["execution"]["resumed_from_epoch"] == 0
  for name in ("predictions.csv", "train_loss.csv", "megc2019_seed0.log"):
    assert (resumed / name).read_text() == (whole / name).read_text(), name
  for key in ("uar", "uf1", "per_dataset", "seeds", "training"):
    assert results[key] == reference[key], key

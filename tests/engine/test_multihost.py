"""Runs over 1, 2, 4 or 8 devices and over 2 processes give the predictions of a one-device run.

Every run trains five models (folds), so 2, 4 and 8 devices all need padded slots. The commands
are the ones docs/distributed.md gives: `launch.py` with forced host devices, and two processes
joined with `--coordinator_address/--num_processes/--process_id` (gloo collectives on CPU).
"""

import csv
import json
import shutil

import numpy as np
import pytest

from fixtures.loso_runs import free_port, launch, tiny_overrides, write_tiny_megc2019

# The module fixture trains eight runs: once, on one worker (`--dist loadgroup` in setup.cfg).
pytestmark = pytest.mark.xdist_group("multihost")

FOLDS = 5
EPOCHS = 3
SINGLE_PROCESS_DEVICES = (1, 2, 4, 8)


def _args(data_dir, workdir):
  return ["--config=configs/rcn.py:smoke", f"--workdir={workdir}", *tiny_overrides(data_dir),
          f"--config.protocol.max_folds={FOLDS}", f"--config.train.num_epochs={EPOCHS}"]


def _launch_processes(data_dir, workdir, cache, *, processes=2, devices_per_process=2, extra=()):
  """Starts the processes of one distributed run; returns them in process order."""
  address = f"localhost:{free_port()}"
  return [launch([*_args(data_dir, workdir), *extra, f"--coordinator_address={address}",
                  f"--num_processes={processes}", f"--process_id={index}"],
                 cache_dir=cache, devices=devices_per_process)
          for index in range(processes)]


def _finish(processes):
  outputs = [process.communicate(timeout=900) for process in processes]
  for process, (_, err) in zip(processes, outputs):
    assert process.returncode == 0, err[-3000:]
  return outputs


def _probabilities(workdir) -> dict[str, np.ndarray]:
  with open(workdir / "predictions.csv") as stream:
    rows = list(csv.DictReader(stream))
  columns = [c for c in rows[0] if c.startswith("p_")]
  return {row["sample"]: np.asarray([float(row[c]) for c in columns]) for row in rows}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  root = tmp_path_factory.mktemp("multihost")
  data_dir = root / "data"
  write_tiny_megc2019(data_dir)
  cache = root / "xla"
  workdirs = {devices: root / f"devices{devices}" for devices in SINGLE_PROCESS_DEVICES}
  single = [launch(_args(data_dir, workdirs[d]), cache_dir=cache, devices=d) for d in SINGLE_PROCESS_DEVICES]
  workdirs["2x2"] = root / "processes2x2"
  distributed = _launch_processes(data_dir, workdirs["2x2"], cache)
  _finish(single)
  outputs = _finish(distributed)
  return {"data_dir": data_dir, "cache": cache, "workdirs": workdirs, "distributed_outputs": outputs}


def _assert_identical(probabilities, expected, name):
  assert probabilities.keys() == expected.keys(), name
  for sample, values in probabilities.items():
    np.testing.assert_array_equal(values, expected[sample], err_msg=f"{name}, {sample}")


def _results(workdir):
  return json.loads((workdir / "results.json").read_text())


def test_every_device_count_gives_the_one_device_predictions(runs):
  workdirs = runs["workdirs"]
  reference = _probabilities(workdirs[1])
  assert _results(workdirs[1])["execution"]["strategy"] == "loop"
  assert len(reference) > 20
  for devices in (2, 4, 8):
    results = _results(workdirs[devices])
    assert results["execution"]["strategy"] == "shard_map"
    assert len(results["execution"]["devices"]) == devices
    # Five models padded to a multiple of the devices: 6 slots on 2 devices, 8 on 4 and 8.
    assert results["execution"]["slots"] == -(-FOLDS // devices) * devices
    probabilities = _probabilities(workdirs[devices])
    # Padding never changes a real model: every device runs the same single-model program.
    _assert_identical(probabilities, _probabilities(workdirs[2]), f"{devices} devices")
    for sample, values in probabilities.items():
      np.testing.assert_allclose(values, reference[sample], atol=1e-5, err_msg=f"{devices} devices, {sample}")


def test_two_processes_give_the_single_process_predictions(runs):
  workdirs = runs["workdirs"]
  results = _results(workdirs["2x2"])
  assert results["execution"]["processes"] == 2
  assert len(results["execution"]["devices"]) == 4
  assert results["execution"]["slots"] == 8
  one_process = _results(workdirs[4])
  assert one_process["execution"]["processes"] == 1
  # Two processes of two devices run the four-device program: bitwise the same numbers.
  _assert_identical(_probabilities(workdirs["2x2"]), _probabilities(workdirs[4]), "2 processes x 2 devices")
  for key in ("uar", "uf1", "per_dataset", "training"):
    assert results[key] == one_process[key], key
  assert (workdirs["2x2"] / "train_loss.csv").read_text() == (workdirs[4] / "train_loss.csv").read_text()


def test_only_process_zero_reports(runs):
  (out_main, _), (out_other, _) = runs["distributed_outputs"]
  assert "pooled LOSO scores" in out_main and "composite" in out_main
  # gloo's own connection messages aside, process 1 prints nothing.
  assert "pooled LOSO scores" not in out_other and "UAR" not in out_other


def test_checkpoints_restore_across_processes_and_topologies(runs, tmp_path):
  """A finished two-process run's last checkpoint restores in two processes and in one process."""
  source = runs["workdirs"]["2x2"]
  expected = _probabilities(source)
  for name, start in (("two_processes", _launch_processes), ("one_process", None)):
    workdir = tmp_path / name
    shutil.copytree(source, workdir)
    (workdir / "results.json").unlink()
    (workdir / "predictions.csv").unlink()
    if start is None:
      processes = [launch(_args(runs["data_dir"], workdir), cache_dir=runs["cache"], devices=4)]
    else:
      processes = start(runs["data_dir"], workdir, runs["cache"])
    _finish(processes)
    assert _results(workdir)["execution"]["resumed_from_epoch"] == EPOCHS
    _assert_identical(_probabilities(workdir), expected, name)


def test_distributed_without_a_cluster_is_a_usage_error(tmp_path):
  process = launch(["--config=configs/rcn.py:smoke", f"--workdir={tmp_path / 'run'}", "--distributed"],
                   cache_dir=tmp_path / "xla")
  _, err = process.communicate(timeout=120)
  assert process.returncode == 2
  assert "--coordinator_address, --num_processes and --process_id" in err
  assert "Traceback" not in err


def test_vmap_strategy_over_two_processes_matches_one_process(runs, tmp_path):
  """The accelerators' strategy (vmap inside shard_map), forced on CPU: 2 processes x 2 devices = 1 x 2.

  Both sides host two devices per process: XLA:CPU's vmapped (grouped) convolutions round
  differently in a process that hosts 4 or 8 forced devices than in one that hosts 1-3 (measured on
  an AVX-512 CPU), while the unrolled programs of `shard_map` agree at every device count.
  """
  vmap = ["--config.parallel.strategy=vmap"]
  one = launch([*_args(runs["data_dir"], tmp_path / "one"), *vmap], cache_dir=runs["cache"], devices=2)
  two = _launch_processes(runs["data_dir"], tmp_path / "two", runs["cache"], extra=vmap)
  _finish([one, *two])
  execution = _results(tmp_path / "two")["execution"]
  assert (execution["strategy"], execution["processes"], len(execution["devices"])) == ("vmap", 2, 4)
  _assert_identical(_probabilities(tmp_path / "two"), _probabilities(tmp_path / "one"), "vmap, 2 processes")
  for sample, values in _probabilities(tmp_path / "one").items():
    np.testing.assert_allclose(values, _probabilities(runs["workdirs"][1])[sample], atol=1e-5, err_msg=sample)

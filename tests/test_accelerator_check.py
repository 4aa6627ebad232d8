"""benchmarks/accelerator_check.py --quick: every row of the accelerator table runs and holds on the CPU."""

import subprocess
import sys

from fixtures.loso_runs import ROOT, subprocess_env

ROWS = ("devices", "vmap = loop (float32)", "parity float32", "rcn_f reference 68 folds", "official PyTorch",
        "flow 442 pairs", "search (first order)")


def test_quick_accelerator_check_prints_its_table():
  done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "accelerator_check.py"), "--quick"],
                        cwd=ROOT, capture_output=True, text=True, env=subprocess_env(2), check=False, timeout=900)
  assert done.returncode == 0, done.stderr[-3000:]
  table = {line.split("|")[1].strip(): [cell.strip() for cell in line.split("|")[2:-1]]
           for line in done.stdout.splitlines() if line.startswith("| ") and not line.startswith("| check")}
  assert tuple(table) == ROWS
  for name, (status, seconds, result) in table.items():
    assert status in ("ok", "skipped"), (name, result)
    assert float(seconds) >= 0 and result
  assert table["devices"][2].startswith("2 x cpu")
  assert "max abs(vmap - loop)" in table["vmap = loop (float32)"][2]
  assert "1 passed" in table["parity float32"][2]
  assert "6 folds x 3 epochs" in table["rcn_f reference 68 folds"][2]
  assert "4 pairs" in table["flow 442 pairs"][2]

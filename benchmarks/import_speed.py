"""Time to import STSTNet's flat folder of the 442 listed samples (28x28 PNGs) as a flow-map dataset.

Writes the folder (`<subject>_<sample> .png`, 3 channels, 8-bit, made-up content) in a temporary
directory, then runs `python -m data_prep.import_flowmaps --layout=ststnet` as a user would (a
fresh process: Python, OpenCV and TFDS start-up included) and, for the import's own share, the
same import in this process after a warm-up. Printed first: the CPU idle share over one second
(timings on a busy machine are slower). Target: under 10 s.

  python benchmarks/import_speed.py [--repeats=3]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import cv2
import numpy as np

from loso_throughput import idle_share  # benchmarks/ is the script's folder
from rcn_jax.sample_list import read_official_list

SIZE = 28
TARGET_S = 10.0


def write_flat_folder(folder: Path) -> int:
  """One PNG per listed sample, each channel min-max normalised to 0..255 as STSTNet's."""
  folder.mkdir(parents=True)
  listed = read_official_list()
  for sample in listed:
    rng = np.random.default_rng(zlib.crc32(f"{sample.dataset}/{sample.subject}/{sample.sample}".encode()))
    image = rng.uniform(size=(SIZE, SIZE, 3))
    image = (image - image.min(axis=(0, 1))) / np.ptp(image, axis=(0, 1))
    cv2.imwrite(str(folder / f"{sample.subject}_{sample.sample} .png"), np.round(image * 255).astype(np.uint8))
  return len(listed)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--repeats", type=int, default=3, help="imports timed per way (default 3)")
  args = parser.parse_args()
  print(f"CPU idle share before measuring: {idle_share():.2f}")
  with tempfile.TemporaryDirectory() as temporary:
    root = Path(temporary)
    count = write_flat_folder(root / "flat")
    command = [sys.executable, "-m", "data_prep.import_flowmaps", "--layout=ststnet", f"--source={root / 'flat'}",
               f"--out={root / 'data'}", "--name=bench"]
    fresh = []
    for _ in range(args.repeats):
      started = time.perf_counter()
      subprocess.run(command, check=True, capture_output=True)
      fresh.append(time.perf_counter() - started)
    from data_prep import import_flowmaps  # pylint: disable=g-import-not-at-top

    in_process = []
    for _ in range(args.repeats + 1):  # the first one warms the imports up
      started = time.perf_counter()
      assert import_flowmaps.main(command[3:]) == 0
      in_process.append(time.perf_counter() - started)
    print(f"{count} samples of {SIZE}x{SIZE} px; fresh process (as the command runs): best "
          f"{min(fresh):.2f} s, median {sorted(fresh)[len(fresh) // 2]:.2f} s; in process after warm-up: best "
          f"{min(in_process[1:]):.2f} s; target under {TARGET_S:.0f} s: "
          f"{'met' if min(fresh) < TARGET_S else 'NOT met'}")


if __name__ == "__main__":
  main()

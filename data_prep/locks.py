"""A lock file that makes processes building the same dataset wait for each other.

Processes of one multi-process run (and separate runs on one machine) may all find the built-in
data missing at once; the first builds it while the others wait, then read what it wrote.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def exclusive(path: str | Path) -> Iterator[None]:
  """Holds an exclusive advisory lock on `path` (created, with its folder, if missing).

  The lock goes with the open file, so a killed holder never leaves it taken.
  """
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path, "a") as handle:
    fcntl.flock(handle, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(handle, fcntl.LOCK_UN)

"""User errors, and the one way every command-line tool reports them.

A `UserError` is bad input that the user can fix: a config value or key, a missing dataset or
file, a malformed sheet or image. Its message names the key, file or row and says what to do.
`run_main` prints such an error as one line `error: ...` and returns exit status 2; with
`--verbosity=1` (or higher) the traceback comes first. Anything else is a bug: its traceback is
shown as usual.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable

USER_ERROR_STATUS = 2


class UserError(ValueError):
  """Bad input that the user can fix; the message names the key, file or row and what to do."""


class MissingInput(UserError, FileNotFoundError):
  """A file, folder or dataset that a command needs is not there."""


def one_line(error: BaseException | str) -> str:
  """The message of `error` on one line (newlines and runs of spaces folded)."""
  return " ".join(str(error).split())


def report(error: BaseException | str, *, verbose: bool = False) -> int:
  """Prints `error: <message>` (after the traceback when verbose) and returns the exit status 2."""
  if verbose and isinstance(error, BaseException):
    traceback.print_exception(error, file=sys.stderr)
  print(f"error: {one_line(error)}", file=sys.stderr)
  return USER_ERROR_STATUS


def run_main(main: Callable[[], int | None], *, verbose: bool = False) -> int:
  """Runs a command's body; a `UserError` becomes one line and status 2, other errors propagate."""
  try:
    status = main()
  except UserError as error:
    return report(error, verbose=verbose)
  return status or 0


def add_verbosity_argument(parser: argparse.ArgumentParser) -> None:
  """`--verbosity`: 1 shows a user error's traceback too (absl's flag of the same name does so too)."""
  parser.add_argument("--verbosity", type=int, default=0,
                      help="1 or more: show the traceback of a user error too")

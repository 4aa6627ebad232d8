"""Per-epoch checkpoints of the stacked model state with orbax's CheckpointManager.

The step number is the count of finished epochs. Saving is synchronous: the next epoch donates
the state's buffers, and a process killed during a save leaves an uncommitted step that orbax
ignores on restore, so a restart resumes from the last complete epoch. In a multi-process run
every process calls `save` and `restore` alike: orbax writes and reads each process's shards and
commits a step once all have written.
"""

from __future__ import annotations

import os

import orbax.checkpoint as ocp

from rcn_jax import errors
from rcn_jax.engine.steps import State


class Checkpoints:
  """Saves and restores the stacked state of a run under `directory`.

  Args:
    directory: the checkpoint folder (created if missing).
    max_to_keep: how many epochs to keep.
  """

  def __init__(self, directory: str, max_to_keep: int = 2):
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                           enable_async_checkpointing=False)
    self._manager = ocp.CheckpointManager(os.path.abspath(directory), options=options)

  def latest_epoch(self) -> int | None:
    """Finished epochs of the newest complete checkpoint, or None."""
    return self._manager.latest_step()

  def restore(self, abstract_state: State) -> tuple[int, State]:
    """(epochs finished, state) of the newest checkpoint, laid out like `abstract_state`."""
    epoch = self._manager.latest_step()
    if epoch is None:
      raise errors.MissingInput(f"no checkpoint in {self._manager.directory}")
    return epoch, self._manager.restore(epoch, args=ocp.args.StandardRestore(abstract_state))

  def save(self, epoch: int, state: State) -> None:
    """Saves the state after `epoch` finished epochs (a new epoch: orbax refuses to overwrite a step)."""
    self._manager.save(epoch, args=ocp.args.StandardSave(state), force=True)
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()

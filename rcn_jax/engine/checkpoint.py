"""Per-epoch checkpoints of the stacked model state with orbax's CheckpointManager.

The step number is the count of finished epochs. Saving is synchronous: the next epoch donates
the state's buffers, and a process killed during a save leaves an uncommitted step that orbax
ignores on restore, so a restart resumes from the last complete epoch. In a multi-process run
every process calls `save` and `restore` alike: orbax writes and reads each process's shards and
commits a step once all have written. On disk the state is its field dictionary
(`flax.serialization.to_state_dict`), the layout runs of earlier releases were saved in.
"""

from __future__ import annotations

import os

import flax.serialization
import orbax.checkpoint as ocp

from rcn_jax import errors
from rcn_jax.engine.program import TrainState


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

  def restore(self, abstract_state: TrainState) -> tuple[int, TrainState]:
    """(epochs finished, state) of the newest checkpoint, laid out like `abstract_state`."""
    epoch = self._manager.latest_step()
    if epoch is None:
      raise errors.MissingInput(f"no checkpoint in {self._manager.directory}")
    template = flax.serialization.to_state_dict(abstract_state)
    restored = self._manager.restore(epoch, args=ocp.args.StandardRestore(template))
    return epoch, flax.serialization.from_state_dict(abstract_state, restored)

  def save(self, epoch: int, state: TrainState) -> None:
    """Saves the state after `epoch` finished epochs (a new epoch: orbax refuses to overwrite a step)."""
    self._manager.save(epoch, args=ocp.args.StandardSave(flax.serialization.to_state_dict(state)), force=True)
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()

"""`rcn_jax.engine.checkpoint`: the newest complete epoch restores bitwise, old ones are dropped."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rcn_jax import errors
from rcn_jax.engine import checkpoint


def _state(value: float):
  return {"params": {"w": jnp.full((2, 3), value, jnp.float32)}, "active": jnp.asarray([True, False]),
          "epochs_trained": jnp.asarray([3, 1], jnp.int32)}


def test_newest_epoch_restores_bitwise_and_old_ones_are_dropped(tmp_path):
  store = checkpoint.Checkpoints(str(tmp_path / "checkpoints"), max_to_keep=2)
  assert store.latest_epoch() is None
  with pytest.raises(errors.MissingInput, match="no checkpoint"):
    store.restore(_state(0.0))
  for epoch in (1, 2, 3):
    store.save(epoch, _state(epoch / 4))
  store.close()
  assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["2", "3"]
  reopened = checkpoint.Checkpoints(str(tmp_path / "checkpoints"))
  abstract = jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype), _state(0.0))
  epoch, state = reopened.restore(abstract)
  reopened.close()
  assert epoch == 3
  for restored, saved in zip(jax.tree.leaves(state), jax.tree.leaves(_state(3 / 4))):
    assert restored.dtype == saved.dtype
    np.testing.assert_array_equal(restored, saved)

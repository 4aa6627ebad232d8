"""`rcn_jax.engine.strategies`: the strategy setting, the fold mesh, vmap blocks and their memory rule."""

import jax
import numpy as np
import pytest

from fixtures.tiny_runs import tiny_composite, tiny_config
from rcn_jax import errors
from rcn_jax.engine import plan, strategies


def test_the_strategy_setting_is_checked_once_and_auto_follows_the_backend():
  devices = jax.devices()
  with pytest.raises(errors.UserError, match=r"parallel.strategy='pmap': expected one of \('auto'"):
    strategies.resolve_strategy("pmap", devices)
  assert strategies.resolve_strategy("auto", devices[:1]) == "loop"
  assert strategies.resolve_strategy("auto", devices[:2]) == "shard_map"  # CPU devices
  assert strategies.resolve_strategy("vmap", devices) == "vmap"
  assert strategies.resolve_models_per_call("shard_map", 0) == strategies.CPU_MODELS_PER_CALL
  assert strategies.resolve_models_per_call("vmap", 0) == 0  # sized from the device's memory
  assert strategies.slot_multiple("loop", 4, 3) == 3
  assert strategies.slot_multiple("shard_map", 4, 3) == 12


def test_fold_mesh_splits_the_model_axis_and_replicates_the_rest():
  mesh = strategies.fold_mesh(jax.devices()[:2])
  assert mesh.axis_names == (strategies.AXIS,) and mesh.size == 2
  split = jax.device_put(np.arange(4), strategies.model_sharding(mesh))
  assert [shard.data.tolist() for shard in split.addressable_shards] == [[0, 1], [2, 3]]
  copied = jax.device_put(np.arange(4), strategies.replicated(mesh))
  assert all(shard.data.tolist() == [0, 1, 2, 3] for shard in copied.addressable_shards)


def test_vmap_in_blocks_equals_one_vmapped_call():
  composite = tiny_composite()
  results = {}
  for per_call in (0, 2):  # 0 on CPU (no memory limit reported): all 6 slots in one call
    config = tiny_config("vmap")
    config.parallel.models_per_call = per_call
    run = plan.plan_run(config, composite, jax.devices()[:1])
    executor = run.executor
    assert executor.models_per_call == (6 if per_call == 0 else 2) and executor.vectorised
    state = executor.init(run.init_keys)
    for epoch in range(2):
      state = executor.train_epoch(state, epoch)
    results[per_call] = (jax.device_get(state.params), executor.predict(state))
  whole, blocks = results[0], results[2]
  # Blocks of 2 vmapped models and one call of 6: the same per-model computation, equal up to float32
  # rounding (XLA may tile batched convolutions of different sizes differently).
  for a, b in zip(jax.tree.leaves(whole[0]), jax.tree.leaves(blocks[0])):
    np.testing.assert_allclose(a, b, atol=1e-6)
  np.testing.assert_allclose(whole[1], blocks[1], atol=1e-6)
  assert not np.allclose(whole[1], 1 / 3, atol=1e-3)  # the models trained
  # The memory rule accelerators use (CPU reports no limit): blocks shrink with the memory.
  tables = jax.tree.map(np.asarray, executor.tables)
  data = jax.tree.map(np.asarray, executor.data)
  sizes = [strategies.vmap_block_size(executor.program, executor.mesh, 6, tables, data, limit=limit)
           for limit in (1 << 40, 1)]
  assert sizes == [6, 1]

"""`rcn_jax.engine.plan`: a config and a composite become the program, the slots and the executor."""

import jax
import numpy as np

from fixtures.tiny_runs import tiny_composite, tiny_config
from rcn_jax import folds
from rcn_jax.engine import plan


def test_model_keys_depend_on_the_seed_and_fold_only():
  loso = folds.make_folds(["a", "b", "c"], ["smic"] * 3)
  init_all, train_all = plan.model_keys(folds.layout_models(loso, (0, 1), 4))
  init_one, train_one = plan.model_keys(folds.layout_models(loso[1:2], (1,), 2))
  # Slot 4 of the full layout is fold b of seed 1; slot 0 of the small one too.
  np.testing.assert_array_equal(init_all[4], init_one[0])
  np.testing.assert_array_equal(train_all[4], train_one[0])
  assert len({tuple(k) for k in train_all[:6]}) == 6 and not np.array_equal(init_all[0], train_all[0])
  np.testing.assert_array_equal(init_one[1], init_all[7])  # padding slots share one key


def test_create_program_sizes_the_epoch_for_the_largest_fold():
  config = tiny_config()
  config.parallel.steps_per_call = 2
  program = plan.create_program(config, max_train_size=20)
  settings = program.settings
  assert (settings.batch_size, settings.steps_per_epoch, settings.max_epochs) == (8, 3, 3)
  assert (settings.unrolled_steps, settings.calls_per_epoch) == (2, 2)


def test_plan_run_lays_out_the_kept_folds_and_their_tables():
  composite = tiny_composite()
  run = plan.plan_run(tiny_config("shard_map"), composite, jax.devices()[:2],
                      fold_names=("casme2/sub02", "smic/s01"))
  assert [f.name for f in run.folds] == ["casme2/sub02", "smic/s01"]
  execution = dict(run.execution)
  assert len(execution.pop("devices")) == 2
  assert execution == {"strategy": "shard_map", "models_per_call": 1, "models": 2, "slots": 2}
  tables = jax.tree.map(np.asarray, run.executor.tables)
  assert tables.key.shape == (2, 2) and tables.train_mask.shape == (2, 24)
  np.testing.assert_array_equal(tables.test_indices, run.test_indices)
  for slot, fold in enumerate(run.folds):
    assert sorted(np.flatnonzero(tables.train_mask[slot]).tolist()) == fold.train_indices.tolist()
    assert set(run.test_indices[slot][run.test_valid[slot]].tolist()) == set(fold.test_indices.tolist())
  np.testing.assert_array_equal(np.asarray(run.executor.data.inputs), composite.flows)
  _, train_keys = plan.model_keys(run.layout)
  np.testing.assert_array_equal(tables.key, train_keys)
  assert run.executor.abstract_state().loss_history.shape == (2, 3)

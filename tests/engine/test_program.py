"""`rcn_jax.engine.steps`: honest epoch minibatches, one batch cutter for JAX and NumPy, optimiser checks."""

import jax
import numpy as np
import pytest

from rcn_jax import errors, folds
from rcn_jax.engine import program


def test_epoch_minibatches_hold_only_training_samples_each_once(official):
  """The indices behind the training loss (and so the stopping rule) never name a test sample."""
  subjects, datasets = official
  fold = folds.make_folds(subjects, datasets)[5]
  train_mask = np.zeros(442, bool)
  train_mask[fold.train_indices] = True
  num_steps = -(-len(fold.train_indices) // 64)
  for epoch in range(3):
    indices, valid = jax.jit(program.epoch_batches, static_argnums=(2, 3))(
        jax.random.PRNGKey(epoch), train_mask, 64, num_steps)
    indices, valid = np.asarray(indices), np.asarray(valid)
    assert not np.isin(indices, fold.test_indices).any()  # also the masked padding positions
    assert sorted(indices[valid].tolist()) == fold.train_indices.tolist()
    assert valid.sum() == len(fold.train_indices)


def test_cut_batches_pads_with_the_first_index_alike_in_numpy_and_jax():
  order = np.asarray([7, 3, 9, 4, 1], np.int32)
  for num_steps, count in ((2, 5), (3, 5), (2, 3)):
    host = program.cut_batches(order, count, 2, num_steps)
    traced = jax.jit(program.cut_batches, static_argnums=(2, 3))(jax.numpy.asarray(order), count, 2, num_steps)
    assert isinstance(host[0], np.ndarray)
    for a, b in zip(host, traced):
      np.testing.assert_array_equal(a, np.asarray(b))
  indices, valid = program.cut_batches(order, 3, 2, 3)
  assert indices.tolist() == [[7, 3], [9, 7], [7, 7]]
  assert valid.tolist() == [[True, True], [True, False], [False, False]]


def test_optimizer_settings_are_checked_by_name():
  program.check_optimizer(0.01, 0.9, 5e-4)
  for args, message in (((0.0, 0.9, 0.0), "train.learning_rate=0.0 must be positive"),
                        ((0.01, -0.5, 0.0), "train.momentum=-0.5"),
                        ((0.01, 0.9, float("nan")), "train.weight_decay=nan")):
    with pytest.raises(errors.UserError, match=message):
      program.check_optimizer(*args)


def test_unshuffled_epochs_take_the_training_samples_in_index_order(official):
  subjects, datasets = official
  fold = folds.make_folds(subjects, datasets)[3]
  train_mask = np.zeros(442, bool)
  train_mask[fold.train_indices] = True
  num_steps = -(-len(fold.train_indices) // 256)
  batches = [jax.jit(program.epoch_batches, static_argnums=(2, 3, 4))(jax.random.PRNGKey(epoch), train_mask, 256,
                                                                    num_steps, False)
             for epoch in range(2)]
  for indices, valid in batches:
    assert np.asarray(indices)[np.asarray(valid)].tolist() == fold.train_indices.tolist()


def test_adam_follows_pytorch_adam_with_coupled_weight_decay():
  """Two steps of PyTorch's Adam update (L2 added to the gradient, bias-corrected moments), in float64."""
  lr, wd, b1, b2, eps = 1e-2, 0.1, 0.9, 0.999, 1e-8
  with jax.enable_x64(True):
    optimizer = program.make_optimizer(lr, 0.9, wd, "adam")
    params = {"w": jax.numpy.asarray([0.5, -1.0, 2.0])}
    state = optimizer.init(params)
    expected, m, v = np.asarray([0.5, -1.0, 2.0]), np.zeros(3), np.zeros(3)
    for t, grad in enumerate((np.asarray([0.1, -0.2, 0.3]), np.asarray([-0.4, 0.05, 0.2])), start=1):
      updates, state = optimizer.update({"w": jax.numpy.asarray(grad)}, state, params)
      params = {"w": params["w"] + updates["w"]}
      g = grad + wd * expected
      m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
      expected = expected - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
    np.testing.assert_allclose(np.asarray(params["w"]), expected, rtol=1e-12)
  with pytest.raises(errors.UserError, match="train.optimizer='rmsprop'"):
    program.check_optimizer(0.01, 0.9, 0.0, "rmsprop")

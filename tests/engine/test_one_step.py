"""One training call of one model, in float64: the epoch's loss and a parameter after the step.

The expected values come two ways: recomputed here from the module alone (the loss of the batch
before the update, and SGD's first step `p - lr * grad`, momentum starting at zero), and pinned
numbers recorded from this program, so a change of what one step computes is seen even where both
ways would move together.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rcn_jax import models
from rcn_jax.engine.program import Data, EpochSettings, ModelProgram, SlotTables, make_optimizer

LEARNING_RATE = 0.1
# Recorded from this program. The parameters are float64 (the same on every CPU to ~1e-15); the loss
# history is kept in float32.
PINNED_LOSS = 1.0982136726379395
PINNED_CLASSIFIER_BIAS = (-0.0002024194359633594, -0.00025746573923375804, 0.0004598851751971195)


def _program() -> ModelProgram:
  module = models.create_model("rcn", features=2, pool_size=1, dropout_rate=0.0)
  settings = EpochSettings(batch_size=8, steps_per_epoch=1, max_epochs=2)
  return ModelProgram(module, make_optimizer(LEARNING_RATE, 0.9, 0.0), settings)


def test_one_training_call_takes_one_sgd_step_on_the_batch_loss():
  program = _program()
  rng = np.random.default_rng(0)
  with jax.enable_x64(True):
    inputs = jnp.asarray(rng.random((10, 20, 20, 3)), jnp.float64)
    labels = jnp.asarray([0, 1, 2, 0, 1, 2, 0, 1, 2, 0], jnp.int32)
    train_mask = jnp.asarray([True] * 6 + [False] * 4)
    state = program.init(jax.random.PRNGKey(0), inputs[:1])
    state = state.replace(params=jax.tree.map(lambda p: p.astype(jnp.float64), state.params),
                          batch_stats=jax.tree.map(lambda s: s.astype(jnp.float64), state.batch_stats))
    state = state.replace(opt_state=program.optimizer.init(state.params))
    slot = SlotTables(jax.random.PRNGKey(1), train_mask, jnp.arange(4, dtype=jnp.int32))
    after = program.train_call(state, slot, Data(inputs, labels), jnp.int32(0), jnp.int32(0), jnp.float64(-jnp.inf))

    def batch_loss(params):  # the six training samples, in any order: a full batch
      logits, _ = program.module.apply({"params": params, "batch_stats": state.batch_stats}, inputs[:6],
                                       train=True, mutable=["batch_stats"])
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels[:6]).mean()

    loss, grads = jax.value_and_grad(batch_loss)(state.params)
    np.testing.assert_allclose(float(after.loss_history[0]), float(loss), rtol=1e-7)  # stored in float32
    expected = jax.tree.map(lambda p, g: p - LEARNING_RATE * g, state.params, grads)
    for got, want in zip(jax.tree.leaves(after.params), jax.tree.leaves(expected)):
      np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-10, atol=1e-13)
    assert int(after.epochs_trained) == 1 and np.isnan(float(after.loss_history[1]))
    np.testing.assert_allclose(float(after.loss_history[0]), PINNED_LOSS, rtol=1e-7)
    np.testing.assert_allclose(np.asarray(after.params["classifier_bias"]), PINNED_CLASSIFIER_BIAS, rtol=1e-9)

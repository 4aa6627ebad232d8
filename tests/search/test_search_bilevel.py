"""`rcn_jax.search.bilevel`: steps touch only their own parameters, the exact hyper-gradient, Eq. 8's floor."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fixtures.planted_search import planted_data, planted_program
from rcn_jax.models import search_space, supernet
from rcn_jax.search import bilevel


@pytest.mark.parametrize("order", [1, 2])
def test_architecture_and_weight_steps_touch_only_their_own_parameters(order):
  x, labels, groups = planted_data()
  program = planted_program(order, "normalized")
  alphas = bilevel.init_alphas({"feature": ("signal", "noise")}, "normalized")
  init, weight_step, arch_step, _ = program.compiled
  state = init(jax.random.key(1), jnp.asarray(x[:1]), alphas)
  state, _ = weight_step(state, _batch(x, labels, 0), jax.random.key(2))  # non-zero momentum
  after_arch, _ = arch_step(state, _batch(x, labels, 0), _batch(x, labels, 16), jax.random.key(3))
  after_weight, _ = weight_step(state, _batch(x, labels, 0), jax.random.key(3))
  for key in ("params", "batch_stats", "weight_opt_state"):
    _assert_tree_equal(after_arch[key], state[key])
  assert _tree_differs(after_arch["alphas"], state["alphas"])
  for key in ("alphas", "arch_opt_state"):
    _assert_tree_equal(after_weight[key], state[key])
  assert _tree_differs(after_weight["params"], state["params"])
  assert _tree_differs(after_weight["batch_stats"], state["batch_stats"])


def _batch(x, labels, start, size=16):
  rows = slice(start, start + size)
  return jnp.asarray(x[rows]), jnp.asarray(labels[rows]), jnp.ones(size, bool)


def _assert_tree_equal(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for left, right in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(left, right)


def _tree_differs(a, b):
  return any(np.any(np.asarray(left) != np.asarray(right))
             for left, right in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _cross_entropy(logits, labels, valid):
  """Mean cross-entropy over the valid samples, written out (not optax's)."""
  log_probs = logits - jax.scipy.special.logsumexp(logits, axis=-1, keepdims=True)
  picked = jnp.take_along_axis(log_probs, labels[:, None], axis=-1)[:, 0]
  return -jnp.sum(jnp.where(valid, picked, 0.0)) / jnp.sum(valid)


def test_second_order_hypergradient_equals_finite_differences():
  """float64, central differences of an objective written here from `module.apply` alone.

  A supernet with every kind of decision (stems of two output sizes, per-state modules with skip and
  the wide conv, gates); the unrolled step has momentum and weight decay. The objective is Eq. 8's
  normalisation, `module.apply` in training mode, a hand-written cross-entropy and the SGD update
  `w - lr * (g + wd * w + momentum * trace)`: nothing of the program's own loss or optimiser.
  """
  lr, momentum, decay = 0.5, 0.9, 5e-4
  space = search_space.SearchSpace.paper(stems=("standard", "wide", "conv5_pool"), ops=("recurrent", "shortcut_wide"),
                                     steps=2, min_steps=1)
  net = supernet.Supernet(space, 4, 2, dropout_rate=0.5)
  weight_optimizer = optax.chain(optax.add_decayed_weights(decay), optax.sgd(lr, momentum=momentum))
  program = bilevel.BilevelProgram(net, weight_optimizer, bilevel.make_arch_optimizer(0.01),
                                          "normalized", 2)
  rng = np.random.default_rng(3)
  with jax.enable_x64(True):
    alphas = {name: jnp.asarray(rng.uniform(0.5, 1.5, len(c))) for name, c in space.decisions().items()}
    # 13 px: conv5_pool gives 4x4, the other stems 5x5, so the per-size branches are exercised.
    x = jnp.asarray(rng.uniform(size=(12, 13, 13, 3)))
    labels = jnp.asarray(np.arange(12) % 3)
    train_batch = (x[:6], labels[:6], jnp.ones(6, bool))
    val_batch = (x[6:], labels[6:], jnp.asarray([True] * 5 + [False]))
    # Generic float64 values of the state's shapes, with non-zero momentum buffers.
    shapes = jax.eval_shape(program.init, jax.random.key(0), x[:1], alphas)
    state = {name: jax.tree.map(lambda a: jnp.asarray(rng.normal(scale=0.5, size=a.shape)), shapes[name])
             for name in ("params", "batch_stats", "weight_opt_state")}
    state["alphas"] = alphas
    trace = state["weight_opt_state"][1][0].trace
    key = jax.random.key(2)
    no_dropout = net.clone(dropout_rate=0.0)

    def loss(module, params, alphas, batch, rngs):
      inputs, batch_labels, valid = batch
      weights = {name: alpha / jnp.sum(alpha) for name, alpha in alphas.items()}
      logits, _ = module.apply({"params": params, "batch_stats": state["batch_stats"]}, inputs, weights,
                               train=True, mask=valid, rngs=rngs, mutable=["batch_stats"])
      return _cross_entropy(logits, batch_labels, valid)

    # Compiled without backend optimisation: compiling, not running, is what takes time here.
    fast_compile = {"xla_backend_optimization_level": 0}

    @functools.partial(jax.jit, compiler_options=fast_compile)
    def objective(alphas):
      grads = jax.grad(lambda p: loss(net, p, alphas, train_batch, {"dropout": key}))(state["params"])
      unrolled = jax.tree.map(lambda w, g, t: w - lr * (g + decay * w + momentum * t), state["params"], grads, trace)
      return loss(no_dropout, unrolled, alphas, val_batch, {})

    value, grads = jax.jit(program.hypergradient, compiler_options=fast_compile)(state, train_batch, val_batch, key)
    np.testing.assert_allclose(value, objective(state["alphas"]), rtol=1e-12)
    eps = 1e-6
    for name, alpha in state["alphas"].items():
      for index in range(alpha.shape[0]):
        shifted = lambda sign: objective({**state["alphas"], name: alpha.at[index].add(sign * eps)})
        numeric = (shifted(1) - shifted(-1)) / (2 * eps)
        np.testing.assert_allclose(grads[name][index], numeric, rtol=1e-6, err_msg=f"{name}[{index}]")


def test_eq8_weights_have_no_dead_state():
  """Alphas pushed below the floor stop at it, and a decision with every alpha there still moves."""
  optimizer = bilevel.make_arch_optimizer(0.5, weight_decay=0.0, floor=0.01)
  alphas = {"d": jnp.asarray([1.0, 1.0, 1.0])}
  state = optimizer.init(alphas)
  for _ in range(20):  # a gradient that pushes every alpha down
    updates, state = optimizer.update({"d": jnp.ones(3)}, state, alphas)
    alphas = optax.apply_updates(alphas, updates)
  np.testing.assert_allclose(alphas["d"], [0.01] * 3)
  weights = lambda a: bilevel.mixing_weights({"d": a}, "normalized")["d"]
  np.testing.assert_allclose(weights(alphas["d"]), [1 / 3] * 3)
  # The weights still depend on every alpha: a loss on candidate 0's weight has a live gradient.
  gradient = jax.grad(lambda a: -weights(a)[0])(alphas["d"])
  assert gradient[0] < 0 < gradient[1]
  updates, state = optimizer.update({"d": gradient}, state, alphas)
  revived = optax.apply_updates(alphas, updates)["d"]
  assert revived[0] > 0.01 and weights(revived)[0] > 1 / 3

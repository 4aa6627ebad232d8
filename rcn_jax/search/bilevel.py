"""Bilevel optimisation of a supernet (paper Sec. IV-C-4; DARTS): pure per-step functions.

The network weights `w` minimise the training loss, the architecture weights `alpha` the
validation loss at the weights they induce:
  min_alpha L_val(w*(alpha), alpha)  subject to  w*(alpha) = argmin_w L_train(w, alpha).
Updates alternate. The first-order step takes `grad_alpha L_val(w, alpha)` at the current weights;
the second-order step differentiates through one unrolled weight update,
`grad_alpha L_val(w'(alpha), alpha)` with `w'(alpha) = w + update(grad_w L_train(w, alpha))`, the
update being one step of the real weight optimiser (SGD with momentum and weight decay, state
included). JAX computes this hyper-gradient exactly (a Hessian-vector product through the
unrolled step), where DARTS approximates it by finite differences.

Batch norm: every loss runs with batch statistics. The weight step keeps the running statistics
its training batch produces; the architecture step discards the ones its batches produce, so
validation subjects move the architecture weights and nothing else. Dropout is off in the
validation loss (it would only add noise to the architecture gradient) and on in the unrolled
training step, with the key of the weight step that follows it.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from rcn_jax import errors

Array = jax.Array
State = dict[str, Any]
# One minibatch: inputs [B, H, W, 3], integer labels [B], valid [B] (False for padding).
Batch = tuple[Array, Array, Array]

MIXINGS = ("normalized", "softmax")
ORDERS = (1, 2)


def init_alphas(decisions: Mapping[str, tuple[str, ...]], mixing: str) -> dict[str, Array]:
  """Uniform architecture weights `{decision: [candidates]}`: ones (Eq. 8) or zero logits."""
  _check_mixing(mixing)
  fill = 1.0 if mixing == "normalized" else 0.0
  return {name: jnp.full((len(candidates),), fill, jnp.float32) for name, candidates in decisions.items()}


def mixing_weights(alphas: Mapping[str, Array], mixing: str) -> dict[str, Array]:
  """Per-decision mixing weights that sum to one.

  Args:
    alphas: `{decision: [candidates]}` architecture weights.
    mixing: `normalized` (Eq. 8: `alpha_i / sum_j alpha_j`; the optimiser keeps every alpha at or
      above a positive floor, so the sum never vanishes and every weight keeps its gradient) or
      `softmax` (DARTS).

  Returns:
    The weights, same structure.
  """
  _check_mixing(mixing)
  if mixing == "softmax":
    return {name: jax.nn.softmax(alpha) for name, alpha in alphas.items()}
  return {name: alpha / jnp.sum(alpha) for name, alpha in alphas.items()}


def _check_mixing(mixing: str) -> None:
  if mixing not in MIXINGS:
    raise errors.UserError(f"search.mixing={mixing!r}: expected one of {MIXINGS}")


def keep_params_at_least(floor: float) -> optax.GradientTransformation:
  """Projects every parameter onto `[floor, inf)` after the update (Eq. 8's alphas stay positive)."""

  def update(updates, state, params):
    projected = jax.tree.map(lambda u, p: jnp.maximum(p + u, floor) - p, updates, params)
    return projected, state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def make_arch_optimizer(learning_rate: float, *, b1: float = 0.5, b2: float = 0.999,
                        weight_decay: float = 1e-3, mixing: str = "normalized",
                        floor: float = 1e-2) -> optax.GradientTransformation:
  """Adam for the architecture weights (DARTS' betas), coupled L2 decay, and for Eq. 8 a floor.

  The floor keeps a candidate pushed down alive: its weight stays at least `floor / sum(alpha)`, the
  normalisation stays defined, and the gradient still reaches it, so it can come back. A decision
  whose alphas all sit at the floor is uniform with a live gradient (no dead state).
  """
  _check_mixing(mixing)
  if mixing == "normalized" and not floor > 0:
    raise errors.UserError(f"search.alpha_floor={floor} must be positive")
  parts = [optax.add_decayed_weights(weight_decay)] if weight_decay else []
  parts.append(optax.adam(learning_rate, b1=b1, b2=b2))
  if mixing == "normalized":
    parts.append(keep_params_at_least(floor))
  return optax.chain(*parts)


def _without_dropout(module: nn.Module) -> nn.Module:
  return module.clone(dropout_rate=0.0) if hasattr(module, "dropout_rate") else module


@dataclasses.dataclass(frozen=True)
class BilevelProgram:
  """A supernet with its two optimisers.

  Attributes:
    module: a linen module called as `module(x, weights, *, train, mask)` -> logits `[B, C]`, with
      `weights` the normalised mixing weights.
    weight_optimizer: for the network weights (SGD with momentum).
    arch_optimizer: for the architecture weights (`make_arch_optimizer`).
    mixing: how alphas become mixing weights (`MIXINGS`).
    order: 1 (alternating first-order) or 2 (unrolled second-order hyper-gradient).
  """
  module: nn.Module
  weight_optimizer: optax.GradientTransformation
  arch_optimizer: optax.GradientTransformation
  mixing: str = "normalized"
  order: int = 1

  def __post_init__(self):
    _check_mixing(self.mixing)
    if self.order not in ORDERS:
      raise errors.UserError(f"search.order={self.order}: expected one of {ORDERS}")

  def init(self, key: Array, example_input: Array, alphas: Mapping[str, Array]) -> State:
    """Fresh search state: `{params, batch_stats, alphas, weight_opt_state, arch_opt_state}`."""
    params_key, dropout_key = jax.random.split(key)
    variables = self.module.init({"params": params_key, "dropout": dropout_key}, example_input,
                                 mixing_weights(alphas, self.mixing), train=False)
    alphas = dict(alphas)
    return {"params": variables["params"], "batch_stats": variables.get("batch_stats", {}),
            "alphas": alphas, "weight_opt_state": self.weight_optimizer.init(variables["params"]),
            "arch_opt_state": self.arch_optimizer.init(alphas)}

  def loss(self, params: Any, batch_stats: Any, alphas: Mapping[str, Array], batch: Batch,
           dropout_key: Array | None) -> tuple[Array, Any]:
    """Mean cross-entropy over the valid samples, in training mode, and the new running statistics.

    Without a dropout key the module runs without dropout (batch statistics still).
    """
    inputs, labels, valid = batch
    module = self.module if dropout_key is not None else _without_dropout(self.module)
    rngs = {"dropout": dropout_key} if dropout_key is not None else {}
    logits, updates = module.apply({"params": params, "batch_stats": batch_stats}, inputs,
                                   mixing_weights(alphas, self.mixing), train=True, mask=valid,
                                   rngs=rngs, mutable=["batch_stats"])
    logits = logits.astype(jnp.promote_types(logits.dtype, jnp.float32))
    per_sample = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    mean = jnp.sum(jnp.where(valid, per_sample, 0.0)) / jnp.maximum(valid.sum(), 1)
    return mean, updates.get("batch_stats", batch_stats)

  def _unrolled_params(self, state: State, alphas: Mapping[str, Array], batch: Batch,
                       dropout_key: Array) -> Any:
    """The weights after one step of the weight optimiser on `batch`, as a function of `alphas`."""
    train_loss = lambda params: self.loss(params, state["batch_stats"], alphas, batch, dropout_key)[0]
    grads = jax.grad(train_loss)(state["params"])
    updates, _ = self.weight_optimizer.update(grads, state["weight_opt_state"], state["params"])
    return optax.apply_updates(state["params"], updates)

  def arch_objective(self, alphas: Mapping[str, Array], state: State, train_batch: Batch,
                     val_batch: Batch, dropout_key: Array) -> Array:
    """The validation loss the architecture step descends: at `w` (order 1) or at `w'(alpha)` (order 2)."""
    if self.order == 2:
      params = self._unrolled_params(state, alphas, train_batch, dropout_key)
    else:
      params = state["params"]
    return self.loss(params, state["batch_stats"], alphas, val_batch, None)[0]

  def hypergradient(self, state: State, train_batch: Batch, val_batch: Batch,
                    dropout_key: Array) -> tuple[Array, dict[str, Array]]:
    """`(objective, d objective / d alphas)` of `arch_objective` at the state's alphas."""
    return jax.value_and_grad(self.arch_objective)(state["alphas"], state, train_batch, val_batch,
                                                   dropout_key)

  def arch_step(self, state: State, train_batch: Batch, val_batch: Batch,
                dropout_key: Array) -> tuple[State, Array]:
    """One Adam step on the architecture weights; every other part of the state is returned as is.

    Args:
      state: the search state.
      train_batch: the training batch of the weight step that follows (order 2 unrolls on it).
      val_batch: a batch of validation subjects.
      dropout_key: the dropout key of the following weight step.

    Returns:
      The new state and the validation loss before the step.
    """
    value, grads = self.hypergradient(state, train_batch, val_batch, dropout_key)
    updates, arch_opt_state = self.arch_optimizer.update(grads, state["arch_opt_state"], state["alphas"])
    return {**state, "alphas": optax.apply_updates(state["alphas"], updates),
            "arch_opt_state": arch_opt_state}, value

  def weight_step(self, state: State, batch: Batch, dropout_key: Array) -> tuple[State, Array]:
    """One step of the weight optimiser on a training batch; the alphas and their optimiser stay."""
    grad_fn = jax.value_and_grad(self.loss, has_aux=True)
    (value, batch_stats), grads = grad_fn(state["params"], state["batch_stats"], state["alphas"], batch,
                                          dropout_key)
    updates, weight_opt_state = self.weight_optimizer.update(grads, state["weight_opt_state"], state["params"])
    return {**state, "params": optax.apply_updates(state["params"], updates), "batch_stats": batch_stats,
            "weight_opt_state": weight_opt_state}, value

  def weights(self, alphas: Mapping[str, Array]) -> dict[str, Array]:
    """The mixing weights of `alphas` under this program's mixing."""
    return mixing_weights(alphas, self.mixing)

  @functools.cached_property
  def compiled(self) -> tuple[Any, Any, Any, Any]:
    """`(init, weight_step, arch_step, weights)` compiled once per program (every task reuses them).

    Compiled, `init` and `weights` are also much faster than eager, which compiles op by op.
    """
    return jax.jit(self.init), jax.jit(self.weight_step), jax.jit(self.arch_step), jax.jit(self.weights)

"""Pure single-model functions: initialisation, one training epoch, test-subject prediction.

Every function here handles ONE model (one fold of one seed); the strategies in
`rcn_jax.engine.strategies` map them over the stacked model axis. Shapes are static: the epoch's
minibatches are drawn inside the program from the model's train mask and padded with masked
entries, so every fold and every epoch runs the same compiled program.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from rcn_jax.models import rcn

State = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class EpochSettings:
  """Static settings of one training epoch.

  Attributes:
    batch_size: samples per minibatch (the last one of an epoch is partly masked).
    steps_per_epoch: minibatches per epoch, enough for the largest training set.
    max_epochs: length of the per-model training-loss history.
    steps_per_call: steps unrolled into one program call. The whole epoch in one call is
      fastest on CPU (no per-step dispatch); fewer steps per call compile faster. Steps are
      unrolled rather than scanned: XLA:CPU runs convolution gradients inside a loop body many
      times slower.
  """
  batch_size: int
  steps_per_epoch: int
  max_epochs: int
  steps_per_call: int = 0

  def __post_init__(self):
    if not 0 <= self.steps_per_call:
      raise ValueError(f"steps_per_call={self.steps_per_call} must be >= 0 (0: the whole epoch)")

  @property
  def unrolled_steps(self) -> int:
    """Steps per call (the whole epoch when `steps_per_call` is 0 or larger than the epoch)."""
    if self.steps_per_call == 0:
      return self.steps_per_epoch
    return min(self.steps_per_call, self.steps_per_epoch)

  @property
  def calls_per_epoch(self) -> int:
    return -(-self.steps_per_epoch // self.unrolled_steps)


@functools.lru_cache(maxsize=None)
def make_optimizer(learning_rate: float, momentum: float, weight_decay: float) -> optax.GradientTransformation:
  """SGD with momentum and coupled L2 weight decay, as PyTorch's `SGD(weight_decay=...)` applies it.

  Cached, so equal settings give the same (hashable) transformation and programs built from equal
  configs share their compiled code.
  """
  sgd = optax.sgd(learning_rate, momentum=momentum or None)
  if weight_decay:
    return optax.chain(optax.add_decayed_weights(weight_decay), sgd)
  return sgd


def epoch_batches(key: jax.Array, train_mask: jax.Array, batch_size: int,
                  num_steps: int) -> tuple[jax.Array, jax.Array]:
  """One epoch's minibatches: a fresh permutation of the training samples, cut into batches.

  Only indices with `train_mask` set are ever returned, also in padded positions (which repeat
  the first training index and are masked), so the test samples of a fold cannot reach its
  training loss or its BatchNorm statistics.

  Args:
    key: RNG key of this model and epoch.
    train_mask: `[N]` bool, the samples this model trains on.
    batch_size: B.
    num_steps: S; `S * B` must cover the training set.

  Returns:
    indices `[S, B]` int32 and valid `[S, B]` bool.
  """
  num_samples = train_mask.shape[0]
  scores = jnp.where(train_mask, jax.random.uniform(key, (num_samples,)), 2.0)
  order = jnp.argsort(scores).astype(jnp.int32)
  slots = num_steps * batch_size
  if slots > num_samples:
    order = jnp.concatenate([order, jnp.zeros(slots - num_samples, jnp.int32)])
  order = order[:slots]
  valid = jnp.arange(slots) < train_mask.sum()
  indices = jnp.where(valid, order, order[0])
  return indices.reshape(num_steps, batch_size), valid.reshape(num_steps, batch_size)


def _select(take: jax.Array, new: Any, old: Any) -> Any:
  return jax.tree.map(lambda n, o: jnp.where(take, n, o), new, old)


@dataclasses.dataclass(frozen=True)
class ModelProgram:
  """A model, its optimiser and epoch settings, with pure per-model functions over them.

  With `stem_patches` the training program reads the stem's conv windows, formed once for the
  whole dataset by `network_inputs`, and computes the stem as matmuls: on XLA:CPU the weight
  gradient of a convolution over 3 input channels is otherwise the most expensive op of a step.
  The windows take k*k times the input's memory (25x for the 5x5 stem); see
  `strategies.make_executor`, which enables them where they fit.
  """
  module: nn.Module
  optimizer: optax.GradientTransformation
  settings: EpochSettings
  stem_patches: bool = False

  def network_inputs(self, inputs: jax.Array) -> dict[str, Any]:
    """What `train_call` reads: `{"x": inputs [N, H, W, 3]}`, plus `"patches"` with `stem_patches`."""
    patches = rcn.input_patches(self.module, inputs) if self.stem_patches else None
    return {"x": inputs} if patches is None else {"x": inputs, "patches": patches}

  def init(self, key: jax.Array, example_input: jax.Array) -> State:
    """Fresh state of one model: variables, optimiser state, stopping-rule bookkeeping.

    Args:
      key: the model's initialisation key.
      example_input: `[1, H, W, 3]` input of the right shape.

    Returns:
      `{params, batch_stats, opt_state, loss_sum, active, epochs_trained,
      loss_history [max_epochs]}`; `loss_sum` accumulates the epoch's loss across calls.
    """
    params_key, dropout_key = jax.random.split(key)
    variables = self.module.init({"params": params_key, "dropout": dropout_key}, example_input, train=False)
    params = variables["params"]
    return {
        "params": params,
        "batch_stats": variables.get("batch_stats", {}),
        "opt_state": self.optimizer.init(params),
        "loss_sum": jnp.asarray(0.0, jnp.float32),
        "active": jnp.asarray(True),
        "epochs_trained": jnp.asarray(0, jnp.int32),
        "loss_history": jnp.full((self.settings.max_epochs,), jnp.nan, jnp.float32),
    }

  def _loss(self, params, batch_stats, inputs, labels, valid, dropout_key):
    extra = {"stem_patches": inputs["patches"]} if "patches" in inputs else {}
    logits, updates = self.module.apply(
        {"params": params, "batch_stats": batch_stats}, inputs["x"], train=True, mask=valid,
        rngs={"dropout": dropout_key}, mutable=["batch_stats"], **extra)
    per_sample = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
    loss_sum = jnp.sum(jnp.where(valid, per_sample, 0.0))
    mean = loss_sum / jnp.maximum(valid.sum(), 1)
    return mean, (updates.get("batch_stats", batch_stats), loss_sum)

  def _step(self, carry, batch):
    params, batch_stats, opt_state, loss_sum, active = carry
    indices, valid, inputs_n, labels_n, dropout_key = batch
    grad_fn = jax.value_and_grad(self._loss, has_aux=True)
    batch_inputs = jax.tree.map(lambda leaf: leaf[indices], inputs_n)
    (_, (new_stats, batch_loss)), grads = grad_fn(
        params, batch_stats, batch_inputs, labels_n[indices], valid, dropout_key)
    updates, new_opt_state = self.optimizer.update(grads, opt_state, params)
    new_params = optax.apply_updates(params, updates)
    # A step without valid samples (a small fold's tail) or of a stopped model changes nothing:
    # momentum would otherwise keep moving the weights.
    take = active & valid.any()
    params, batch_stats, opt_state = _select(
        take, (new_params, new_stats, new_opt_state), (params, batch_stats, opt_state))
    return params, batch_stats, opt_state, loss_sum + jnp.where(take, batch_loss, 0.0), active

  def train_call(self, state: State, key: jax.Array, epoch: jax.Array, call: jax.Array,
                 loss_threshold: jax.Array, train_mask: jax.Array, inputs: dict[str, Any],
                 labels: jax.Array) -> State:
    """Runs call `call` of epoch `epoch` of one model; the epoch's last call applies the stopping rule.

    Args:
      state: the model's state (see `init`).
      key: the model's training key; the epoch's permutation and dropout derive from it.
      epoch: scalar int32, the epoch number (0-based).
      call: scalar int32 in [0, calls_per_epoch): which `unrolled_steps` steps of the epoch to run.
      loss_threshold: scalar float32; the model stops once its epoch-mean training loss falls
        below it (`-inf` for a fixed number of epochs). An input, not a constant, so runs that
        differ only in it share their compiled program.
      train_mask: `[N]` bool, this model's training samples.
      inputs: `network_inputs` of all samples `[N, H, W, 3]` (the gather happens inside the program).
      labels: `[N]` int32.

    Returns:
      The new state; after the last call `loss_history[epoch]` holds the epoch-mean training
      loss (NaN once the model has stopped).
    """
    settings = self.settings
    per_call = settings.unrolled_steps
    padded_steps = per_call * settings.calls_per_epoch
    order_key, dropout_key = jax.random.split(jax.random.fold_in(key, epoch))
    indices, valid = epoch_batches(order_key, train_mask, settings.batch_size, padded_steps)
    dropout_keys = jax.random.split(dropout_key, padded_steps)
    first = call * per_call
    indices, valid, dropout_keys = (jax.lax.dynamic_slice_in_dim(a, first, per_call)
                                    for a in (indices, valid, dropout_keys))
    active = state["active"]
    loss_sum = jnp.where(call == 0, 0.0, state["loss_sum"])
    carry = (state["params"], state["batch_stats"], state["opt_state"], loss_sum, active)
    for step in range(per_call):
      carry = self._step(carry, (indices[step], valid[step], inputs, labels, dropout_keys[step]))
    params, batch_stats, opt_state, loss_sum, _ = carry
    ends_epoch = call == settings.calls_per_epoch - 1
    epoch_loss = loss_sum / jnp.maximum(train_mask.sum(), 1)
    # The stopping rule reads this model's training loss and nothing else.
    stops = ends_epoch & (epoch_loss < loss_threshold)
    history = state["loss_history"]
    return {
        "params": params,
        "batch_stats": batch_stats,
        "opt_state": opt_state,
        "loss_sum": loss_sum,
        "active": active & ~stops,
        "epochs_trained": state["epochs_trained"] + (active & ends_epoch).astype(jnp.int32),
        "loss_history": jnp.where(ends_epoch, history.at[epoch].set(jnp.where(active, epoch_loss, jnp.nan)),
                                  history),
    }

  def predict(self, state: State, inputs: jax.Array, test_indices: jax.Array) -> jax.Array:
    """Class probabilities `[T, C]` of the samples `inputs[test_indices]`, in eval mode."""
    variables = {"params": state["params"], "batch_stats": state["batch_stats"]}
    logits = self.module.apply(variables, inputs[test_indices], train=False)
    return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)

"""One model's program: its training state, initialisation, one training epoch, test-subject prediction.

Every function here handles ONE model (one fold of one seed); the strategies in
`rcn_jax.engine.strategies` map them over the stacked model axis. Shapes are static: the epoch's
minibatches are drawn inside the program from the model's train mask and padded with masked
entries, so every fold and every epoch runs the same compiled program.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from rcn_jax import errors


@flax.struct.dataclass
class TrainState:
  """One model's training state (the executor stacks it `[slots, ...]`).

  Attributes:
    params: the model's parameters.
    batch_stats: its batch-norm running statistics (empty for models without batch norm).
    opt_state: the optimiser's state.
    loss_sum: scalar float32, the running epoch's summed training loss (across the epoch's calls).
    active: scalar bool, False once the stopping rule stopped the model.
    epochs_trained: scalar int32, epochs the model trained.
    loss_history: `[max_epochs]` float32 epoch-mean training losses (NaN: not trained).
  """
  params: Any
  batch_stats: Any
  opt_state: Any
  loss_sum: jax.Array
  active: jax.Array
  epochs_trained: jax.Array
  loss_history: jax.Array

  @property
  def variables(self) -> dict[str, Any]:
    """`{params, batch_stats}`, what the module applies."""
    return {"params": self.params, "batch_stats": self.batch_stats}


class SlotTables(NamedTuple):
  """What one slot (one model) reads of its own; the executor stacks them `[slots, ...]`.

  Attributes:
    key: `[2]` uint32, the model's training key.
    train_mask: `[N]` bool, the samples the model trains on.
    test_indices: `[T]` int32, the samples it is tested on (padded with one of them).
  """
  key: Any
  train_mask: Any
  test_indices: Any


class Data(NamedTuple):
  """The samples every model reads (one copy per device).

  Attributes:
    inputs: `[N, H, W, 3]` float32 network inputs.
    labels: `[N]` int32 class indices.
  """
  inputs: Any
  labels: Any


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
    shuffle: a fresh sample order every epoch (False: index order, `train.shuffle`).
  """
  batch_size: int
  steps_per_epoch: int
  max_epochs: int
  steps_per_call: int = 0
  shuffle: bool = True

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


OPTIMIZERS = ("sgd", "adam")


def check_optimizer(learning_rate: float, momentum: float, weight_decay: float, name: str = "sgd") -> None:
  """Raises a UserError naming the `train.*` key of a setting `make_optimizer` cannot use."""
  if name not in OPTIMIZERS:
    raise errors.UserError(f"train.optimizer={name!r}: expected one of {OPTIMIZERS}")
  if not learning_rate > 0:
    raise errors.UserError(f"train.learning_rate={learning_rate} must be positive")
  for key, value in (("momentum", momentum), ("weight_decay", weight_decay)):
    if not np.isfinite(value) or value < 0:
      raise errors.UserError(f"train.{key}={value} must be finite and >= 0")


@functools.lru_cache(maxsize=None)
def make_optimizer(learning_rate: float, momentum: float, weight_decay: float,
                   name: str = "sgd") -> optax.GradientTransformation:
  """PyTorch's `SGD(momentum=...)` or `Adam()` with its coupled L2 weight decay (`weight_decay=...`).

  `sgd`: momentum as PyTorch applies it (v = mu v + g). `adam`: PyTorch's defaults (betas 0.9,
  0.999, eps 1e-8, bias correction); `momentum` is unused. Weight decay is added to the gradient
  before either, as PyTorch does. Cached, so equal settings give the same (hashable)
  transformation and programs built from equal configs share their compiled code.
  """
  if name == "adam":
    update = optax.adam(learning_rate, b1=0.9, b2=0.999, eps=1e-8)
  else:
    update = optax.sgd(learning_rate, momentum=momentum or None)
  if weight_decay:
    return optax.chain(optax.add_decayed_weights(weight_decay), update)
  return update


def cut_batches(order, count, batch_size: int, num_steps: int):
  """Cuts an epoch's sample order into `[num_steps, batch_size]` minibatches.

  The core of both epoch samplers: `epoch_batches` (inside the training program, JAX) and the
  search's `host_epoch_batches` (on the host, NumPy); it runs on either kind of array.

  Args:
    order: `[M]` int sample indices, the epoch's `count` samples first.
    count: how many entries of `order` are the epoch's samples (may be traced).
    batch_size: B.
    num_steps: S; `S * B` must cover `count`.

  Returns:
    indices `[S, B]` and valid `[S, B]` bool; invalid (padding) positions repeat `order[0]`.
  """
  xp = np if isinstance(order, np.ndarray) else jnp
  slots = num_steps * batch_size
  if slots > order.shape[0]:
    order = xp.concatenate([order, xp.zeros(slots - order.shape[0], order.dtype)])
  order = order[:slots]
  valid = xp.arange(slots) < count
  indices = xp.where(valid, order, order[0])
  return indices.reshape(num_steps, batch_size), valid.reshape(num_steps, batch_size)


def epoch_batches(key: jax.Array, train_mask: jax.Array, batch_size: int,
                  num_steps: int, shuffle: bool = True) -> tuple[jax.Array, jax.Array]:
  """One training epoch's minibatches, inside the program: a fresh permutation of the training samples.

  With `shuffle=False` every epoch takes the training samples in index order (a DataLoader
  without shuffling, as some published recipes train).

  The shapes depend on `num_steps` only, not on the fold, so every fold runs the same program. Only
  indices with `train_mask` set are ever returned, also in padded positions (which repeat the first
  training index and are masked), so the test samples of a fold cannot reach its training loss or
  its BatchNorm statistics.

  Args:
    key: RNG key of this model and epoch.
    train_mask: `[N]` bool, the samples this model trains on.
    batch_size: B.
    num_steps: S; `S * B` must cover the training set.
    shuffle: a random order per epoch (True) or the index order.

  Returns:
    indices `[S, B]` int32 and valid `[S, B]` bool.
  """
  num_samples = train_mask.shape[0]
  ranks = jax.random.uniform(key, (num_samples,)) if shuffle else jnp.linspace(0.0, 1.0, num_samples)
  scores = jnp.where(train_mask, ranks, 2.0)
  order = jnp.argsort(scores).astype(jnp.int32)
  return cut_batches(order, train_mask.sum(), batch_size, num_steps)


def _at_least_float32(logits: jax.Array) -> jax.Array:
  """Logits in float32, or float64 where the model runs in it (losses of half-precision logits lose digits)."""
  return logits.astype(jnp.promote_types(logits.dtype, jnp.float32))


def _select(take: jax.Array, new: Any, old: Any) -> Any:
  return jax.tree.map(lambda n, o: jnp.where(take, n, o), new, old)


def model_input(inputs: Any, order: str, scale: float) -> Any:
  """The composite's inputs `[..., 3]` (u, v, strain in [0, 1]) as a model reads them.

  `order` `rgb` keeps u, v, strain; `bgr` reverses them (strain, v, u: an OpenCV-read PNG);
  `scale` multiplies (255: raw 8-bit values). Works on NumPy and JAX arrays.
  """
  if order == "bgr":
    inputs = inputs[..., ::-1]
  return inputs * scale if scale != 1.0 else inputs


@dataclasses.dataclass(frozen=True)
class ModelProgram:
  """A model, its optimiser, epoch settings and input convention, with pure per-model functions over them.

  `input_order` and `input_scale` (`model.input_order`, `model.input_scale`) turn the composite's
  [0, 1] u, v, strain inputs into what the model was made for, inside the program.
  """
  module: nn.Module
  optimizer: optax.GradientTransformation
  settings: EpochSettings
  input_order: str = "rgb"
  input_scale: float = 1.0

  def init(self, key: jax.Array, example_input: jax.Array) -> TrainState:
    """Fresh state of one model: variables, optimiser state, stopping-rule bookkeeping.

    Args:
      key: the model's initialisation key.
      example_input: `[1, H, W, 3]` input of the right shape.

    Returns:
      The state; `loss_history` has `max_epochs` entries.
    """
    params_key, dropout_key = jax.random.split(key)
    variables = self.module.init({"params": params_key, "dropout": dropout_key}, example_input, train=False)
    return self.start(variables)

  def start(self, variables: dict[str, Any]) -> TrainState:
    """The untrained state of a model with the given `{params, batch_stats}` (initialised or imported)."""
    params = variables["params"]
    return TrainState(
        params=params,
        batch_stats=variables.get("batch_stats", {}),
        opt_state=self.optimizer.init(params),
        loss_sum=jnp.asarray(0.0, jnp.float32),
        active=jnp.asarray(True),
        epochs_trained=jnp.asarray(0, jnp.int32),
        loss_history=jnp.full((self.settings.max_epochs,), jnp.nan, jnp.float32))

  def logits(self, variables: dict[str, Any], inputs: jax.Array, **kwargs) -> Any:
    """`module.apply` on the composite's inputs `[N, H, W, 3]` after the model's input convention."""
    return self.module.apply(variables, model_input(inputs, self.input_order, self.input_scale), **kwargs)

  def _loss(self, params, batch_stats, inputs, labels, valid, dropout_key):
    logits, updates = self.logits(
        {"params": params, "batch_stats": batch_stats}, inputs, train=True, mask=valid,
        rngs={"dropout": dropout_key}, mutable=["batch_stats"])
    per_sample = optax.softmax_cross_entropy_with_integer_labels(_at_least_float32(logits), labels)
    loss_sum = jnp.sum(jnp.where(valid, per_sample, 0.0))
    mean = loss_sum / jnp.maximum(valid.sum(), 1)
    return mean, (updates.get("batch_stats", batch_stats), loss_sum)

  def train_step(self, carry: tuple, batch: tuple) -> tuple:
    """One minibatch step of one model.

    Args:
      carry: `(params, batch_stats, opt_state, loss_sum, active)`.
      batch: `(indices [B], valid [B], data, dropout_key)`: the batch's sample indices into
        `data`, which of them are real (the rest are masked out of loss and batch statistics).

    Returns:
      The new carry; `loss_sum` grew by the batch's summed loss.
    """
    params, batch_stats, opt_state, loss_sum, active = carry
    indices, valid, data, dropout_key = batch
    grad_fn = jax.value_and_grad(self._loss, has_aux=True)
    (_, (new_stats, batch_loss)), grads = grad_fn(
        params, batch_stats, data.inputs[indices], data.labels[indices], valid, dropout_key)
    updates, new_opt_state = self.optimizer.update(grads, opt_state, params)
    new_params = optax.apply_updates(params, updates)
    # A step without valid samples (a small fold's tail) or of a stopped model changes nothing:
    # momentum would otherwise keep moving the weights.
    take = active & valid.any()
    params, batch_stats, opt_state = _select(
        take, (new_params, new_stats, new_opt_state), (params, batch_stats, opt_state))
    return params, batch_stats, opt_state, loss_sum + jnp.where(take, batch_loss, 0.0), active

  def train_call(self, state: TrainState, slot: SlotTables, data: Data, epoch: jax.Array, call: jax.Array,
                 loss_threshold: jax.Array) -> TrainState:
    """Runs call `call` of epoch `epoch` of one model; the epoch's last call applies the stopping rule.

    Args:
      state: the model's state (see `init`).
      slot: the model's tables: `key`, its training key (the epoch's permutation and dropout
        derive from it), and `train_mask`, its training samples (`test_indices` unused).
      data: every sample (the gather happens inside the program).
      epoch: scalar int32, the epoch number (0-based).
      call: scalar int32 in [0, calls_per_epoch): which `unrolled_steps` steps of the epoch to run.
      loss_threshold: scalar float32; the model stops once its epoch-mean training loss falls
        below it (`-inf` for a fixed number of epochs). An input, not a constant, so runs that
        differ only in it share their compiled program.

    Returns:
      The new state; after the last call `loss_history[epoch]` holds the epoch-mean training
      loss (NaN once the model has stopped).
    """
    settings = self.settings
    per_call = settings.unrolled_steps
    padded_steps = per_call * settings.calls_per_epoch
    train_mask = slot.train_mask
    order_key, dropout_key = jax.random.split(jax.random.fold_in(slot.key, epoch))
    indices, valid = epoch_batches(order_key, train_mask, settings.batch_size, padded_steps, settings.shuffle)
    dropout_keys = jax.random.split(dropout_key, padded_steps)
    first = call * per_call
    indices, valid, dropout_keys = (jax.lax.dynamic_slice_in_dim(a, first, per_call)
                                    for a in (indices, valid, dropout_keys))
    active = state.active
    loss_sum = jnp.where(call == 0, 0.0, state.loss_sum)
    carry = (state.params, state.batch_stats, state.opt_state, loss_sum, active)
    for step in range(per_call):
      carry = self.train_step(carry, (indices[step], valid[step], data, dropout_keys[step]))
    params, batch_stats, opt_state, loss_sum, _ = carry
    ends_epoch = call == settings.calls_per_epoch - 1
    epoch_loss = loss_sum / jnp.maximum(train_mask.sum(), 1)
    # The stopping rule reads this model's training loss and nothing else.
    stops = ends_epoch & (epoch_loss < loss_threshold)
    history = state.loss_history
    return TrainState(
        params=params,
        batch_stats=batch_stats,
        opt_state=opt_state,
        loss_sum=loss_sum,
        active=active & ~stops,
        epochs_trained=state.epochs_trained + (active & ends_epoch).astype(jnp.int32),
        loss_history=jnp.where(ends_epoch, history.at[epoch].set(jnp.where(active, epoch_loss, jnp.nan).astype(history.dtype)),
                               history))

  def predict(self, variables: dict[str, Any], inputs: jax.Array, test_indices: jax.Array) -> jax.Array:
    """Class probabilities `[T, C]` of the samples `inputs[test_indices]`, in eval mode.

    Args:
      variables: `{params, batch_stats}` of one model (`TrainState.variables`).
      inputs: `[N, H, W, 3]` the composite's inputs.
      test_indices: `[T]` int32.
    """
    logits = self.logits(variables, inputs[test_indices], train=False)
    return jax.nn.softmax(_at_least_float32(logits), axis=-1)

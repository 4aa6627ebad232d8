"""Fold-parallel execution of the per-model functions over the stacked model axis.

Three ways to run the same per-model program (`rcn_jax.engine.program.ModelProgram`) on every slot:
- `vmap`: each device runs its slots as vmapped programs, `parallel.models_per_call` models per call
  (0: the largest block that fits the device's memory). Right for accelerators; on XLA:CPU
  vmapped convolutions become grouped convolutions, 4-10x slower.
- `shard_map`: each device runs a few models per call as separate, unrolled single-model
  programs (plain convolutions), calls looping over the device's block of slots. On CPU the
  devices are forced host devices, one per core, so independent folds fill the cores.
- `loop`: the same program on one device, a few models per call.
`auto` picks `vmap` on accelerators, `shard_map` on a multi-device CPU and `loop` otherwise.
The per-model computation is the same in `loop` and `shard_map`; they agree to float32 rounding
(XLA may fuse programs of different block shapes differently). A given strategy and layout is
bitwise reproducible, which is what resuming from a checkpoint relies on.
Compiled programs are cached per (program, mesh, block size): executors of equal programs share them.
The slots are split over a one-axis `('fold',)` device mesh (`fold_mesh`); an executor reads two
pytrees, the per-slot tables (`program.SlotTables`, sharded over the mesh) and the data
(`program.Data`, replicated), so a new input is one field of one of them.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from rcn_jax import errors
from rcn_jax.engine import multihost
from rcn_jax.engine.program import Data, ModelProgram, SlotTables, TrainState

STRATEGIES = ("auto", "vmap", "shard_map", "loop")
AXIS = "fold"

# Models per device and call of the CPU block strategies when `parallel.models_per_call` is 0.
CPU_MODELS_PER_CALL = 1
# Share of an accelerator's memory the automatic vmap block may plan to use.
VMAP_MEMORY_SHARE = 0.8


def fold_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A mesh over `devices` (by default every process's devices, `jax.devices()`) with one `fold` axis.

  The axis type is `Auto`: under the `Explicit` default of `jax.make_mesh`, vmapped convolutions
  over a fold-sharded array fail to reshape the batched kernel.
  """
  devices = list(jax.devices() if devices is None else devices)
  return jax.make_mesh((len(devices),), (AXIS,), axis_types=(AxisType.Auto,), devices=devices)


def model_sharding(mesh: Mesh) -> NamedSharding:
  """Shards the leading (model) axis of every leaf over the mesh."""
  return NamedSharding(mesh, PartitionSpec(AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  """A full copy on every device (the data, scalars)."""
  return NamedSharding(mesh, PartitionSpec())


def resolve_strategy(strategy: str, devices: Sequence[jax.Device]) -> str:
  """The concrete strategy for `parallel.strategy` on `devices` (`auto` decides by backend and count).

  The one check of the setting: a UserError names it when it is unknown or cannot run here.
  """
  if strategy not in STRATEGIES:
    raise errors.UserError(f"parallel.strategy={strategy!r}: expected one of {STRATEGIES}")
  if strategy == "loop" and jax.process_count() > 1:
    raise errors.UserError("parallel.strategy='loop' runs on one device; a multi-process run needs shard_map "
                           "or vmap")
  if strategy != "auto":
    return strategy
  if devices[0].platform != "cpu":
    return "vmap"
  return "shard_map" if len(devices) > 1 else "loop"


def resolve_models_per_call(strategy: str, models_per_call: int) -> int:
  """`parallel.models_per_call` of a concrete strategy; 0 (auto) stays 0 for `vmap`, whose block
  size `make_executor` derives from the device's memory."""
  if models_per_call or strategy == "vmap":
    return models_per_call
  return CPU_MODELS_PER_CALL


def slot_multiple(strategy: str, num_devices: int, models_per_call: int) -> int:
  """What the slot count must be a multiple of under `strategy` (models_per_call 0: vmap's auto)."""
  if strategy == "loop":
    return models_per_call
  return num_devices * max(models_per_call, 1)


@functools.lru_cache(maxsize=None)
def _init_program(program: ModelProgram):
  # One model at a time: a vmapped init compiles grouped convolutions, several times slower on CPU.
  return jax.jit(program.init)


def _stack(trees: Sequence[Any]) -> Any:
  return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def _block(tree, chunk, size):
  return jax.tree.map(lambda leaf: jax.lax.dynamic_slice_in_dim(leaf, chunk * size, size), tree)


def _write_block(tree, update, chunk, size):
  return jax.tree.map(lambda leaf, new: jax.lax.dynamic_update_slice_in_dim(leaf, new, chunk * size, 0),
                      tree, update)


def _each_model(fn, per_slot: tuple, size: int, vectorised: bool):
  """`fn(*one model's share of per_slot)` for each of the `size` models of a block, stacked.

  `per_slot` is a tuple of pytrees with a leading model axis; what `fn` shares across models it
  closes over. `vectorised` vmaps `fn`; otherwise each model is its own unrolled program.
  """
  if vectorised:
    return jax.vmap(lambda args: fn(*args))(per_slot)
  return _stack([fn(*jax.tree.map(lambda leaf, i=i: leaf[i], per_slot)) for i in range(size)])


def _train_block(program, size, vectorised, state, tables, data, scalars):
  """Models `[chunk*size, (chunk+1)*size)` of this device's slots: vmapped, or each as its own program."""
  chunk = scalars["chunk"]
  train_one = lambda model, slot: program.train_call(model, slot, data, scalars["epoch"], scalars["call"],
                                                     scalars["loss_threshold"])
  new = _each_model(train_one, _block((state, tables), chunk, size), size, vectorised)
  return _write_block(state, new, chunk, size)


def _predict_block(program, size, vectorised, probabilities, state, tables, data, chunk):
  predict_one = lambda model, slot: program.predict(model.variables, data.inputs, slot.test_indices)
  new = _each_model(predict_one, _block((state, tables), chunk, size), size, vectorised)
  return _write_block(probabilities, new, chunk, size)


@functools.lru_cache(maxsize=None)
def _block_programs(program: ModelProgram, mesh: Mesh, size: int, vectorised: bool):
  # Each device runs its own block of slots inside shard_map. Letting GSPMD partition one global
  # vmapped program instead is wrong on XLA:CPU (jaxlib 0.10.2): a vmapped 1x1 convolution whose
  # input and kernel are both sharded over the model axis returns wrong values.
  # Every argument is a whole pytree: per-slot ones (probabilities, state, tables) split over the
  # mesh, shared ones (data, scalars) copied.
  slots, shared = PartitionSpec(AXIS), PartitionSpec()
  train = jax.shard_map(functools.partial(_train_block, program, size, vectorised), mesh=mesh,
                        in_specs=(slots, slots, shared, shared), out_specs=slots, check_vma=False)
  predict = jax.shard_map(functools.partial(_predict_block, program, size, vectorised), mesh=mesh,
                          in_specs=(slots, slots, slots, shared, shared), out_specs=slots, check_vma=False)
  return jax.jit(train, donate_argnums=0), jax.jit(predict, donate_argnums=0)


def abstract_state(program: ModelProgram, num_slots: int, input_shape: tuple[int, ...],
                   sharding: jax.sharding.Sharding) -> TrainState:
  """Shapes, dtypes and `sharding` of the stacked state of `num_slots` models on inputs `[H, W, 3]`.

  What restoring a checkpoint needs: an executor's own state (`Executor.abstract_state`), or a
  trained run's on any device (`rcn_jax.analysis.trained_run`).
  """
  shapes = jax.eval_shape(jax.vmap(program.init, in_axes=(0, None)),
                          jax.ShapeDtypeStruct((num_slots, 2), jnp.uint32),
                          jax.ShapeDtypeStruct((1, *input_shape), jnp.float32))
  return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), shapes)


class Executor:
  """Runs a `ModelProgram` over every slot: each device's slots in blocks of `models_per_call`.

  Data and per-slot tables live on the devices. Each device owns a contiguous block of slots; call
  `c` updates models `[c*k, (c+1)*k)` of every device's block in place (the state is donated).
  `vectorised` blocks are one vmapped program (the accelerators' way: a device's 340 models need
  not fit its memory at once); otherwise a block is k unrolled single-model programs, so no program
  sees a vmapped (grouped) convolution, which XLA:CPU runs 4-10x slower.

  Args:
    program: the per-model functions.
    mesh: the `('fold',)` mesh the slots are split over.
    tables: every slot's tables, stacked: key `[slots, 2]` uint32, train_mask `[slots, N]` bool,
      test_indices `[slots, T]` int32.
    data: inputs `[N, H, W, 3]` float32 and labels `[N]` int (placed on every device once).
    loss_threshold: the stopping rule's training-loss threshold (`-inf`: fixed epochs).
    models_per_call: k; it must divide the slots per device.
    vectorised: vmap each block instead of unrolling it.
  """

  def __init__(self, program: ModelProgram, mesh: Mesh, tables: SlotTables, data: Data,
               loss_threshold: float = float("-inf"), *, models_per_call: int, vectorised: bool = False):
    self.program = program
    self.mesh = mesh
    self.num_slots = np.shape(tables.train_mask)[0]
    if self.num_slots % mesh.size:
      raise ValueError(f"{self.num_slots} slots do not divide over {mesh.size} devices")
    per_device = self.num_slots // mesh.size
    if models_per_call < 1 or per_device % models_per_call:
      raise ValueError(f"parallel.models_per_call={models_per_call} must divide the {per_device} slots per device")
    self._per_model = model_sharding(mesh)
    self._replicated = replicated(mesh)
    tables = SlotTables(np.asarray(tables.key, np.uint32), np.asarray(tables.train_mask, bool),
                        np.asarray(tables.test_indices, np.int32))
    data = Data(np.asarray(data.inputs, np.float32), np.asarray(data.labels, np.int32))
    self.tables = jax.tree.map(lambda table: multihost.global_array(table, self._per_model), tables)
    self.data = jax.tree.map(lambda array: multihost.global_array(array, self._replicated), data)
    self._calls = [self.scalar(c) for c in range(program.settings.calls_per_epoch)]
    self.loss_threshold = multihost.global_array(np.float32(loss_threshold), self._replicated)
    self.models_per_call = models_per_call
    self.vectorised = vectorised
    self._chunks = [self.scalar(c) for c in range(per_device // models_per_call)]

  def scalar(self, value: int) -> jax.Array:
    """An int32 scalar on every device (an explicit transfer)."""
    return multihost.global_array(np.int32(value), self._replicated)

  def init(self, init_keys: np.ndarray, start_variables: Sequence[Any] | None = None) -> TrainState:
    """The stacked initial state `[slots, ...]`, sharded over the mesh (each model initialised alone).

    Args:
      init_keys: `[slots, 2]` initialisation keys.
      start_variables: per slot, `{params, batch_stats}` to start from instead of its key's
        initialisation (imported weights, `init.*`), or None; the whole argument None: none.
    """
    init_one = _init_program(self.program)
    example = np.zeros((1,) + self.data.inputs.shape[1:], np.float32)
    start_variables = start_variables or [None] * len(init_keys)
    states = jax.device_get([init_one(np.asarray(key, np.uint32), example) if variables is None
                             else self.program.start(variables)
                             for key, variables in zip(init_keys, start_variables)])
    stacked = jax.tree.map(lambda *leaves: np.stack(leaves), *states)
    return jax.tree.map(lambda leaf: multihost.global_array(leaf, self._per_model), stacked)

  def abstract_state(self) -> TrainState:
    """Shapes, dtypes and shardings of the stacked state, for restoring a checkpoint."""
    return abstract_state(self.program, self.num_slots, self.data.inputs.shape[1:], self._per_model)

  def _programs(self):
    return _block_programs(self.program, self.mesh, self.models_per_call, self.vectorised)

  def train_scalars(self, chunk: jax.Array, epoch: jax.Array, call: jax.Array) -> dict[str, jax.Array]:
    """The shared scalars of one training call (device arrays, see `scalar`)."""
    return {"chunk": chunk, "epoch": epoch, "call": call, "loss_threshold": self.loss_threshold}

  def train_epoch(self, state: TrainState, epoch: int) -> TrainState:
    """Runs epoch `epoch` of every slot; the input state is donated."""
    train, _ = self._programs()
    epoch = self.scalar(epoch)
    for chunk in self._chunks:
      for call in self._calls:
        state = train(state, self.tables, self.data, self.train_scalars(chunk, epoch, call))
    return state

  def predict(self, state: TrainState) -> np.ndarray:
    """`[slots, T, C]` class probabilities of each slot's test samples."""
    _, predict = self._programs()
    one_model = jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape[1:], leaf.dtype), state)
    one_table = jax.ShapeDtypeStruct(self.tables.test_indices.shape[1:], self.tables.test_indices.dtype)
    out = jax.eval_shape(self.program.predict, one_model.variables, self.data.inputs, one_table)
    probabilities = multihost.global_array(np.zeros((self.num_slots,) + out.shape, np.float32), self._per_model)
    for chunk in self._chunks:
      probabilities = predict(probabilities, state, self.tables, self.data, chunk)
    return multihost.to_host(probabilities)


def vmap_block_size(program: ModelProgram, mesh: Mesh, per_device: int, tables: SlotTables, data: Data,
                    limit: int | None = None) -> int:
  """The largest divisor of `per_device` whose vmapped training call fits one device's memory.

  The memory is estimated from the compiled one-model call (`memory_analysis`: its arguments, the
  whole per-device state, the tables and the data, once; its temporaries per model) against
  `limit` bytes, by default the device's `bytes_limit` (`memory_stats`). Devices that report no
  limit (CPU) take all their slots at once.
  """
  if limit is None:
    limit = (mesh.devices.flat[0].memory_stats() or {}).get("bytes_limit")
  if not limit:
    return per_device
  probe = Executor(program, mesh, tables, data, models_per_call=1, vectorised=True)
  train, _ = probe._programs()  # pylint: disable=protected-access
  zero = probe.scalar(0)
  analysis = train.lower(probe.abstract_state(), probe.tables, probe.data,
                         probe.train_scalars(zero, zero, zero)).compile().memory_analysis()
  fixed = analysis.argument_size_in_bytes + analysis.output_size_in_bytes
  per_model = max(analysis.temp_size_in_bytes, 1)
  fitting = max(int((VMAP_MEMORY_SHARE * limit - fixed) // per_model), 1)
  return max(size for size in range(1, per_device + 1) if per_device % size == 0 and size <= fitting)


def make_executor(strategy: str, program: ModelProgram, devices: Sequence[jax.Device], *, tables: SlotTables,
                  data: Data, models_per_call: int, loss_threshold: float = float("-inf")) -> Executor:
  """Builds the executor of a concrete strategy (`vmap`, `shard_map` or `loop`).

  Args:
    strategy: as returned by `resolve_strategy`.
    program: the per-model functions.
    devices: the devices to use (`loop` uses the first only).
    tables: every slot's tables, stacked `[slots, ...]` (see `Executor`).
    data: the samples (see `Executor`).
    models_per_call: models per device and call, dividing each device's slots (0: auto, see
      `resolve_models_per_call` and `vmap_block_size`).
    loss_threshold: the stopping rule's training-loss threshold (`-inf`: fixed epochs).

  Returns:
    The executor.
  """
  if strategy not in ("vmap", "shard_map", "loop"):
    raise ValueError(f"unknown concrete strategy {strategy!r}")
  mesh = fold_mesh(devices[:1] if strategy == "loop" else devices)
  if strategy == "vmap" and not models_per_call:
    models_per_call = vmap_block_size(program, mesh, np.shape(tables.train_mask)[0] // mesh.size, tables, data)
  return Executor(program, mesh, tables, data, loss_threshold,
                       models_per_call=models_per_call or CPU_MODELS_PER_CALL, vectorised=strategy == "vmap")

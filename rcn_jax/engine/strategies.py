"""Fold-parallel execution of the per-model functions over the stacked model axis.

Three ways to run the same per-model program (`rcn_jax.engine.steps.ModelProgram`) on every slot:
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
On CPU the block strategies can compute the stem from precomputed windows (`with_stem_patches`).
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import os
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec

from rcn_jax.engine import multihost, sharding
from rcn_jax.engine.steps import ModelProgram, State

STRATEGIES = ("auto", "vmap", "shard_map", "loop")

# Models per device and call of the CPU block strategies when `parallel.models_per_call` is 0.
CPU_MODELS_PER_CALL = 1
# Share of an accelerator's memory the automatic vmap block may plan to use.
VMAP_MEMORY_SHARE = 0.8
# Host memory the stem windows of every local CPU device may take together (see `with_stem_patches`).
STEM_PATCH_SHARE = 0.25
STEM_PATCH_MAX_BYTES = 2 << 30


def resolve_strategy(strategy: str, devices: Sequence[jax.Device]) -> str:
  """The concrete strategy for `strategy` on `devices` (`auto` decides by backend and count)."""
  if strategy not in STRATEGIES:
    raise ValueError(f"unknown parallel.strategy {strategy!r}; expected one of {STRATEGIES}")
  if strategy == "loop" and jax.process_count() > 1:
    raise ValueError("parallel.strategy='loop' runs on one device; a multi-process run needs shard_map or vmap")
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


def _unstack(tree: State, count: int) -> list[State]:
  return [jax.tree.map(lambda leaf, i=i: leaf[i], tree) for i in range(count)]


def _stack(trees: Sequence[State]) -> State:
  return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def _block(tree, chunk, size):
  return jax.tree.map(lambda leaf: jax.lax.dynamic_slice_in_dim(leaf, chunk * size, size), tree)


def _write_block(tree, update, chunk, size):
  return jax.tree.map(lambda leaf, new: jax.lax.dynamic_update_slice_in_dim(leaf, new, chunk * size, 0),
                      tree, update)


def _train_block(program, size, vectorised, state, keys, chunk, epoch, call, loss_threshold, train_mask, inputs,
                 labels):
  """Models `[chunk*size, (chunk+1)*size)` of this device's slots: vmapped, or each as its own program."""
  block, block_keys, block_masks = _block((state, keys, train_mask), chunk, size)
  if vectorised:
    new = jax.vmap(program.train_call, in_axes=(0, 0, None, None, None, 0, None, None))(
        block, block_keys, epoch, call, loss_threshold, block_masks, inputs, labels)
  else:
    new = _stack([program.train_call(model, block_keys[i], epoch, call, loss_threshold, block_masks[i], inputs,
                                     labels) for i, model in enumerate(_unstack(block, size))])
  return _write_block(state, new, chunk, size)


def _predict_block(program, size, vectorised, probabilities, state, chunk, inputs, test_indices):
  block, block_tests = _block((state, test_indices), chunk, size)
  if vectorised:
    new = jax.vmap(program.predict, in_axes=(0, None, 0))(block, inputs, block_tests)
  else:
    new = jnp.stack([program.predict(model, inputs, block_tests[i]) for i, model in enumerate(_unstack(block, size))])
  return _write_block(probabilities, new, chunk, size)


@functools.lru_cache(maxsize=None)
def _block_programs(program: ModelProgram, mesh: Mesh, size: int, vectorised: bool):
  # Each device runs its own block of slots inside shard_map. Letting GSPMD partition one global
  # vmapped program instead is wrong on XLA:CPU (jaxlib 0.10.2): a vmapped 1x1 convolution whose
  # input and kernel are both sharded over the model axis returns wrong values.
  fold, whole = PartitionSpec(sharding.AXIS), PartitionSpec()
  train = jax.shard_map(functools.partial(_train_block, program, size, vectorised), mesh=mesh,
                        in_specs=(fold, fold, whole, whole, whole, whole, fold, whole, whole), out_specs=fold,
                        check_vma=False)
  predict = jax.shard_map(functools.partial(_predict_block, program, size, vectorised), mesh=mesh,
                          in_specs=(fold, fold, whole, whole, fold), out_specs=fold, check_vma=False)
  return jax.jit(train, donate_argnums=0), jax.jit(predict, donate_argnums=0)


class Executor(abc.ABC):
  """Runs a `ModelProgram` over every slot; data and per-slot tables live on the devices.

  Args:
    program: the per-model functions.
    mesh: the `('fold',)` mesh the slots are split over.
    inputs: `[N, H, W, 3]` float32 network inputs (placed on every device once).
    labels: `[N]` int class indices.
    keys: `[slots, 2]` uint32, each slot's training key.
    train_mask: `[slots, N]` bool.
    test_indices: `[slots, T]` int32.
    loss_threshold: the stopping rule's training-loss threshold (`-inf`: fixed epochs).
  """

  def __init__(self, program: ModelProgram, mesh: Mesh, inputs: np.ndarray, labels: np.ndarray,
               keys: np.ndarray, train_mask: np.ndarray, test_indices: np.ndarray,
               loss_threshold: float = float("-inf")):
    self.program = program
    self.mesh = mesh
    self.num_slots = train_mask.shape[0]
    if self.num_slots % mesh.size:
      raise ValueError(f"{self.num_slots} slots do not divide over {mesh.size} devices")
    self._per_model = sharding.model_sharding(mesh)
    self._replicated = sharding.replicated(mesh)
    self.inputs = multihost.global_array(np.asarray(inputs, np.float32), self._replicated)
    # What the training program reads: the inputs and, with `program.stem_patches`, their stem windows,
    # formed once on every device.
    self.network_inputs = jax.jit(program.network_inputs, out_shardings=self._replicated)(self.inputs)
    self.labels = multihost.global_array(np.asarray(labels, np.int32), self._replicated)
    self.keys, self.train_mask, self.test_indices = (
        multihost.global_array(table, self._per_model)
        for table in (np.asarray(keys, np.uint32), np.asarray(train_mask, bool), np.asarray(test_indices, np.int32)))
    self._calls = [self.scalar(c) for c in range(program.settings.calls_per_epoch)]
    self.loss_threshold = multihost.global_array(np.float32(loss_threshold), self._replicated)

  def scalar(self, value: int) -> jax.Array:
    """An int32 scalar on every device (an explicit transfer)."""
    return multihost.global_array(np.int32(value), self._replicated)

  def init(self, init_keys: np.ndarray) -> State:
    """The stacked initial state `[slots, ...]`, sharded over the mesh (each model initialised alone)."""
    init_one = _init_program(self.program)
    example = np.zeros((1,) + self.inputs.shape[1:], np.float32)
    states = jax.device_get([init_one(np.asarray(key, np.uint32), example) for key in init_keys])
    stacked = jax.tree.map(lambda *leaves: np.stack(leaves), *states)
    return jax.tree.map(lambda leaf: multihost.global_array(leaf, self._per_model), stacked)

  def abstract_state(self) -> State:
    """Shapes, dtypes and shardings of the stacked state, for restoring a checkpoint."""
    shapes = jax.eval_shape(jax.vmap(self.program.init, in_axes=(0, None)),
                            jax.ShapeDtypeStruct((self.num_slots, 2), jnp.uint32),
                            jax.ShapeDtypeStruct((1,) + self.inputs.shape[1:], jnp.float32))
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=self._per_model), shapes)

  @abc.abstractmethod
  def train_epoch(self, state: State, epoch: int) -> State:
    """Runs epoch `epoch` of every slot; the input state is donated."""

  @abc.abstractmethod
  def predict(self, state: State) -> np.ndarray:
    """`[slots, T, C]` class probabilities of each slot's test samples."""


class BlockExecutor(Executor):
  """Each device's slots in blocks of `models_per_call` models per call; calls loop over the blocks.

  Each device owns a contiguous block of slots; call `c` updates models `[c*k, (c+1)*k)` of every
  device's block in place (the state is donated). `vectorised` blocks are one vmapped program (the
  accelerators' way: a device's 340 models need not fit its memory at once); otherwise a block is
  k unrolled single-model programs, so no program sees a vmapped (grouped) convolution, which
  XLA:CPU runs 4-10x slower.

  Args:
    models_per_call: k; it must divide the slots per device.
    vectorised: vmap each block instead of unrolling it.
    (the rest as `Executor`)
  """

  def __init__(self, program: ModelProgram, mesh: Mesh, inputs: np.ndarray, labels: np.ndarray,
               keys: np.ndarray, train_mask: np.ndarray, test_indices: np.ndarray,
               loss_threshold: float = float("-inf"), *, models_per_call: int, vectorised: bool = False):
    super().__init__(program, mesh, inputs, labels, keys, train_mask, test_indices, loss_threshold)
    per_device = self.num_slots // mesh.size
    if models_per_call < 1 or per_device % models_per_call:
      raise ValueError(f"parallel.models_per_call={models_per_call} must divide the {per_device} slots per device")
    self.models_per_call = models_per_call
    self.vectorised = vectorised
    self._chunks = [self.scalar(c) for c in range(per_device // models_per_call)]

  def _programs(self):
    return _block_programs(self.program, self.mesh, self.models_per_call, self.vectorised)

  def train_epoch(self, state: State, epoch: int) -> State:
    train, _ = self._programs()
    epoch = self.scalar(epoch)
    for chunk in self._chunks:
      for call in self._calls:
        state = train(state, self.keys, chunk, epoch, call, self.loss_threshold, self.train_mask,
                      self.network_inputs, self.labels)
    return state

  def predict(self, state: State) -> np.ndarray:
    _, predict = self._programs()
    one_model = jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape[1:], leaf.dtype), state)
    one_table = jax.ShapeDtypeStruct(self.test_indices.shape[1:], self.test_indices.dtype)
    out = jax.eval_shape(self.program.predict, one_model, self.inputs, one_table)
    probabilities = multihost.global_array(np.zeros((self.num_slots,) + out.shape, np.float32), self._per_model)
    for chunk in self._chunks:
      probabilities = predict(probabilities, state, chunk, self.inputs, self.test_indices)
    return multihost.to_host(probabilities)


def vmap_block_size(program: ModelProgram, mesh: Mesh, per_device: int, tables: dict,
                    limit: int | None = None) -> int:
  """The largest divisor of `per_device` whose vmapped training call fits one device's memory.

  The memory is estimated from the compiled one-model call (`memory_analysis`: its arguments, the
  whole per-device state and the data, once; its temporaries per model) against `limit` bytes,
  by default the device's `bytes_limit` (`memory_stats`). Devices that report no limit (CPU) take
  all their slots at once.
  """
  if limit is None:
    limit = (mesh.devices.flat[0].memory_stats() or {}).get("bytes_limit")
  if not limit:
    return per_device
  probe = BlockExecutor(program, mesh, models_per_call=1, vectorised=True, **tables)
  train, _ = probe._programs()  # pylint: disable=protected-access
  analysis = train.lower(probe.abstract_state(), probe.keys, probe.scalar(0), probe.scalar(0), probe.scalar(0),
                         probe.loss_threshold, probe.train_mask, probe.network_inputs, probe.labels
                         ).compile().memory_analysis()
  fixed = analysis.argument_size_in_bytes + analysis.output_size_in_bytes
  per_model = max(analysis.temp_size_in_bytes, 1)
  fitting = max(int((VMAP_MEMORY_SHARE * limit - fixed) // per_model), 1)
  return max(size for size in range(1, per_device + 1) if per_device % size == 0 and size <= fitting)


def _host_memory_bytes() -> int:
  try:
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
  except (ValueError, OSError, AttributeError):
    return 0


def with_stem_patches(program: ModelProgram, strategy: str, devices: Sequence[jax.Device],
                      inputs_shape: tuple[int, ...]) -> ModelProgram:
  """`program` with `stem_patches` on where it pays and fits: block strategies on CPU devices.

  Accelerators' convolutions do not need it (and their memory is better spent on models); on CPU
  the windows (25x the input for a 5x5 stem) are stored once per local device, so they are used
  only while all copies together stay within `STEM_PATCH_MAX_BYTES` and `STEM_PATCH_SHARE` of the
  host's memory.
  """
  if strategy == "vmap" or devices[0].platform != "cpu":
    return program
  candidate = dataclasses.replace(program, stem_patches=True)
  shapes = jax.eval_shape(candidate.network_inputs, jax.ShapeDtypeStruct(inputs_shape, jnp.float32))
  if "patches" not in shapes:
    return program
  per_device = sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(shapes["patches"]))
  local = sum(1 for d in devices if d.process_index == jax.process_index()) if strategy != "loop" else 1
  budget = min(STEM_PATCH_MAX_BYTES, STEM_PATCH_SHARE * _host_memory_bytes())
  return candidate if per_device * local <= budget else program


def make_executor(strategy: str, program: ModelProgram, devices: Sequence[jax.Device], *,
                  models_per_call: int, stem_windows: bool = False, **tables) -> Executor:
  """Builds the executor of a concrete strategy (`vmap`, `shard_map` or `loop`).

  With `stem_windows` the program computes its stem as matmuls over precomputed windows where they
  fit (`with_stem_patches`); the result equals the convolutions' to float32 rounding.

  Args:
    strategy: as returned by `resolve_strategy`.
    program: the per-model functions.
    devices: the devices to use (`loop` uses the first only).
    models_per_call: models per device and call, dividing each device's slots (0: auto, see
      `resolve_models_per_call` and `vmap_block_size`).
    stem_windows: let `with_stem_patches` decide (False: always convolve).
    **tables: `inputs`, `labels`, `keys`, `train_mask`, `test_indices`, `loss_threshold` (see
      `Executor`).

  Returns:
    The executor.
  """
  if strategy not in ("vmap", "shard_map", "loop"):
    raise ValueError(f"unknown concrete strategy {strategy!r}")
  if stem_windows:
    program = with_stem_patches(program, strategy, devices, np.shape(tables["inputs"]))
  mesh = sharding.fold_mesh(devices[:1] if strategy == "loop" else devices)
  if strategy == "vmap" and not models_per_call:
    models_per_call = vmap_block_size(program, mesh, len(tables["train_mask"]) // mesh.size, tables)
  return BlockExecutor(program, mesh, models_per_call=models_per_call or CPU_MODELS_PER_CALL,
                       vectorised=strategy == "vmap", **tables)

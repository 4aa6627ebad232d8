"""The supernet: every architecture of a `search_space.SearchSpace` at once, and its discrete networks.

Each decision of the space (`search_space`: `stem`, `state_<i>`, `gate_<node>`) is a weighted sum
of its candidates (Eq. 8; the weights come normalised from the caller):
- Stems with different output sizes (`conv5_pool`: 28x28 at 60 px, the others 20x20) cannot be
  summed as tensors, so the rest of the network (whose weights do not depend on the size) runs once
  per output size on the weighted sum of that size's stems, and the logits are summed with the
  size's total stem weight: one-hot weights still give the chosen network exactly.
- The plain 3x3 conv and its batch norm are ONE module shared by every plain and shortcut state, as
  in the recurrent layer; the wide conv is one module shared by every wide state.
- A gate source is the node's value as it flows on, after its own gate. Gating multiplies the node
  by the map upsampled to its size, so the mixture is `node * (w_none + sum_s w_s up(map_s))`.
A decision with a single candidate is not mixed: a space with one candidate everywhere is a
discrete network, with `RCN`'s parameter names (`stem`, `layer_0/feedforward`, `layer_0/recurrent`,
`classifier_kernel`) and, for the architectures in `search_space.PRESET_ARCHITECTURES`, `RCN`'s
very program. With one-hot mixing weights the supernet computes the chosen discrete network (the
other candidates are added with weight 0), whose variables `discrete_variables` extracts. Running
statistics differ: in training mode every candidate application updates its module's statistics.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from rcn_jax.models import attention, blocks, layers, rcn, search_space

Array = jax.Array

PLAIN_CONV = "recurrent"
WIDE_CONV = "recurrent_wide"


def _mix(weights: Array | None, outputs: Sequence[Array]) -> Array:
  """`sum_i weights[i] * outputs[i]`; a single candidate passes through untouched."""
  if len(outputs) == 1:
    return outputs[0]
  return sum(weights[i] * output for i, output in enumerate(outputs))


class WideConv(nn.Module):
  """The wide expansion of an unfolded conv: three dilated 3x3 streams (fm/2, fm/4, fm/4), stride 1.

  `[N, H, W, fm]` -> `[N, H, W, fm]`; each stream Conv -> BN -> ReLU as the plain unfolded conv.
  """
  features: int
  unbiased_running_var: bool = True

  @nn.compact
  def __call__(self, x: Array, *, train: bool, mask: Array | None = None) -> Array:
    half = self.features // 2
    widths = (half, half // 2, half // 2)
    return jnp.concatenate([
        blocks.ConvBN(width, 3, padding=dilation, dilation=dilation,
                      unbiased_running_var=self.unbiased_running_var, name=f"stream{dilation}")(
                          x, train=train, mask=mask)
        for dilation, width in enumerate(widths, start=1)], axis=-1)


class SearchableLayer(nn.Module):
  """The recurrent layer with a module decision per unfolded state and a gate hook on every state.

  With one layer type in every state it computes exactly `blocks.RecurrentLayer` (and its
  `embedding` form when `state_0` is gated from the layer input), op for op.
  """
  states: tuple[tuple[str, ...], ...]
  features: int
  dropout_rate: float
  unbiased_running_var: bool = True

  @nn.compact
  def __call__(self, x: Array, weights: Mapping[str, Array], *, train: bool, mask: Array | None,
               gate: Callable[[str, Array], Array]) -> Array:
    """`x [N, H, W, fm]` -> `[N, H // 2, W // 2, fm]`; `gate(node, value)` gates each state."""
    ops = {op for candidates in self.states for op in candidates if op != search_space.SKIP}
    conv = {}
    if any(not search_space.is_wide(op) for op in ops):
      conv[PLAIN_CONV] = blocks.ConvBN(self.features, 3, padding=1,
                                       unbiased_running_var=self.unbiased_running_var, name=PLAIN_CONV)
    if any(search_space.is_wide(op) for op in ops):
      conv[WIDE_CONV] = WideConv(self.features, self.unbiased_running_var, name=WIDE_CONV)
    feedforward = blocks.ConvBN(self.features, 1, unbiased_running_var=self.unbiased_running_var,
                                name="feedforward")
    y = gate(search_space.state_node(0), feedforward(x, train=train, mask=mask))
    # The operations of blocks.RecurrentLayer in its order: a single layer type is its program.
    later_shortcut = [any(search_space.connectivity(op) == "shortcut" for c in self.states[i:] for op in c)
                      for i in range(len(self.states))]
    total = x + y if later_shortcut[0] else None
    for step, candidates in enumerate(self.states, start=1):
      outputs = []
      for op in candidates:
        if op == search_space.SKIP:
          outputs.append(y)
        else:
          # State 1 reads x + state_0 either way: the running sum, when it exists, is that tensor.
          if search_space.connectivity(op) == "shortcut" or (step == 1 and total is not None):
            layer_input = total
          else:
            layer_input = x + y
          module = conv[WIDE_CONV if search_space.is_wide(op) else PLAIN_CONV]
          outputs.append(module(layer_input, train=train, mask=mask))
      y = gate(search_space.state_node(step), _mix(weights.get(search_space.state_decision(step)), outputs))
      if step < len(self.states) and later_shortcut[step]:
        total = total + y
    return layers.Dropout(self.dropout_rate)(layers.max_pool(y, 2), train=train)


class Supernet(nn.Module):
  """Flow maps `[N, H, W, 3]` -> logits `[N, classes]` for every architecture of `space` at once.

  Attributes:
    space: the candidates; with one candidate per decision this is a discrete network.
    features: fm.
    pool_size: P.
    num_classes: C.
    dropout_rate: dropout after the stem and after the layer.
    unbiased_running_var: PyTorch's running-variance rule in every batch norm.
  """
  space: search_space.SearchSpace
  features: int
  pool_size: int
  num_classes: int = 3
  dropout_rate: float = 0.5
  unbiased_running_var: bool = True

  def __post_init__(self):
    for stem in self.space.stems:
      rcn.validate_architecture(stem, "recurrent", "none", self.features, 1)
    if any(search_space.is_wide(op) for op in self.space.ops()) and self.features % 4:
      raise ValueError(f"model.features={self.features}: wide unfolded convs split the channels 1/2, 1/4, "
                       "1/4, so features must be a multiple of 4")
    super().__post_init__()

  @nn.compact
  def __call__(self, x: Array, weights: Mapping[str, Array] | None = None, *, train: bool = False,
               mask: Array | None = None) -> Array:
    """Logits of `x [N, H, W, 3]`.

    Args:
      x: flow maps.
      weights: normalised mixing weights `{decision: [candidates]}` for every decision of
        `space.decisions()`; None for a discrete network.
      train: batch statistics and dropout.
      mask: `[N]`, samples where 0 stay out of the batch-norm statistics.

    Returns:
      `[N, C]` logits.
    """
    weights = dict(weights or {})
    missing = sorted(set(self.space.decisions()) - set(weights))
    if missing:
      raise ValueError(f"architecture weights lack the decision(s) {missing}")
    fm, pool = self.features, self.pool_size
    kernel = self.param("classifier_kernel", nn.initializers.normal(0.01),
                        (pool * pool * fm, self.num_classes), jnp.float32)
    bias = self.param("classifier_bias", nn.initializers.zeros, (self.num_classes,), jnp.float32)
    input_maps: dict[str, Array] = {}

    def input_map() -> Array:
      if search_space.INPUT not in input_maps:
        input_maps[search_space.INPUT] = attention.cam_f(layers.adaptive_avg_pool(x, pool), kernel, pool)
      return input_maps[search_space.INPUT]

    if any(search_space.INPUT in sources for _, sources in self.space.gates):
      input_map()  # before the stem, where RCN computes it, so RCN-C is RCN's program
    stems = [blocks.Stem(kind, fm, self.dropout_rate, unbiased_running_var=self.unbiased_running_var,
                         name=search_space.STEM if len(self.space.stems) == 1 else f"stem_{kind}")(
                             x, train=train, mask=mask) for kind in self.space.stems]
    layer = SearchableLayer(self.space.states, fm, self.dropout_rate, self.unbiased_running_var, name="layer_0")
    branch = lambda stem_value: self._branch(stem_value, weights, kernel, bias, layer, input_map,
                                             train=train, mask=mask)
    if len(stems) == 1:
      return branch(stems[0])
    stem_weights = weights["stem"]
    sizes = list(dict.fromkeys(s.shape[1:3] for s in stems))
    if len(sizes) == 1:
      return branch(_mix(stem_weights, stems))
    logits = 0.0
    for size in sizes:
      members = [i for i, s in enumerate(stems) if s.shape[1:3] == size]
      group_weight = sum(stem_weights[i] for i in members)
      # A size whose stems all weigh 0 (one-hot weights) still runs, then counts 0 times.
      safe = jnp.where(group_weight > 0, group_weight, 1.0)
      inner = [jnp.where(group_weight > 0, stem_weights[i] / safe, 1.0 / len(members)) for i in members]
      logits = logits + group_weight * branch(sum(w * stems[i] for w, i in zip(inner, members)))
    return logits

  def _branch(self, stem_value: Array, weights: Mapping[str, Array], kernel: Array, bias: Array,
              layer: SearchableLayer, input_map: Callable[[], Array], *, train: bool,
              mask: Array | None) -> Array:
    """Logits `[N, C]` of the network after the stem, on the (mixed) stem output `[N, H', W', fm]`."""
    pool = self.pool_size
    values: dict[str, Array] = {}
    maps: dict[str, Array] = {}

    def attention_map(source: str) -> Array:
      """`[N, P, P]` map of a source, computed once however many nodes it gates."""
      if source == search_space.INPUT:
        return input_map()
      if source not in maps:
        maps[source] = attention.cam_p(layers.adaptive_avg_pool(values[source], pool), kernel)
      return maps[source]

    def resized_map(source: str, size: tuple[int, ...]) -> Array:
      cam = attention_map(source)
      return cam if cam.shape[1:3] == size else layers.upsample_nearest(cam, *size)

    def gate(node: str, value: Array) -> Array:
      sources = self.space.gate_sources(node)
      if sources and sources != (search_space.NO_GATE,):
        upsample = lambda s: resized_map(s, value.shape[1:3])
        if len(sources) == 1:
          value = value * upsample(sources[0])[..., None]
        else:
          node_weights = weights[f"gate_{node}"]
          factor = sum(node_weights[i] * (1.0 if source == search_space.NO_GATE else upsample(source))
                       for i, source in enumerate(sources))
          value = value * factor[..., None]
      values[node] = value
      return value

    y = gate(search_space.STEM, stem_value)
    y = layer(y, weights, train=train, mask=mask, gate=gate)
    pooled = gate(search_space.OUTPUT, layers.adaptive_avg_pool(y, pool))
    return pooled.reshape(pooled.shape[0], -1) @ kernel + bias


def discrete_variables(variables: Mapping[str, Any], space: search_space.SearchSpace,
                       architecture: search_space.Architecture) -> dict[str, Any]:
  """The variables of `architecture`'s discrete network, taken from a supernet's variables.

  Args:
    variables: `{collection: tree}` of a `Supernet` over `space` (params, batch_stats, ...).
    space: the supernet's space.
    architecture: a member of the space.

  Returns:
    `{collection: tree}` with the discrete network's (and `RCN`'s) parameter names.
  """
  if not search_space.is_member(space, architecture):
    raise ValueError(f"{architecture.encode()} is not in the search space")
  stem_name = search_space.STEM if len(space.stems) == 1 else f"stem_{architecture.stem}"
  convs = {WIDE_CONV if search_space.is_wide(op) else PLAIN_CONV for op in architecture.states}
  extracted = {}
  for collection, tree in variables.items():
    picked = {key: tree[key] for key in ("classifier_kernel", "classifier_bias") if key in tree}
    if stem_name in tree:
      picked[search_space.STEM] = tree[stem_name]
    if "layer_0" in tree:
      layer = tree["layer_0"]
      picked["layer_0"] = {name: layer[name] for name in ("feedforward",) + tuple(sorted(convs)) if name in layer}
    extracted[collection] = picked
  return extracted


def one_hot_weights(space: search_space.SearchSpace, architecture: search_space.Architecture) -> dict[str, Array]:
  """Mixing weights that put all mass on `architecture`'s candidates (its missing states skip)."""
  if not search_space.is_member(space, architecture):
    raise ValueError(f"{architecture.encode()} is not in the search space")
  choice = architecture.choices()
  absent = lambda name: search_space.SKIP if name.startswith("state_") else search_space.NO_GATE
  return {name: jnp.asarray([float(c == choice.get(name, absent(name))) for c in candidates])
          for name, candidates in space.decisions().items()}


def searched_model(architecture: str | search_space.Architecture, *, features: int, pool_size: int,
                   num_classes: int = 3, dropout_rate: float = 0.5, reference_quirks: bool = False,
                   pytorch_bn: bool | None = None, steps: int | None = None) -> Supernet:
  """The discrete network of an architecture (an `Architecture` or its `encode()` text).

  Takes `factory.create_model`'s arguments; `steps`, when given, must agree with the architecture's.
  """
  if isinstance(architecture, str):
    architecture = search_space.Architecture.decode(architecture)
  if reference_quirks:
    raise ValueError("model.reference_quirks=True: searched architectures have no official-code quirks")
  if steps is not None and steps != architecture.steps:
    raise ValueError(f"model.steps={steps} disagrees with the architecture's steps={architecture.steps}")
  return Supernet(architecture.space(), features, pool_size, num_classes, dropout_rate,
                  True if pytorch_bn is None else pytorch_bn)

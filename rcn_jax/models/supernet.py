"""The module-integration search space (models.md section 4) as a supernet, and its discrete networks.

The network is a chain of nodes: the stem output, the unfolded states of the recurrent layer
(`state_0` is the 1x1 feed-forward branch, `state_i` the i-th application of the shared 3x3 conv)
and the pooled layer output. Three kinds of decisions are searched, each a weighted sum of its
candidates (Eq. 8; the weights come normalised from the caller):
- `stem`: the first layer (`standard`, `wide`, or any stem of `blocks.STEMS` with the same output
  size);
- `layer`: how every recurrent state is fed, `recurrent` (block input plus the previous state,
  Eq. 3) or `shortcut` (block input plus every earlier state, Eq. 6), mixed state by state; each
  candidate has its own 3x3 conv and batch norm, so a candidate with weight 0 leaves the others'
  running statistics alone;
- `gate_<node>`: whether, and from which earlier tensor, the parameter-free attention unit gates the
  node: `none`, `input` (`cam_f` of the flow map) or an earlier node (`cam_p` of its value), the
  latter reached 1, 2 or 3 hops back or being the stem output. A source is the node's value as it
  flows on, after its own gate. Gating multiplies the node by the map upsampled to its size, so
  the mixture is `node * (w_none + sum_s w_s up(map_s))`.
A decision with a single candidate is not mixed: a space with one candidate everywhere is a
discrete network, with `RCN`'s parameter names (`stem`, `layer_0/feedforward`, `layer_0/recurrent`,
`classifier_kernel`) and, for the architectures in `PRESET_ARCHITECTURES`, `RCN`'s very program.
With one-hot mixing weights the supernet computes the chosen discrete network (the other
candidates are added with weight 0), whose variables `discrete_variables` extracts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from rcn_jax.models import attention, blocks, layers, rcn

Array = jax.Array

INPUT = "input"
STEM = "stem"
OUTPUT = "output"
NO_GATE = "none"
SEARCH_STEMS = ("standard", "wide", "wide_pooled", "conv5_pool")
SEARCH_LAYERS = ("recurrent", "shortcut")
# The paper's space (Fig. 6): a standard or wide stem, a plain or shortcut layer, attention from up
# to three hops back; four states per layer as the paper states for every model (Sec. V-A).
PAPER_STEMS = ("standard", "wide")
PAPER_STEPS = 3
PAPER_MAX_HOPS = 3
SEARCHED_PREFIX = "searched:"
_LAYER_PARAM_SUFFIX = {"recurrent": "plain", "shortcut": "shortcut"}


def state_node(index: int) -> str:
  return f"state_{index}"


def node_chain(steps: int) -> tuple[str, ...]:
  """Every tensor that can gate or be gated, in network order: input, stem, states, output."""
  return (INPUT, STEM) + tuple(state_node(i) for i in range(steps + 1)) + (OUTPUT,)


@dataclasses.dataclass(frozen=True)
class SearchSpace:
  """The candidates of every decision.

  Attributes:
    stems: candidate stems (all with the same output size, so they can be summed).
    layers: candidate layer types, `recurrent` and/or `shortcut`.
    steps: applications of the shared 3x3 conv (the layer has `steps + 1` states).
    gates: `(node, sources)` for every node that may be gated, in network order; `sources` lists
      `none` (first, if the gate is optional) and the earlier tensors a map may be computed from.
  """
  stems: tuple[str, ...]
  layers: tuple[str, ...]
  steps: int
  gates: tuple[tuple[str, tuple[str, ...]], ...] = ()

  def __post_init__(self):
    _check_candidates("stems", self.stems, SEARCH_STEMS)
    _check_candidates("layers", self.layers, SEARCH_LAYERS)
    if self.steps < 1:
      raise ValueError(f"search.steps={self.steps}: the recurrent layer needs at least one step")
    chain = node_chain(self.steps)
    nodes = [node for node, _ in self.gates]
    if len(set(nodes)) != len(nodes) or nodes != sorted(nodes, key=chain.index):
      raise ValueError(f"gated nodes {nodes} must be distinct and in network order")
    for node, sources in self.gates:
      if node not in chain[1:]:
        raise ValueError(f"gate node {node!r}: expected one of {chain[1:]}")
      if not sources or len(set(sources)) != len(sources) or NO_GATE in sources[1:]:
        raise ValueError(f"gate {node!r}: sources {sources} must be distinct, `none` first if present")
      earlier = chain[:chain.index(node)]
      for source in sources:
        if source != NO_GATE and source not in earlier:
          raise ValueError(f"gate {node!r}: source {source!r} is not an earlier tensor {earlier}")

  @classmethod
  def paper(cls, stems: Sequence[str] = PAPER_STEMS, layers: Sequence[str] = SEARCH_LAYERS,
            steps: int = PAPER_STEPS, max_hops: int = PAPER_MAX_HOPS,
            gate_output: bool = True) -> SearchSpace:
    """Every node may be gated, by a map from the input, the stem output or a node 1..max_hops back.

    Args:
      stems: candidate stems.
      layers: candidate layer types.
      steps: 3x3 applications per layer.
      max_hops: how far back a gate may reach (besides the input and the stem, always allowed).
      gate_output: whether the pooled layer output is a node too (RCN-A/RCN-P place their gate
        there; the paper's top-3 architecture has the attention unit "paralleled with" the layer).

    Returns:
      The space.
    """
    chain = node_chain(steps)
    nodes = chain[1:] if gate_output else chain[1:-1]
    gates = []
    for node in nodes:
      position = chain.index(node)
      reachable = {0, 1} | {position - hop for hop in range(1, max_hops + 1)}
      sources = tuple(chain[p] for p in sorted(reachable) if 0 <= p < position)
      gates.append((node, (NO_GATE,) + sources))
    return cls(tuple(stems), tuple(layers), steps, tuple(gates))

  def gate_sources(self, node: str) -> tuple[str, ...]:
    return dict(self.gates).get(node, ())

  def decisions(self) -> dict[str, tuple[str, ...]]:
    """Every decision with more than one candidate, in network order: `stem`, `layer`, `gate_<node>`."""
    found = {"stem": self.stems, "layer": self.layers}
    found.update({f"gate_{node}": sources for node, sources in self.gates})
    return {name: candidates for name, candidates in found.items() if len(candidates) > 1}

  def hops(self, node: str, source: str) -> int:
    """How many nodes back `source` lies from `node` (the input is one hop before the stem)."""
    chain = node_chain(self.steps)
    return chain.index(node) - chain.index(source)


def _check_candidates(key: str, given: Sequence[str], allowed: Sequence[str]) -> None:
  if not given or len(set(given)) != len(given) or any(c not in allowed for c in given):
    raise ValueError(f"search.{key}={list(given)}: expected distinct entries of {list(allowed)}")


@dataclasses.dataclass(frozen=True)
class Architecture:
  """A discrete architecture of the space: one stem, one layer type, a set of gates.

  Attributes:
    stem: the stem.
    layer: `recurrent` or `shortcut`.
    steps: 3x3 applications of the layer.
    gates: `(node, source)` for every gated node, in network order.
  """
  stem: str
  layer: str
  steps: int
  gates: tuple[tuple[str, str], ...] = ()

  def __post_init__(self):
    self.space()  # validates

  def space(self) -> SearchSpace:
    """The space with this architecture as its only member."""
    return SearchSpace((self.stem,), (self.layer,), self.steps,
                       tuple((node, (source,)) for node, source in self.gates))

  @classmethod
  def from_choices(cls, space: SearchSpace, choices: Mapping[str, str]) -> Architecture:
    """The architecture that picks `choices[decision]` (decisions with one candidate take it)."""
    pick = lambda name, candidates: choices.get(name, candidates[0])
    gates = tuple((node, pick(f"gate_{node}", sources)) for node, sources in space.gates)
    return cls(pick("stem", space.stems), pick("layer", space.layers), space.steps,
               tuple((node, source) for node, source in gates if source != NO_GATE))

  def encode(self) -> str:
    """A one-line description, usable as a model preset: `searched:stem=wide,layer=...,gates=...`."""
    gates = "+".join(f"{node}<{source}" for node, source in self.gates) or NO_GATE
    return f"{SEARCHED_PREFIX}stem={self.stem},layer={self.layer},steps={self.steps},gates={gates}"

  @classmethod
  def decode(cls, text: str) -> Architecture:
    """Parses `encode`'s output; a malformed description raises a ValueError naming the part."""
    if not text.startswith(SEARCHED_PREFIX):
      raise ValueError(f"architecture {text!r} must start with {SEARCHED_PREFIX!r}")
    fields = {}
    for token in text[len(SEARCHED_PREFIX):].split(","):
      key, has_value, value = token.partition("=")
      if not has_value or key not in ("stem", "layer", "steps", "gates") or key in fields:
        raise ValueError(f"architecture {text!r}: bad part {token!r}; expected stem=, layer=, steps=, "
                         "gates= once each")
      fields[key] = value
    if len(fields) != 4:
      raise ValueError(f"architecture {text!r}: missing {sorted({'stem', 'layer', 'steps', 'gates'} - set(fields))}")
    if not fields["steps"].isdigit():
      raise ValueError(f"architecture {text!r}: steps={fields['steps']!r} is not a number")
    gates = []
    if fields["gates"] != NO_GATE:
      for gate in fields["gates"].split("+"):
        node, has_source, source = gate.partition("<")
        if not has_source:
          raise ValueError(f"architecture {text!r}: gate {gate!r} must read node<source")
        gates.append((node, source))
    return cls(fields["stem"], fields["layer"], int(fields["steps"]), tuple(gates))

  def describe(self) -> str:
    """Readable form, e.g. `wide stem, shortcut layer x3, attention state_0 <- stem (1 hop)`."""
    hops_of = self.space().hops
    gates = ", ".join(f"{node} <- {source} ({hops_of(node, source)} hop"
                      f"{'s' if hops_of(node, source) > 1 else ''})" for node, source in self.gates)
    return (f"{self.stem} stem, {self.layer} layer x{self.steps}, "
            f"attention {gates or 'none'}")

  def paper_name(self) -> str | None:
    """The paper's preset this architecture is (`rcn_f`, ...), if any."""
    return next((name for name, arch in PRESET_ARCHITECTURES.items() if arch == self), None)


# The paper's presets as architectures of the space (official step counts; no reference quirks).
PRESET_ARCHITECTURES: dict[str, Architecture] = {
    "rcn": Architecture("conv5_pool", "recurrent", 2),
    "rcn_a": Architecture("conv5_pool", "recurrent", 2, ((OUTPUT, STEM),)),
    "rcn_s": Architecture("conv5_pool", "shortcut", 3),
    "rcn_w": Architecture("wide", "recurrent", 2),
    "rcn_c": Architecture("wide", "shortcut", 3, ((STEM, INPUT),)),
    "rcn_f": Architecture("wide", "shortcut", 3, ((state_node(0), STEM),)),
    "rcn_p": Architecture("wide_pooled", "shortcut", 3, ((OUTPUT, STEM),)),
}


def _mix(weights: Array | None, outputs: Sequence[Array]) -> Array:
  """`sum_i weights[i] * outputs[i]`; a single candidate passes through untouched."""
  if len(outputs) == 1:
    return outputs[0]
  return sum(weights[i] * output for i, output in enumerate(outputs))


class SearchableLayer(nn.Module):
  """The recurrent layer with its connectivity mixed per state and a gate hook on every state.

  With one layer type it computes exactly `blocks.RecurrentLayer` (and its `embedding` form when
  `state_0` is gated from the layer input).
  """
  kinds: tuple[str, ...]
  features: int
  dropout_rate: float
  steps: int
  unbiased_running_var: bool = True

  @nn.compact
  def __call__(self, x: Array, weights: Array | None, *, train: bool, mask: Array | None,
               gate: Callable[[str, Array], Array]) -> Array:
    """`x [N, H, W, fm]` -> `[N, H // 2, W // 2, fm]`; `gate(node, value)` gates each state."""
    conv_bn = lambda size, padding, name: blocks.ConvBN(
        self.features, size, padding=padding, unbiased_running_var=self.unbiased_running_var, name=name)
    feedforward = conv_bn(1, 0, "feedforward")
    shared = {kind: conv_bn(3, 1, "recurrent" if len(self.kinds) == 1 else
                            f"recurrent_{_LAYER_PARAM_SUFFIX[kind]}") for kind in self.kinds}
    y = gate(state_node(0), feedforward(x, train=train, mask=mask))
    # The operations of blocks.RecurrentLayer in its order: a single layer type is its program.
    shortcut = "shortcut" in self.kinds
    total = x + y if shortcut else None
    for step in range(1, self.steps + 1):
      outputs = [shared[kind](x + y if kind == "recurrent" else total, train=train, mask=mask)
                 for kind in self.kinds]
      y = gate(state_node(step), _mix(weights, outputs))
      if shortcut and step < self.steps:
        total = total + y
    return nn.Dropout(self.dropout_rate, deterministic=not train)(layers.max_pool(y, 2))


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
  space: SearchSpace
  features: int
  pool_size: int
  num_classes: int = 3
  dropout_rate: float = 0.5
  unbiased_running_var: bool = True

  def __post_init__(self):
    for stem in self.space.stems:
      rcn.validate_architecture(stem, self.space.layers[0], "none", self.features, 1)
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
    values = {INPUT: x}
    maps: dict[str, Array] = {}

    def attention_map(source: str) -> Array:
      """`[N, P, P]` map of a source, computed once however many nodes it gates."""
      if source not in maps:
        pooled = layers.adaptive_avg_pool(values[source], pool)
        maps[source] = (attention.cam_f(pooled, kernel, pool) if source == INPUT
                        else attention.cam_p(pooled, kernel))
      return maps[source]

    def resized_map(source: str, size: tuple[int, ...]) -> Array:
      cam = attention_map(source)
      return cam if cam.shape[1:3] == size else layers.upsample_nearest(cam, *size)

    def gate(node: str, value: Array) -> Array:
      sources = self.space.gate_sources(node)
      if sources and sources != (NO_GATE,):
        upsample = lambda s: resized_map(s, value.shape[1:3])
        if len(sources) == 1:
          value = value * upsample(sources[0])[..., None]
        else:
          node_weights = weights[f"gate_{node}"]
          factor = sum(node_weights[i] * (1.0 if source == NO_GATE else upsample(source))
                       for i, source in enumerate(sources))
          value = value * factor[..., None]
      values[node] = value
      return value

    if any(INPUT in sources for _, sources in self.space.gates):
      attention_map(INPUT)  # before the stem, where RCN computes it, so RCN-C is RCN's program
    stems = [blocks.Stem(kind, fm, self.dropout_rate, unbiased_running_var=self.unbiased_running_var,
                         name=STEM if len(self.space.stems) == 1 else f"stem_{kind}")(
                             x, train=train, mask=mask) for kind in self.space.stems]
    if len({s.shape for s in stems}) > 1:
      raise ValueError(f"search.stems={list(self.space.stems)} give outputs of different sizes "
                       f"{[s.shape[1:3] for s in stems]}; mixed stems must agree")
    y = gate(STEM, _mix(weights.get("stem"), stems))
    y = SearchableLayer(self.space.layers, fm, self.dropout_rate, self.space.steps,
                        self.unbiased_running_var, name="layer_0")(
                            y, weights.get("layer"), train=train, mask=mask, gate=gate)
    pooled = gate(OUTPUT, layers.adaptive_avg_pool(y, pool))
    return pooled.reshape(pooled.shape[0], -1) @ kernel + bias


def discrete_variables(variables: Mapping[str, Any], space: SearchSpace,
                       architecture: Architecture) -> dict[str, Any]:
  """The variables of `architecture`'s discrete network, taken from a supernet's variables.

  Args:
    variables: `{collection: tree}` of a `Supernet` over `space` (params, batch_stats, ...).
    space: the supernet's space.
    architecture: a member of the space.

  Returns:
    `{collection: tree}` with the discrete network's (and `RCN`'s) parameter names.
  """
  if (architecture.stem not in space.stems or architecture.layer not in space.layers
      or architecture.steps != space.steps
      or any(source not in space.gate_sources(node) for node, source in architecture.gates)):
    raise ValueError(f"{architecture.encode()} is not in the search space")
  stem_name = STEM if len(space.stems) == 1 else f"stem_{architecture.stem}"
  recurrent_name = ("recurrent" if len(space.layers) == 1 else
                    f"recurrent_{_LAYER_PARAM_SUFFIX[architecture.layer]}")
  extracted = {}
  for collection, tree in variables.items():
    picked = {key: tree[key] for key in ("classifier_kernel", "classifier_bias") if key in tree}
    if stem_name in tree:
      picked[STEM] = tree[stem_name]
    if "layer_0" in tree:
      layer = tree["layer_0"]
      picked["layer_0"] = {name: layer[source] for name, source in
                           (("feedforward", "feedforward"), ("recurrent", recurrent_name)) if source in layer}
    extracted[collection] = picked
  return extracted


def searched_model(architecture: str | Architecture, *, features: int, pool_size: int,
                   num_classes: int = 3, dropout_rate: float = 0.5, reference_quirks: bool = False,
                   pytorch_bn: bool | None = None, steps: int | None = None) -> Supernet:
  """The discrete network of an architecture (an `Architecture` or its `encode()` text).

  Takes `rcn.create_model`'s arguments; `steps`, when given, must agree with the architecture's.
  """
  if isinstance(architecture, str):
    architecture = Architecture.decode(architecture)
  if reference_quirks:
    raise ValueError("model.reference_quirks=True: searched architectures have no official-code quirks")
  if steps is not None and steps != architecture.steps:
    raise ValueError(f"model.steps={steps} disagrees with the architecture's steps={architecture.steps}")
  return Supernet(architecture.space(), features, pool_size, num_classes, dropout_rate,
                  True if pytorch_bn is None else pytorch_bn)

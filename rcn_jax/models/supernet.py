"""The module-integration search space (models.md section 4) as a supernet, and its discrete networks.

The network is a chain of nodes: the stem output, the unfolded states of the recurrent layer
(`state_0` is the 1x1 feed-forward branch, `state_i` the i-th application of the shared 3x3 conv)
and the pooled layer output. Three kinds of decisions are searched, each a weighted sum of its
candidates (Eq. 8; the weights come normalised from the caller):
- `stem`: the first layer, any of `SEARCH_STEMS`. Stems with different output sizes (`conv5_pool`:
  28x28 at 60 px, the others 20x20) cannot be summed as tensors, so the rest of the network (whose
  weights do not depend on the size) runs once per output size on the weighted sum of that size's
  stems, and the logits are summed with the size's total stem weight: one-hot weights still give
  the chosen network exactly.
- `state_<i>` (i >= 1): the module of the i-th unfolded state (paper Sec. III-C.4: alpha covers the
  unfolded convolutions too): `recurrent` (conv of the block input plus the previous state, Eq. 3),
  `shortcut` (conv of the block input plus every earlier state, Eq. 6), their `_wide` forms (the
  wide expansion in that unfolded conv: three dilated streams, stride 1) and, for states beyond
  `min_steps`, `skip` (the state repeats the previous one: fewer unfoldings). The plain 3x3 conv
  and its batch norm are ONE module shared by every plain and shortcut state, as in the recurrent
  layer; the wide conv is one module shared by every wide state. `state_1` reads the block input
  plus `state_0` under both connectivities, so it only chooses plain or wide.
- `gate_<node>`: whether, and from which earlier tensor, the parameter-free attention unit gates the
  node: `none`, `input` (`cam_f` of the flow map) or an earlier node (`cam_p` of its value), the
  latter reached 1, 2 or 3 hops back or being the stem output. A source is the node's value as it
  flows on, after its own gate. Gating multiplies the node by the map upsampled to its size, so
  the mixture is `node * (w_none + sum_s w_s up(map_s))`.
A decision with a single candidate is not mixed: a space with one candidate everywhere is a
discrete network, with `RCN`'s parameter names (`stem`, `layer_0/feedforward`, `layer_0/recurrent`,
`classifier_kernel`) and, for the architectures in `PRESET_ARCHITECTURES`, `RCN`'s very program.
With one-hot mixing weights the supernet computes the chosen discrete network (the other
candidates are added with weight 0), whose variables `discrete_variables` extracts. Running
statistics differ: in training mode every candidate application updates its module's statistics.
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
SKIP = "skip"
SEARCH_STEMS = ("standard", "wide", "wide_pooled", "conv5_pool")
SEARCH_OPS = ("recurrent", "shortcut", "recurrent_wide", "shortcut_wide")
# The default space holds every paper preset: all their stems, plain/shortcut states, 2 or 3 steps.
PAPER_STEMS = SEARCH_STEMS
PAPER_OPS = ("recurrent", "shortcut")
PAPER_STEPS = 3
PAPER_MIN_STEPS = 2
PAPER_MAX_HOPS = 3
SEARCHED_PREFIX = "searched:"
PLAIN_CONV = "recurrent"
WIDE_CONV = "recurrent_wide"
# Exact ties between candidates go to the simpler one, in this order (never to the config's order).
SIMPLICITY = (NO_GATE, SKIP, "standard", "wide", "wide_pooled", "conv5_pool", "recurrent", "shortcut",
              "recurrent_wide", "shortcut_wide")


def state_node(index: int) -> str:
  return f"state_{index}"


def state_decision(index: int) -> str:
  return f"state_{index}"


def node_chain(steps: int) -> tuple[str, ...]:
  """Every tensor that can gate or be gated, in network order: input, stem, states, output."""
  return (INPUT, STEM) + tuple(state_node(i) for i in range(steps + 1)) + (OUTPUT,)


def is_wide(op: str) -> bool:
  return op.endswith("_wide")


def connectivity(op: str) -> str:
  """`recurrent` or `shortcut` of an op (`shortcut_wide` -> `shortcut`)."""
  return op.removesuffix("_wide")


def state_candidates(index: int, ops: Sequence[str], min_steps: int) -> tuple[str, ...]:
  """The candidates of `state_<index>`: state 1 has no connectivity choice, later states may skip."""
  if index == 1:
    ops = tuple(dict.fromkeys("recurrent_wide" if is_wide(op) else "recurrent" for op in ops))
  return tuple(ops) + ((SKIP,) if index > min_steps else ())


@dataclasses.dataclass(frozen=True)
class SearchSpace:
  """The candidates of every decision.

  Attributes:
    stems: candidate stems.
    states: candidates of `state_1` .. `state_<steps>` (ops of `SEARCH_OPS`, `skip`).
    gates: `(node, sources)` for every node that may be gated, in network order; `sources` lists
      `none` (first, if the gate is optional) and the earlier tensors a map may be computed from.
  """
  stems: tuple[str, ...]
  states: tuple[tuple[str, ...], ...]
  gates: tuple[tuple[str, tuple[str, ...]], ...] = ()

  def __post_init__(self):
    _check_candidates("stems", self.stems, SEARCH_STEMS)
    if not self.states:
      raise ValueError("search.steps=0: the recurrent layer needs at least one step")
    for index, candidates in enumerate(self.states, start=1):
      allowed = state_candidates(index, SEARCH_OPS, 1)
      _check_candidates(f"states[{index}]", candidates, allowed)
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

  @property
  def steps(self) -> int:
    return len(self.states)

  @classmethod
  def paper(cls, stems: Sequence[str] = PAPER_STEMS, ops: Sequence[str] = PAPER_OPS,
            steps: int = PAPER_STEPS, min_steps: int = PAPER_MIN_STEPS, max_hops: int = PAPER_MAX_HOPS,
            gate_output: bool = True) -> SearchSpace:
    """Every node may be gated (or not), by a map from the input, the stem or a node 1..max_hops back.

    Args:
      stems: candidate stems.
      ops: candidate modules of every unfolded state (`SEARCH_OPS`).
      steps: the most 3x3 applications per layer.
      min_steps: the fewest; states beyond it may `skip`.
      max_hops: how far back a gate may reach (besides the input and the stem, always allowed).
      gate_output: whether the pooled layer output is a node too (RCN-A/RCN-P place their gate
        there; the paper's top-3 architecture has the attention unit "paralleled with" the layer).

    Returns:
      The space.
    """
    if not 1 <= min_steps <= steps:
      raise ValueError(f"search.min_steps={min_steps}: expected 1 <= min_steps <= search.steps={steps}")
    _check_candidates("ops", ops, SEARCH_OPS)
    chain = node_chain(steps)
    nodes = chain[1:] if gate_output else chain[1:-1]
    gates = []
    for node in nodes:
      position = chain.index(node)
      reachable = {0, 1} | {position - hop for hop in range(1, max_hops + 1)}
      sources = tuple(chain[p] for p in sorted(reachable) if 0 <= p < position)
      gates.append((node, (NO_GATE,) + sources))
    states = tuple(state_candidates(i, ops, min_steps) for i in range(1, steps + 1))
    return cls(tuple(stems), states, tuple(gates))

  def gate_sources(self, node: str) -> tuple[str, ...]:
    return dict(self.gates).get(node, ())

  def decisions(self) -> dict[str, tuple[str, ...]]:
    """Every decision with more than one candidate, in network order: `stem`, `state_<i>`, `gate_<node>`."""
    found = {"stem": self.stems}
    found.update({state_decision(i): c for i, c in enumerate(self.states, start=1)})
    found.update({f"gate_{node}": sources for node, sources in self.gates})
    return {name: candidates for name, candidates in found.items() if len(candidates) > 1}

  def hops(self, node: str, source: str) -> int:
    """How many nodes back `source` lies from `node` (the input is one hop before the stem)."""
    chain = node_chain(self.steps)
    return chain.index(node) - chain.index(source)

  def ops(self) -> set[str]:
    return {op for candidates in self.states for op in candidates if op != SKIP}


def _check_candidates(key: str, given: Sequence[str], allowed: Sequence[str]) -> None:
  if not given or len(set(given)) != len(given) or any(c not in allowed for c in given):
    raise ValueError(f"search.{key}={list(given)}: expected distinct entries of {list(allowed)}")


def choice_problem(choices: Mapping[str, str], steps: int) -> str | None:
  """Why a full choice `{decision: candidate}` is no network (None when it is one).

  A skipped state must be followed by skipped states only, and is neither gated nor a gate source.
  """
  picked = [choices.get(state_decision(i)) for i in range(1, steps + 1)]
  skipped = {state_node(i) for i, op in enumerate(picked, start=1) if op == SKIP}
  first = min((i for i, op in enumerate(picked, start=1) if op == SKIP), default=None)
  if first is not None and any(op != SKIP for op in picked[first:]):
    return f"state_{first} skips but a later state does not"
  for name, source in choices.items():
    if name.startswith("gate_") and source != NO_GATE and (name[len("gate_"):] in skipped or source in skipped):
      return f"{name}={source} involves a skipped state"
  return None


@dataclasses.dataclass(frozen=True)
class Architecture:
  """A discrete architecture of the space: one stem, a module per unfolded state, a set of gates.

  Attributes:
    stem: the stem.
    states: the op of `state_1` .. `state_<steps>` (`SEARCH_OPS`; `state_1`'s is plain or wide).
    gates: `(node, source)` for every gated node, in network order.
  """
  stem: str
  states: tuple[str, ...]
  gates: tuple[tuple[str, str], ...] = ()

  def __post_init__(self):
    self.space()  # validates

  @property
  def steps(self) -> int:
    return len(self.states)

  @classmethod
  def uniform(cls, stem: str, layer: str, steps: int, gates: tuple[tuple[str, str], ...] = ()) -> Architecture:
    """Every state of one layer type (`recurrent` or `shortcut`), as `blocks.RecurrentLayer` builds it."""
    return cls(stem, ("recurrent",) + (layer,) * (steps - 1), gates)

  def space(self) -> SearchSpace:
    """The space with this architecture as its only member."""
    return SearchSpace((self.stem,), tuple((op,) for op in self.states),
                       tuple((node, (source,)) for node, source in self.gates))

  def choices(self) -> dict[str, str]:
    """`{decision: candidate}` of this architecture in a space with `steps` states or more."""
    picked = {"stem": self.stem}
    picked.update({state_decision(i): op for i, op in enumerate(self.states, start=1)})
    picked.update({f"gate_{node}": source for node, source in self.gates})
    return picked

  @classmethod
  def from_choices(cls, space: SearchSpace, choices: Mapping[str, str]) -> Architecture:
    """The architecture that picks `choices[decision]` (decisions with one candidate take it)."""
    pick = lambda name, candidates: choices.get(name, candidates[0])
    full = {"stem": pick("stem", space.stems)}
    full.update({state_decision(i): pick(state_decision(i), c) for i, c in enumerate(space.states, start=1)})
    full.update({f"gate_{node}": pick(f"gate_{node}", sources) for node, sources in space.gates})
    problem = choice_problem(full, space.steps)
    if problem:
      raise ValueError(f"choice {full} is no network: {problem}")
    states = tuple(full[state_decision(i)] for i in range(1, space.steps + 1) if full[state_decision(i)] != SKIP)
    gates = tuple((node, full[f"gate_{node}"]) for node, _ in space.gates if full[f"gate_{node}"] != NO_GATE)
    return cls(full["stem"], states, gates)

  def encode(self) -> str:
    """A one-line description, usable as a model preset: `searched:stem=wide,states=a+b,gates=...`."""
    gates = "+".join(f"{node}<{source}" for node, source in self.gates) or NO_GATE
    return f"{SEARCHED_PREFIX}stem={self.stem},states={'+'.join(self.states)},gates={gates}"

  @classmethod
  def decode(cls, text: str) -> Architecture:
    """Parses `encode`'s output (or the older `layer=...,steps=...` form); a malformed one names the part."""
    if not text.startswith(SEARCHED_PREFIX):
      raise ValueError(f"architecture {text!r} must start with {SEARCHED_PREFIX!r}")
    fields = {}
    for token in text[len(SEARCHED_PREFIX):].split(","):
      key, has_value, value = token.partition("=")
      if not has_value or key not in ("stem", "states", "layer", "steps", "gates") or key in fields:
        raise ValueError(f"architecture {text!r}: bad part {token!r}; expected stem=, states=, gates= once each")
      fields[key] = value
    expected = {"stem", "states", "gates"} if "states" in fields else {"stem", "layer", "steps", "gates"}
    if set(fields) != expected:
      raise ValueError(f"architecture {text!r}: missing {sorted(expected - set(fields))}")
    gates = []
    if fields["gates"] != NO_GATE:
      for gate in fields["gates"].split("+"):
        node, has_source, source = gate.partition("<")
        if not has_source:
          raise ValueError(f"architecture {text!r}: gate {gate!r} must read node<source")
        gates.append((node, source))
    if "states" in fields:
      return cls(fields["stem"], tuple(fields["states"].split("+")), tuple(gates))
    if not fields["steps"].isdigit():
      raise ValueError(f"architecture {text!r}: steps={fields['steps']!r} is not a number")
    return cls.uniform(fields["stem"], fields["layer"], int(fields["steps"]), tuple(gates))

  def describe(self) -> str:
    """Readable form, e.g. `wide stem, states recurrent+shortcut+shortcut, attention state_0 <- stem (1 hop)`."""
    hops_of = self.space().hops
    gates = ", ".join(f"{node} <- {source} ({hops_of(node, source)} hop"
                      f"{'s' if hops_of(node, source) > 1 else ''})" for node, source in self.gates)
    return f"{self.stem} stem, states {'+'.join(self.states)}, attention {gates or 'none'}"

  def paper_name(self) -> str | None:
    """The paper's preset this architecture is (`rcn_f`, ...), if any."""
    return next((name for name, arch in PRESET_ARCHITECTURES.items() if arch == self), None)


# The paper's presets as architectures of the space (official step counts; no reference quirks).
PRESET_ARCHITECTURES: dict[str, Architecture] = {
    "rcn": Architecture.uniform("conv5_pool", "recurrent", 2),
    "rcn_a": Architecture.uniform("conv5_pool", "recurrent", 2, ((OUTPUT, STEM),)),
    "rcn_s": Architecture.uniform("conv5_pool", "shortcut", 3),
    "rcn_w": Architecture.uniform("wide", "recurrent", 2),
    "rcn_c": Architecture.uniform("wide", "shortcut", 3, ((STEM, INPUT),)),
    "rcn_f": Architecture.uniform("wide", "shortcut", 3, ((state_node(0), STEM),)),
    "rcn_p": Architecture.uniform("wide_pooled", "shortcut", 3, ((OUTPUT, STEM),)),
}


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
    ops = {op for candidates in self.states for op in candidates if op != SKIP}
    conv = {}
    if any(not is_wide(op) for op in ops):
      conv[PLAIN_CONV] = blocks.ConvBN(self.features, 3, padding=1,
                                       unbiased_running_var=self.unbiased_running_var, name=PLAIN_CONV)
    if any(is_wide(op) for op in ops):
      conv[WIDE_CONV] = WideConv(self.features, self.unbiased_running_var, name=WIDE_CONV)
    feedforward = blocks.ConvBN(self.features, 1, unbiased_running_var=self.unbiased_running_var,
                                name="feedforward")
    y = gate(state_node(0), feedforward(x, train=train, mask=mask))
    # The operations of blocks.RecurrentLayer in its order: a single layer type is its program.
    later_shortcut = [any(connectivity(op) == "shortcut" for c in self.states[i:] for op in c)
                      for i in range(len(self.states))]
    total = x + y if later_shortcut[0] else None
    for step, candidates in enumerate(self.states, start=1):
      outputs = []
      for op in candidates:
        if op == SKIP:
          outputs.append(y)
        else:
          # State 1 reads x + state_0 either way: the running sum, when it exists, is that tensor.
          if connectivity(op) == "shortcut" or (step == 1 and total is not None):
            layer_input = total
          else:
            layer_input = x + y
          outputs.append(conv[WIDE_CONV if is_wide(op) else PLAIN_CONV](layer_input, train=train, mask=mask))
      y = gate(state_node(step), _mix(weights.get(state_decision(step)), outputs))
      if step < len(self.states) and later_shortcut[step]:
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
      rcn.validate_architecture(stem, "recurrent", "none", self.features, 1)
    if any(is_wide(op) for op in self.space.ops()) and self.features % 4:
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
      if INPUT not in input_maps:
        input_maps[INPUT] = attention.cam_f(layers.adaptive_avg_pool(x, pool), kernel, pool)
      return input_maps[INPUT]

    if any(INPUT in sources for _, sources in self.space.gates):
      input_map()  # before the stem, where RCN computes it, so RCN-C is RCN's program
    stems = [blocks.Stem(kind, fm, self.dropout_rate, unbiased_running_var=self.unbiased_running_var,
                         name=STEM if len(self.space.stems) == 1 else f"stem_{kind}")(
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
      if source == INPUT:
        return input_map()
      if source not in maps:
        maps[source] = attention.cam_p(layers.adaptive_avg_pool(values[source], pool), kernel)
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

    y = gate(STEM, stem_value)
    y = layer(y, weights, train=train, mask=mask, gate=gate)
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
  if not is_member(space, architecture):
    raise ValueError(f"{architecture.encode()} is not in the search space")
  stem_name = STEM if len(space.stems) == 1 else f"stem_{architecture.stem}"
  convs = {WIDE_CONV if is_wide(op) else PLAIN_CONV for op in architecture.states}
  extracted = {}
  for collection, tree in variables.items():
    picked = {key: tree[key] for key in ("classifier_kernel", "classifier_bias") if key in tree}
    if stem_name in tree:
      picked[STEM] = tree[stem_name]
    if "layer_0" in tree:
      layer = tree["layer_0"]
      picked["layer_0"] = {name: layer[name] for name in ("feedforward",) + tuple(sorted(convs)) if name in layer}
    extracted[collection] = picked
  return extracted


def is_member(space: SearchSpace, architecture: Architecture) -> bool:
  """Whether the space can express the architecture (its skipped states filling the missing steps)."""
  if architecture.stem not in space.stems or architecture.steps > space.steps:
    return False
  states = architecture.states + (SKIP,) * (space.steps - architecture.steps)
  if any(op not in candidates for op, candidates in zip(states, space.states)):
    return False
  gated = dict(architecture.gates)
  return all((gated.get(node, NO_GATE) in sources) for node, sources in space.gates) and \
      all(node in dict(space.gates) for node in gated)


def one_hot_weights(space: SearchSpace, architecture: Architecture) -> dict[str, Array]:
  """Mixing weights that put all mass on `architecture`'s candidates (its missing states skip)."""
  if not is_member(space, architecture):
    raise ValueError(f"{architecture.encode()} is not in the search space")
  choice = architecture.choices()
  return {name: jnp.asarray([float(c == choice.get(name, SKIP if name.startswith("state_") else NO_GATE))
                             for c in candidates])
          for name, candidates in space.decisions().items()}


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

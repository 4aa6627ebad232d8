"""The module-integration search space (paper Sec. III-C.4, Fig. 6) and its discrete architectures.

The network is a chain of nodes: the stem output, the unfolded states of the recurrent layer
(`state_0` is the 1x1 feed-forward branch, `state_i` the i-th application of the shared 3x3 conv)
and the pooled layer output. Three kinds of decisions are searched:
- `stem`: the first layer, any of `SEARCH_STEMS`.
- `state_<i>` (i >= 1): the module of the i-th unfolded state (paper Sec. III-C.4: alpha covers the
  unfolded convolutions too): `recurrent` (conv of the block input plus the previous state, Eq. 3),
  `shortcut` (conv of the block input plus every earlier state, Eq. 6), their `_wide` forms (the
  wide expansion in that unfolded conv: three dilated streams, stride 1) and, for states beyond
  `min_steps`, `skip` (the state repeats the previous one: fewer unfoldings). `state_1` reads the
  block input plus `state_0` under both connectivities, so it only chooses plain or wide.
- `gate_<node>`: whether, and from which earlier tensor, the parameter-free attention unit gates the
  node: `none`, `input` (`cam_f` of the flow map) or an earlier node (`cam_p` of its value), the
  latter reached 1, 2 or 3 hops back or being the stem output.
`SearchSpace` lists the candidates of every decision; an `Architecture` picks one of each and
encodes as a model preset (`searched:stem=...,states=...,gates=...`) that
`rcn_jax.models.create_model` builds. `rcn_jax.models.supernet` computes the space's networks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from rcn_jax import errors

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
      raise errors.UserError("search.steps=0: the recurrent layer needs at least one step")
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
      raise errors.UserError(f"search.min_steps={min_steps}: expected 1 <= min_steps <= search.steps={steps}")
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
    raise errors.UserError(f"search.{key}={list(given)}: expected distinct entries of {list(allowed)}")


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


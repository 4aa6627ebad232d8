"""`rcn_jax.search.export`: ranking under gate budgets, ties, collapsed decisions, strict JSON."""

import itertools
import pathlib

import numpy as np
import pytest

from rcn_jax import run_folder
from rcn_jax.models import search_space
from rcn_jax.search import export


def test_collapsed_decisions_export_the_per_decision_argmax_as_valid_json(tmp_path):
  """Every non-none gate weight exactly 0: no gate wins, and a forced gate does not decide the stem."""
  space = search_space.SearchSpace.paper(stems=("standard", "wide"), steps=1, min_steps=1, max_hops=1)
  decisions = space.decisions()
  weights = {"stem": np.asarray([0.3, 0.7])}
  weights.update({name: np.asarray([1.0] + [0.0] * (len(c) - 1)) for name, c in decisions.items() if name != "stem"})
  (score, best), = export.rank_choices(weights, decisions, k=1)
  assert best == {"stem": "wide", **{name: "none" for name in decisions if name != "stem"}}
  np.testing.assert_allclose(score, np.log(0.7))
  # A bound that forces a zero-weight gate: the stem is still the argmax of its own weights, and
  # the score is -inf, which the search writes as null.
  forced = export.rank_choices(weights, decisions, k=3, min_gates=1)
  assert [choice["stem"] for _, choice in forced] == ["wide"] * 3
  assert all(score == -np.inf for score, _ in forced)
  # Exact ties go to the simpler candidate, whatever the order of the candidates.
  tied = {"stem": np.asarray([0.5, 0.5]), **{n: w for n, w in weights.items() if n != "stem"}}
  for order in (("standard", "wide"), ("wide", "standard")):
    (_, choice), = export.rank_choices(tied, {**decisions, "stem": order}, k=1)
    assert choice["stem"] == "standard"
  assert export.tied_decisions(tied, decisions) == {"stem": ["standard", "wide"]}
  architecture = search_space.Architecture.from_choices(space, forced[0][1])
  path = export.write_configs(str(tmp_path), [(forced[0][0], architecture)], {
      "features": 4, "pool_size": 2, "dropout_rate": 0.5, "pytorch_bn": True}, {}, "once (test subjects seen)",
      "note")[0]
  assert "-inf (a zero-weight pick was forced)" in pathlib.Path(path).read_text()
  with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
    run_folder.write_json(str(tmp_path / "bad.json"), {"score": -np.inf}, strict=True)


def test_ranking_is_the_exact_top_k_under_a_gate_budget():
  rng = np.random.default_rng(4)
  decisions = {"stem": ("standard", "wide"), "gate_stem": ("none", "input"),
               "gate_state_0": ("none", "input", "stem"), "gate_output": ("none", "input", "stem", "state_0")}
  weights = {name: rng.dirichlet(np.ones(len(c))) for name, c in decisions.items()}
  for min_gates, max_gates in ((0, -1), (0, 0), (0, 1), (1, 1), (1, 2), (2, -1), (3, 3)):
    brute = []
    for picks in itertools.product(*(range(len(c)) for c in decisions.values())):
      choice = {name: decisions[name][i] for name, i in zip(decisions, picks)}
      gates = sum(name.startswith("gate_") and label != "none" for name, label in choice.items())
      if min_gates <= gates and (max_gates < 0 or gates <= max_gates):
        brute.append((sum(np.log(weights[n][i]) for n, i in zip(decisions, picks)), choice))
    brute.sort(key=lambda e: -e[0])
    ranked = export.rank_choices(weights, decisions, k=5, max_gates=max_gates, min_gates=min_gates)
    assert [c for _, c in ranked] == [c for _, c in brute[:5]]
    np.testing.assert_allclose([s for s, _ in ranked], [s for s, _ in brute[:5]])
  with pytest.raises(ValueError, match="search.min_gates=2, search.max_gates=1"):
    export.rank_choices(weights, decisions, k=1, max_gates=1, min_gates=2)

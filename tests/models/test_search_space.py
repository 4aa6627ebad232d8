"""The search space: its decisions, architecture descriptions, membership and invalid choices."""

import pytest

from rcn_jax.models import search_space


def test_paper_space_lists_every_node_and_source():
  space = search_space.SearchSpace.paper()
  assert space.decisions() == {
      "stem": ("standard", "wide", "wide_pooled", "conv5_pool"),
      # state_1 reads the block input plus state_0 under both connectivities; state_3 may skip.
      "state_2": ("recurrent", "shortcut"),
      "state_3": ("recurrent", "shortcut", "skip"),
      "gate_stem": ("none", "input"),
      "gate_state_0": ("none", "input", "stem"),
      "gate_state_1": ("none", "input", "stem", "state_0"),
      "gate_state_2": ("none", "input", "stem", "state_0", "state_1"),
      "gate_state_3": ("none", "input", "stem", "state_0", "state_1", "state_2"),
      # 1-3 hops back from the output are state_3..state_1; state_0 is four hops away.
      "gate_output": ("none", "input", "stem", "state_1", "state_2", "state_3"),
  }
  assert [space.hops("state_3", s) for s in ("state_2", "state_1", "state_0")] == [1, 2, 3]
  assert space.hops("stem", "input") == 1
  assert "gate_output" not in search_space.SearchSpace.paper(gate_output=False).decisions()
  assert search_space.SearchSpace.paper(max_hops=1).decisions()["gate_state_3"] == (
      "none", "input", "stem", "state_2")
  wide = search_space.SearchSpace.paper(ops=search_space.SEARCH_OPS, min_steps=1)
  assert wide.decisions()["state_1"] == ("recurrent", "recurrent_wide")
  assert wide.decisions()["state_2"] == search_space.SEARCH_OPS + ("skip",)


def test_every_paper_preset_is_a_member_of_the_default_space():
  space = search_space.SearchSpace.paper()
  assert sorted(search_space.PRESET_ARCHITECTURES) == ["rcn", "rcn_a", "rcn_c", "rcn_f", "rcn_p", "rcn_s", "rcn_w"]
  for preset, architecture in search_space.PRESET_ARCHITECTURES.items():
    assert search_space.is_member(space, architecture), preset
    assert architecture.paper_name() == preset


def test_descriptions_round_trip():
  architecture = search_space.Architecture("wide", ("recurrent", "shortcut_wide", "recurrent"),
                                           (("stem", "input"), ("state_2", "state_0")))
  text = architecture.encode()
  assert text == "searched:stem=wide,states=recurrent+shortcut_wide+recurrent,gates=stem<input+state_2<state_0"
  # The older uniform form still reads.
  assert search_space.Architecture.decode("searched:stem=wide,layer=shortcut,steps=3,gates=none") == \
      search_space.Architecture("wide", ("recurrent", "shortcut", "shortcut"))
  assert search_space.Architecture.decode(text) == architecture
  assert "state_2 <- state_0 (2 hops)" in architecture.describe()


def test_invalid_spaces_and_choices_raise():
  with pytest.raises(ValueError, match="search.min_steps=4"):
    search_space.SearchSpace.paper(min_steps=4)
  with pytest.raises(ValueError, match="involves a skipped state"):
    search_space.Architecture.from_choices(search_space.SearchSpace.paper(),
                                           {"state_3": "skip", "gate_output": "state_3"})

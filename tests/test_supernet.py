"""The supernet: its space, one-hot weights give the paper's presets, discrete networks are presets."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rcn_jax import models
from rcn_jax.models import supernet

KEYS = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
FM, POOL, SIZE = 8, 5, 30


def test_paper_space_lists_every_node_and_source():
  space = supernet.SearchSpace.paper()
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
  assert "gate_output" not in supernet.SearchSpace.paper(gate_output=False).decisions()
  assert supernet.SearchSpace.paper(max_hops=1).decisions()["gate_state_3"] == ("none", "input", "stem", "state_2")
  wide = supernet.SearchSpace.paper(ops=supernet.SEARCH_OPS, min_steps=1)
  assert wide.decisions()["state_1"] == ("recurrent", "recurrent_wide")
  assert wide.decisions()["state_2"] == supernet.SEARCH_OPS + ("skip",)


def _outputs(model, variables, x, *weights):
  """Eval logits, train logits and running statistics, in one compiled program."""

  @jax.jit
  def run(variables, x, *weights):
    evaluated = model.apply(variables, x, *weights, train=False)
    trained, state = model.apply(variables, x, *weights, train=True, mutable=["batch_stats"])
    return evaluated, trained, state["batch_stats"]

  return run(variables, x, *weights)


def test_every_paper_preset_is_a_one_hot_member_of_the_default_space():
  """Eval and train-mode logits of each preset (`models.create_model`, official step counts) equal the
  default space's supernet under the preset's one-hot weights, with the supernet's parameters mapped."""
  space = supernet.SearchSpace.paper()
  net = supernet.Supernet(space, FM, POOL, dropout_rate=0.0)
  x = jax.random.uniform(jax.random.key(2), (4, SIZE, SIZE, 3))
  variables = jax.jit(net.init)(KEYS, x, supernet.one_hot_weights(space, supernet.PRESET_ARCHITECTURES["rcn_f"]))
  # Running statistics away from their initial values, so eval mode is a real check.
  variables["batch_stats"] = jax.tree.map(lambda a: a + jax.random.uniform(jax.random.key(3), a.shape),
                                          variables["batch_stats"])
  run = jax.jit(lambda v, x, w: _outputs(net, v, x, w)[:2])
  assert sorted(supernet.PRESET_ARCHITECTURES) == ["rcn", "rcn_a", "rcn_c", "rcn_f", "rcn_p", "rcn_s", "rcn_w"]
  seen = []
  for preset, architecture in supernet.PRESET_ARCHITECTURES.items():
    assert supernet.is_member(space, architecture), preset
    evaluated, trained = run(variables, x, supernet.one_hot_weights(space, architecture))
    chosen = supernet.discrete_variables(variables, space, architecture)
    model = models.create_model(preset, features=FM, pool_size=POOL, dropout_rate=0.0)
    expected = _outputs(model, chosen, x)
    # Equal up to float32 rounding: XLA fuses the two programs differently.
    np.testing.assert_allclose(evaluated, expected[0], rtol=1e-5, atol=1e-6, err_msg=preset)
    np.testing.assert_allclose(trained, expected[1], rtol=1e-5, atol=1e-6, err_msg=preset)
    seen.append(np.asarray(evaluated))
  # The presets are different networks: the check would notice a wrong one-hot choice.
  assert min(np.abs(a - b).max() for i, a in enumerate(seen) for b in seen[i + 1:]) > 1e-4


@pytest.mark.parametrize("preset", sorted(supernet.PRESET_ARCHITECTURES))
def test_searched_description_builds_the_preset_itself(preset):
  """A discrete network has RCN's parameter names and computes RCN's program, op for op."""
  architecture = supernet.PRESET_ARCHITECTURES[preset]
  searched = models.create_model(architecture.encode(), features=FM, pool_size=POOL)
  same = models.create_model("searched", architecture=architecture.encode(), features=FM, pool_size=POOL)
  assert searched == same
  model = models.create_model(preset, features=FM, pool_size=POOL)
  x = jnp.ones((2, SIZE, SIZE, 3))
  variables = jax.eval_shape(lambda: model.init(KEYS, x, train=False))
  assert jax.tree.structure(jax.eval_shape(lambda: searched.init(KEYS, x, train=False))) == \
      jax.tree.structure(variables)
  program = lambda m: str(jax.make_jaxpr(lambda v, x: m.apply(v, x, train=True, rngs={"dropout": KEYS["dropout"]},
                                                             mutable=["batch_stats"]))(variables, x))
  assert program(searched) == program(model)
  assert architecture.paper_name() == preset


def test_descriptions_round_trip_and_bad_ones_are_named():
  architecture = supernet.Architecture("wide", ("recurrent", "shortcut_wide", "recurrent"),
                                       (("stem", "input"), ("state_2", "state_0")))
  text = architecture.encode()
  assert text == "searched:stem=wide,states=recurrent+shortcut_wide+recurrent,gates=stem<input+state_2<state_0"
  # The older uniform form still reads.
  assert supernet.Architecture.decode("searched:stem=wide,layer=shortcut,steps=3,gates=none") == \
      supernet.Architecture("wide", ("recurrent", "shortcut", "shortcut"))
  assert supernet.Architecture.decode(text) == architecture
  assert "state_2 <- state_0 (2 hops)" in architecture.describe()
  for bad, named in (("searched:stem=wide,layer=shortcut,steps=3", "missing"),
                     ("searched:stem=wide,layer=shortcut,steps=x,gates=none", "steps='x'"),
                     ("searched:stem=wide,layer=shortcut,steps=3,gates=stem", "node<source"),
                     ("searched:stem=wide,layer=shortcut,steps=3,gates=stem<state_1", "not an earlier"),
                     ("searched:stem=huge,layer=shortcut,steps=3,gates=none", "search.stems"),
                     ("searched:stem=wide,states=shortcut+shortcut,gates=none", r"states\[1\]"),
                     ("searched:stem=wide,colour=red", "colour=red")):
    with pytest.raises(ValueError, match=named):
      models.create_model(bad, features=FM, pool_size=POOL)
  with pytest.raises(ValueError, match="model.steps=2"):
    models.create_model(text, features=FM, pool_size=POOL, steps=2)


def test_invalid_spaces_and_weights_raise():
  net = supernet.Supernet(supernet.SearchSpace.paper(), FM, POOL)
  with pytest.raises(ValueError, match=r"lack the decision\(s\) \['gate_output'"):
    jax.eval_shape(lambda: net.init(KEYS, jnp.ones((1, SIZE, SIZE, 3)), {"stem": jnp.ones(4)}))
  with pytest.raises(ValueError, match="model.features=6"):
    supernet.Supernet(supernet.SearchSpace.paper(), 6, POOL)
  with pytest.raises(ValueError, match="model.features=10"):
    supernet.Supernet(supernet.SearchSpace.paper(stems=("standard",), ops=supernet.SEARCH_OPS), 10, POOL)
  with pytest.raises(ValueError, match="search.min_steps=4"):
    supernet.SearchSpace.paper(min_steps=4)
  with pytest.raises(ValueError, match="not in the search space"):
    supernet.discrete_variables({}, supernet.SearchSpace.paper(stems=("wide",)), supernet.PRESET_ARCHITECTURES["rcn_p"])
  with pytest.raises(ValueError, match="involves a skipped state"):
    supernet.Architecture.from_choices(supernet.SearchSpace.paper(), {"state_3": "skip", "gate_output": "state_3"})

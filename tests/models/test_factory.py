"""The model factory: every preset's architecture, searched descriptions, bad presets named."""

import jax
import jax.numpy as jnp
import pytest

from rcn_jax import models
from rcn_jax.models import search_space

KEYS = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
FM, POOL, SIZE = 8, 5, 30


def _param_count(variables) -> int:
  return sum(leaf.size for leaf in jax.tree.leaves(variables["params"]))


def _closed_form(preset: str, fm: int, pool: int) -> int:
  head = 3 * pool * pool * fm + 3
  if preset in ("rcn", "rcn_a", "rcn_s", "depth_2"):
    return 10 * fm * fm + 84 * fm + head
  if preset in ("rcn_w", "rcn_c", "rcn_p", "rcn_f"):
    return 10 * fm * fm + 36 * fm + head
  if preset == "depth_1":
    return 78 * fm + head
  layers_count = int(preset[-1]) - 1
  return 10 * layers_count * fm * fm + (78 + 6 * layers_count) * fm + head


@pytest.mark.parametrize("fm", [16, 32, 64])
@pytest.mark.parametrize("pool", [5, 7])
def test_parameter_counts_equal_the_closed_forms(fm, pool):
  shapes = lambda m: jax.eval_shape(lambda: m.init(KEYS, jnp.ones((2, 60, 60, 3)), train=False))
  for preset in models.PRESETS:
    counted = _param_count(shapes(models.create_model(preset, features=fm, pool_size=pool)))
    assert counted == _closed_form(preset, fm, pool), preset
  quirky = models.create_model("rcn_f", features=fm, pool_size=pool, reference_quirks=True)
  assert _param_count(shapes(quirky)) == 10 * fm * fm + 28.5 * fm + 3 * pool * pool * fm + 3
  assert (_param_count(shapes(models.create_model("rcn_a", features=16, pool_size=5))),
          _param_count(shapes(models.create_model("rcn_a", features=64, pool_size=7)))) == (
              5107, 55747)


def test_unknown_preset_is_named():
  with pytest.raises(ValueError, match="rcn_z"):
    models.create_model("rcn_z", features=16, pool_size=5)


@pytest.mark.parametrize("preset", sorted(search_space.PRESET_ARCHITECTURES))
def test_searched_description_builds_the_preset_itself(preset):
  """A discrete network has RCN's parameter names and computes RCN's program, op for op."""
  architecture = search_space.PRESET_ARCHITECTURES[preset]
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


def test_bad_searched_descriptions_are_named():
  text = search_space.Architecture("wide", ("recurrent", "shortcut_wide", "recurrent"),
                                   (("stem", "input"), ("state_2", "state_0"))).encode()
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
  with pytest.raises(ValueError, match="reference_quirks=True"):
    models.create_model(text, features=FM, pool_size=POOL, reference_quirks=True)

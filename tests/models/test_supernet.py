"""The supernet: one-hot weights give the paper's presets; invalid spaces and weights raise."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rcn_jax import models
from rcn_jax.models import search_space, supernet

# Fourteen small programs, each compiled once and run once (`fast_compile`).
pytestmark = pytest.mark.usefixtures("fast_compile")

KEYS = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
FM, POOL, SIZE = 8, 5, 30


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
  space = search_space.SearchSpace.paper()
  net = supernet.Supernet(space, FM, POOL, dropout_rate=0.0)
  x = jax.random.uniform(jax.random.key(2), (4, SIZE, SIZE, 3))
  rcn_f = search_space.PRESET_ARCHITECTURES["rcn_f"]
  variables = jax.jit(net.init)(KEYS, x, supernet.one_hot_weights(space, rcn_f))
  # Running statistics away from their initial values, so eval mode is a real check.
  variables["batch_stats"] = jax.tree.map(lambda a: a + jax.random.uniform(jax.random.key(3), a.shape),
                                          variables["batch_stats"])
  run = jax.jit(lambda v, x, w: _outputs(net, v, x, w)[:2])
  assert sorted(search_space.PRESET_ARCHITECTURES) == ["rcn", "rcn_a", "rcn_c", "rcn_f", "rcn_p", "rcn_s", "rcn_w"]
  seen = []
  for preset, architecture in search_space.PRESET_ARCHITECTURES.items():
    assert search_space.is_member(space, architecture), preset
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


def test_invalid_spaces_and_weights_raise():
  net = supernet.Supernet(search_space.SearchSpace.paper(), FM, POOL)
  with pytest.raises(ValueError, match=r"lack the decision\(s\) \['gate_output'"):
    jax.eval_shape(lambda: net.init(KEYS, jnp.ones((1, SIZE, SIZE, 3)), {"stem": jnp.ones(4)}))
  with pytest.raises(ValueError, match="model.features=6"):
    supernet.Supernet(search_space.SearchSpace.paper(), 6, POOL)
  with pytest.raises(ValueError, match="model.features=10"):
    supernet.Supernet(search_space.SearchSpace.paper(stems=("standard",), ops=search_space.SEARCH_OPS), 10, POOL)
  with pytest.raises(ValueError, match="not in the search space"):
    supernet.discrete_variables({}, search_space.SearchSpace.paper(stems=("wide",)),
                                search_space.PRESET_ARCHITECTURES["rcn_p"])
  with pytest.raises(ValueError, match="not in the search space"):
    supernet.one_hot_weights(search_space.SearchSpace.paper(stems=("wide",)),
                             search_space.PRESET_ARCHITECTURES["rcn_p"])

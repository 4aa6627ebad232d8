"""Model behaviour the parity vectors cannot see: dropout placement, quirks, pooling rules, shapes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fixtures.numerics import assert_close_to_scale
from rcn_jax import models
from rcn_jax.models import attention, layers

KEYS = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
ATTENTION_PRESETS = ("rcn_a", "rcn_c", "rcn_f", "rcn_p")


def _init(model, size=60, batch=2):
  return model.init(KEYS, jnp.ones((batch, size, size, 3)), train=False)


def test_nearest_upsampling_follows_pytorch():
  expected = [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5, 6, 6]
  np.testing.assert_array_equal(layers.nearest_indices(7, 20), expected)
  x = jnp.arange(7.0)[None, :, None] * jnp.ones((1, 1, 7))
  np.testing.assert_array_equal(layers.upsample_nearest(x, 20, 20)[0, :, 0], expected)


def test_adaptive_pooling_bins_overlap_and_upsample():
  assert layers.adaptive_bins(14, 5) == [(0, 3), (2, 6), (5, 9), (8, 12), (11, 14)]
  assert layers.adaptive_bins(3, 5) == [(0, 1), (0, 2), (1, 2), (1, 3), (2, 3)]
  x = jax.random.normal(jax.random.key(3), (2, 3, 3, 4))
  pooled = layers.adaptive_avg_pool(x, 5)
  assert pooled.shape == (2, 5, 5, 4)
  for i, (r0, r1) in enumerate(layers.adaptive_bins(3, 5)):
    for j, (c0, c1) in enumerate(layers.adaptive_bins(3, 5)):
      np.testing.assert_allclose(pooled[:, i, j], x[:, r0:r1, c0:c1].mean(axis=(1, 2)), atol=1e-6)


@pytest.mark.parametrize("size", [20, 14])  # bins that tile the input (reshape) and bins that overlap
def test_adaptive_pooling_averages_each_bin(size):
  x = jax.random.normal(jax.random.key(5), (2, size, size, 4))
  pooled = layers.adaptive_avg_pool(x, 5)
  bins = layers.adaptive_bins(size, 5)
  expected = np.stack([np.stack([x[:, r0:r1, c0:c1].mean(axis=(1, 2)) for c0, c1 in bins], axis=1)
                       for r0, r1 in bins], axis=1)
  assert_close_to_scale(pooled, expected)


@pytest.mark.parametrize("keep", [0.5, 0.75, 0.7])  # 1 bit, 2 bits, and a 32-bit uniform per entry
def test_bernoulli_mask_keeps_each_entry_independently_with_its_probability(keep):
  mask = np.asarray(layers.bernoulli_mask(jax.random.key(6), keep, (200, 50, 30)))
  assert mask.shape == (200, 50, 30) and mask.dtype == bool
  n = mask.size
  assert abs(mask.mean() - keep) < 5 * np.sqrt(keep * (1 - keep) / n)
  # Neighbours share a random word: their joint frequency must still be keep^2, at every offset
  # within a word (an entry's bits are its own).
  flat = mask.reshape(-1)
  for offset in (1, 2, 7, 31, 32):
    both = (flat[:-offset] & flat[offset:]).mean()
    assert abs(both - keep ** 2) < 5 * np.sqrt(keep ** 2 * (1 - keep ** 2) / n), offset
  for position in range(32):  # every bit field of a word is used with the same probability
    assert abs(flat[position::32].mean() - keep) < 5 * np.sqrt(keep * (1 - keep) / (n / 32)), position
  again = np.asarray(layers.bernoulli_mask(jax.random.key(6), keep, (200, 50, 30)))
  other = np.asarray(layers.bernoulli_mask(jax.random.key(7), keep, (200, 50, 30)))
  np.testing.assert_array_equal(mask, again)
  assert (mask != other).mean() > 0.1


def test_dropout_zeroes_and_rescales_only_in_training():
  x = jnp.ones((4, 8, 8, 16))
  dropout = layers.Dropout(0.5)
  np.testing.assert_array_equal(dropout.apply({}, x, train=False), x)
  np.testing.assert_array_equal(layers.Dropout(0.0).apply({}, x, train=True), x)
  y = np.asarray(dropout.apply({}, x, train=True, rngs={"dropout": jax.random.key(8)}))
  assert set(np.unique(y)) == {0.0, 2.0}
  assert 0.4 < (y == 0).mean() < 0.6
  grad = jax.grad(lambda v: dropout.apply({}, v, train=True, rngs={"dropout": jax.random.key(8)}).sum())(x)
  np.testing.assert_array_equal(np.asarray(grad), y)  # the backward pass uses the same mask


def test_max_pool_matches_reduce_window_with_padding():
  x = jax.random.normal(jax.random.key(4), (2, 60, 60, 3))
  expected = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 3, 3, 1),
                                   ((0, 0), (1, 1), (1, 1), (0, 0)))
  np.testing.assert_array_equal(layers.max_pool(x, 3, padding=1), expected)
  odd = x[:, :7, :7]
  np.testing.assert_array_equal(layers.max_pool(odd, 2), jax.lax.reduce_window(
      odd, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID"))


@pytest.mark.parametrize("preset", ["rcn_a", "rcn_f", "rcn_p"])
def test_attention_reads_the_stem_output_after_dropout(preset):
  model = models.create_model(preset, features=8, pool_size=5)
  x = jax.random.uniform(jax.random.key(5), (4, 30, 30, 3))
  variables = _init(model, 30)
  _, state = model.apply(variables, x, train=True, rngs={"dropout": jax.random.key(6)},
                         mutable=["batch_stats", "intermediates"], capture_intermediates=True)
  stem_output = state["intermediates"]["stem"]["__call__"][0]
  kernel = variables["params"]["classifier_kernel"]
  expected = attention.cam_p(layers.adaptive_avg_pool(stem_output, 5), kernel)
  np.testing.assert_allclose(state["intermediates"]["attention"][0], expected, atol=1e-6)
  # The same stem without dropout gives another map: the check above can tell the two apart.
  _, clean = model.clone(dropout_rate=0.0).apply(
      variables, x, train=True, mutable=["batch_stats", "intermediates"])
  assert np.abs(clean["intermediates"]["attention"][0] - expected).max() > 1e-3


def test_quirk_mode_updates_stream2_statistics_twice():
  x = jax.random.uniform(jax.random.key(7), (4, 30, 30, 3))
  quirky = models.create_model("rcn_f", features=8, pool_size=5, reference_quirks=True)
  paper = models.create_model("rcn_f", features=8, pool_size=5)
  variables = _init(paper, 30)
  quirky_variables = jax.tree.map(lambda a: a, variables)
  del quirky_variables["params"]["stem"]["stream3"], quirky_variables["batch_stats"]["stem"]["stream3"]
  no_dropout = dict(train=True, mutable=["batch_stats"])
  _, once = paper.clone(dropout_rate=0.0).apply(variables, x, **no_dropout)
  _, twice = quirky.clone(dropout_rate=0.0).apply(quirky_variables, x, **no_dropout)
  mean_once = once["batch_stats"]["stem"]["stream2"]["bn"]["mean"]
  var_once = once["batch_stats"]["stem"]["stream2"]["bn"]["var"]
  batch_mean, batch_var = mean_once / 0.1, (var_once - 0.9) / 0.1  # from zero / one
  np.testing.assert_allclose(twice["batch_stats"]["stem"]["stream2"]["bn"]["mean"],
                             0.19 * batch_mean, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(twice["batch_stats"]["stem"]["stream2"]["bn"]["var"],
                             0.81 + 0.19 * batch_var, rtol=1e-5)
  assert "stream3" not in twice["batch_stats"]["stem"]


def test_quirk_mode_draws_independent_dropout_masks_for_the_reused_stream():
  quirky = models.create_model("rcn_f", features=8, pool_size=5, reference_quirks=True)
  x = jax.random.uniform(jax.random.key(8), (2, 30, 30, 3))
  variables = _init(quirky, 30)

  def stem_output(train):
    _, state = quirky.apply(variables, x, train=train, rngs={"dropout": jax.random.key(9)},
                            mutable=["batch_stats", "intermediates"], capture_intermediates=True)
    return state["intermediates"]["stem"]["__call__"][0]

  evaluated, trained = stem_output(False), stem_output(True)
  np.testing.assert_array_equal(evaluated[..., 4:6], evaluated[..., 6:8])
  dropped_a, dropped_b = trained[..., 4:6] == 0, trained[..., 6:8] == 0
  assert dropped_a.mean() > 0.3 and dropped_b.mean() > 0.3
  assert np.mean(dropped_a != dropped_b) > 0.3


@pytest.mark.parametrize("size", [20, 60, 100, 300])
def test_output_shapes_for_any_resolution(size):
  for preset in models.PRESETS:
    model = models.create_model(preset, features=8, pool_size=5)
    x = jnp.zeros((2, size, size, 3))
    out = jax.eval_shape(lambda: model.apply(_init(model, size), x, train=False))
    assert out.shape == (2, 3), (preset, size)


@pytest.mark.parametrize("preset", ATTENTION_PRESETS)
@pytest.mark.parametrize("value", [0.0, 0.5])
def test_attention_is_finite_on_a_constant_input(preset, value):
  model = models.create_model(preset, features=8, pool_size=5)
  variables = _init(model, 24)
  x = jnp.full((2, 24, 24, 3), value)

  def loss(params):
    logits, state = model.apply({**variables, "params": params}, x, train=False,
                                mutable=["intermediates"])
    return jnp.sum(logits ** 2), state["intermediates"]["attention"][0]

  (value_, cam), grads = jax.value_and_grad(loss, has_aux=True)(variables["params"])
  assert bool(jnp.isfinite(value_)) and bool(jnp.all(jnp.isfinite(cam)))
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
  assert float(cam.min()) >= 0.0 and float(cam.max()) <= 1.0
  if preset == "rcn_c" and value == 0.0:  # an all-zero input gives a constant map: ones
    np.testing.assert_array_equal(cam, 1.0)


def test_jit_and_eager_agree():
  model = models.create_model("rcn_f", features=8, pool_size=5)
  x = jax.random.uniform(jax.random.key(10), (3, 30, 30, 3))
  variables = _init(model, 30)
  run = lambda v, x: model.apply(v, x, train=True, rngs={"dropout": jax.random.key(11)},
                                 mutable=["batch_stats"])
  eager, jitted = run(variables, x), jax.jit(run)(variables, x)
  for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted)):
    assert_close_to_scale(b, a)


def test_mask_keeps_padded_samples_out_of_batch_norm():
  model = models.create_model("rcn_s", features=8, pool_size=5, dropout_rate=0.0)
  x = jax.random.uniform(jax.random.key(12), (6, 30, 30, 3))
  variables = _init(model, 30)
  padded = x.at[4:].set(100.0)
  mask = jnp.array([1, 1, 1, 1, 0, 0])
  full, full_state = model.apply(variables, padded, train=True, mask=mask, mutable=["batch_stats"])
  sub, sub_state = model.apply(variables, x[:4], train=True, mutable=["batch_stats"])
  assert_close_to_scale(full[:4], sub)
  for a, b in zip(jax.tree.leaves(full_state), jax.tree.leaves(sub_state)):
    assert_close_to_scale(a, b)


def test_running_variance_rule_is_selectable():
  x = jax.random.normal(jax.random.key(13), (2, 3, 3, 1))
  batch_var = float(jnp.var(x))
  for unbiased, factor in ((True, 18 / 17), (False, 1.0)):
    norm = layers.BatchNorm(unbiased_running_var=unbiased)
    variables = norm.init(KEYS, x, train=False)
    _, state = norm.apply(variables, x, train=True, mutable=["batch_stats"])
    np.testing.assert_allclose(state["batch_stats"]["var"], 0.9 + 0.1 * batch_var * factor,
                               rtol=1e-6)


@pytest.mark.parametrize("preset,features", [("rcn_w", 18), ("rcn_f", 6), ("rcn_p", 7)])
def test_wide_stems_reject_indivisible_feature_counts(preset, features):
  with pytest.raises(ValueError, match=f"model.features={features}"):
    models.create_model(preset, features=features, pool_size=5)


def test_no_feature_maps_is_an_error_naming_the_key():
  with pytest.raises(ValueError, match="model.features=0 must be >= 1"):
    models.create_model("rcn", features=0, pool_size=5).init(KEYS, np.zeros((1, 20, 20, 3)), train=False)

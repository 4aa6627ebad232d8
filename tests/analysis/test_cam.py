"""Class activation maps: they decompose the logits exactly; run grids name true and predicted classes."""

import jax
import numpy as np
import pytest

from rcn_jax import errors, models, plots, run_folder
from rcn_jax.analysis import cam, trained_run
from fixtures.shared_run import shared_tiny_run

INPUTS = np.random.default_rng(0).random((2, 20, 20, 3)).astype(np.float32)


@pytest.fixture(scope="module", autouse=True)
def quick(fast_compile):
  yield


def initialised(preset):
  module = models.create_model(preset, features=8, pool_size=2)
  init = jax.jit(lambda keys, x: module.init(keys, x, train=False))
  variables = init({"params": jax.random.PRNGKey(1), "dropout": jax.random.PRNGKey(2)}, INPUTS)
  return module, jax.tree.map(np.asarray, variables)


@pytest.mark.parametrize("preset, feature_module", [
    ("rcn_a", "layer_0"), ("rcn_f", "layer_0"), ("depth_1", "stem"), ("depth_3", "layer_1")])
def test_maps_sum_to_the_logits_without_bias(preset, feature_module):
  """CAM at the last feature map: the locations' contributions add up to each class logit."""
  inputs = INPUTS
  module, variables = initialised(preset)
  # The official initial classifier (std 0.01) gives near-zero logits; larger weights test more.
  variables["params"]["classifier_kernel"] = 50.0 * variables["params"]["classifier_kernel"]
  variables["params"]["classifier_bias"] = np.asarray([0.3, -0.2, 0.1], np.float32)
  assert cam.feature_module_name(variables) == feature_module
  activations = cam.class_activation_maps(module, variables, inputs)
  logits = np.asarray(jax.jit(lambda v, x: module.apply(v, x, train=False))(variables, inputs))
  np.testing.assert_allclose(activations.logits, logits, atol=1e-5)
  assert activations.maps.shape[0] == 2 and activations.maps.shape[-1] == 3
  np.testing.assert_allclose(activations.maps.sum(axis=(1, 2)), logits - [0.3, -0.2, 0.1], atol=2e-5)
  assert np.abs(logits).max() > 0.5  # the identity is not trivially 0 = 0
  np.testing.assert_allclose(activations.probabilities.sum(axis=1), 1.0, atol=1e-6)


def test_a_model_without_rcn_feature_modules_is_a_user_error():
  """CAMs of a comparison model (STSTNet) are one line naming its modules, not a traceback."""
  module = models.create_model("ststnet", features=8, pool_size=2)
  variables = jax.eval_shape(lambda x: module.init({"params": jax.random.PRNGKey(0)}, x, train=False),
                             np.zeros((1, 28, 28, 3), np.float32))
  with pytest.raises(errors.UserError, match=r"CAM maps need an RCN.*'conv1'"):
    cam.feature_module_name(variables)


def test_maps_follow_where_the_class_evidence_is():
  """A one-layer linear probe: the CAM of a model that reads only the left half is zero on the right."""
  module, variables = initialised("depth_1")
  kernel = np.asarray(variables["params"]["classifier_kernel"]).reshape(2, 2, 8, 3).copy()
  kernel[:, 1] = 0.0  # no weight on the right column of pooled cells
  variables["params"]["classifier_kernel"] = kernel.reshape(-1, 3) * 100.0
  maps = cam.class_activation_maps(module, variables, INPUTS).maps  # [2, 4, 4, 3]: the stem pools 20 -> 4
  assert np.all(maps[:, :, 2:] == 0.0) and np.abs(maps[:, :, :2]).max() > 0


def test_heat_maps_are_resized_and_normalised():
  heat = cam.heat_map(np.array([[0.0, 2.0], [4.0, 6.0]]), (8, 6))
  assert heat.shape == (8, 6) and heat.min() == 0.0 and heat.max() == 1.0
  assert heat[0, 0] == 0.0 and heat[-1, -1] == 1.0
  np.testing.assert_array_equal(cam.heat_map(np.ones((3, 3)), (4, 4)), np.zeros((4, 4)))


def test_choose_samples_takes_confident_successes_and_failures_per_class():
  def row(sample, label, prediction, probabilities, seed="0"):
    return {"sample": sample, "label": str(label), "prediction": str(prediction), "seed": seed,
            **{f"p_{n}": str(p) for n, p in zip(("negative", "positive", "surprise"), probabilities)}}
  rows = [row("a", 0, 0, (0.6, 0.2, 0.2)), row("b", 0, 0, (0.9, 0.05, 0.05)), row("c", 0, 1, (0.3, 0.6, 0.1)),
          row("d", 1, 1, (0.1, 0.8, 0.1)), row("e", 2, 0, (0.5, 0.1, 0.4)), row("f", 0, 0, (0.99, 0, 0.01), seed="1")]
  chosen = [r["sample"] for r in cam.choose_samples(rows, ("negative", "positive", "surprise"))]
  assert chosen == ["b", "c", "d", "e"]


def test_run_grid_shows_apex_flow_and_maps_with_class_names(tmp_path_factory, monkeypatch):
  run_dir = shared_tiny_run(tmp_path_factory)
  run = trained_run.load_run(run_dir)
  figures = []
  saved = plots.save
  monkeypatch.setattr(plots, "save", lambda figure, path: figures.append(figure) or saved(figure, path))
  path = cam.write_run_cams(run, str(tmp_path_factory.mktemp("cams") / "grid.png"))
  titles = [axis.get_title() for axis in figures[0].axes]
  rows = cam.choose_samples(run_folder.read_predictions(run_dir), run.class_names)
  assert len(rows) >= 1
  for row in rows:
    truth = run.class_names[int(row["label"])]
    assert any(row["sample"] in t and f"true {truth}, predicted " in t for t in titles), titles
  # Column headings and one colour bar for the activation.
  for heading in cam.COLUMNS:
    assert any(heading in t for t in titles)
  assert any(axis.get_ylabel().startswith("activation") for axis in figures[0].axes)
  # The apex frames are the run's own (stored with its in-memory samples) under every map.
  images = [axis.get_images() for axis in figures[0].axes if axis.get_images()]
  assert sum(len(i) == 2 for i in images) == 2 * len(rows)  # two overlays per sample row
  from PIL import Image
  with Image.open(path) as image:
    assert image.size[1] > 200 * len(rows)

"""Class activation maps (CAM, Zhou et al. 2016) of trained fold models, over flow maps and apex frames.

The RCN head pools the last feature map `F [h, w, fm]` adaptively to `P x P` and applies one
linear layer, so each class logit is a sum of contributions of the feature map's locations:

  logit_c - bias_c = sum_{h, w} M_c[h, w],   M_c[h, w] = sum_k F[h, w, k] * d logit_c / d F[h, w, k],

the classic CAM generalised from global average pooling to the adaptive pooling (and to RCN-A/P's
attention gate on the pooled features, which does not depend on `F`). `M_c` is computed exactly
by differentiating the model at its last feature map (a zero perturbation added there through
flax's method interception), so no part of the model is re-implemented here. Maps are resized
bilinearly to the image and min-max normalised per map for display.

  python -m rcn_jax.analysis.cam --workdir=RUN [--out=cams.png] [--per_class=1] [--apex_dir=DIR]

writes a grid (paper Fig. 10): per chosen test sample, the apex frame, the flow map, the CAM of
the predicted class over the flow map and over the apex frame, titled with the true and predicted
class; each sample is explained by the fold model that held its subject out.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from data_prep import inference
from data_prep.inference import FramePair
from rcn_jax import errors, plots, run_folder
from rcn_jax.data import Composite
from rcn_jax.analysis.trained_run import FoldModel, TrainedRun, load_run

COLUMNS = ("apex frame", "flow map (u, v, strain)", "CAM on flow map", "CAM on apex frame")


def feature_module_name(variables: Mapping[str, Any]) -> str:
  """The top-level submodule whose output the head pools: the last `layer_k`, else the stem."""
  names = list(variables["params"])
  layers = sorted((n for n in names if n.startswith("layer_") and n[6:].isdigit()), key=lambda n: int(n[6:]))
  if layers:
    return layers[-1]
  stems = [n for n in names if n.startswith("stem")]
  if len(stems) != 1:
    # CAMs read an RCN's pooled feature maps; the comparison models (STSTNet, ResNet18, ...) have
    # no such module, so asking for their CAMs is a user-facing limit, not a bug.
    raise errors.UserError(f"CAM maps need an RCN (its stem and layer_k modules); this run's model has "
                           f"the modules {names}")
  return stems[0]


@dataclasses.dataclass(frozen=True)
class ClassActivations:
  """CAMs of a batch.

  Attributes:
    logits: `[N, C]`.
    maps: `[N, h, w, C]` contribution of each location of the last feature map to each logit.
  """
  logits: np.ndarray
  maps: np.ndarray

  @property
  def probabilities(self) -> np.ndarray:
    shifted = self.logits - self.logits.max(axis=-1, keepdims=True)
    return np.exp(shifted) / np.exp(shifted).sum(axis=-1, keepdims=True)


@functools.lru_cache(maxsize=None)
def _cam_program(module, target: str, num_classes: int):
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  def is_target(module_instance, method_name: str) -> bool:
    scope = module_instance.scope
    return method_name == "__call__" and scope is not None and tuple(scope.path) == (target,)

  def logits_with(variables, inputs, delta):
    def interceptor(next_fun, args, kwargs, context):
      out = next_fun(*args, **kwargs)
      return out + delta if is_target(context.module, context.method_name) else out

    with nn.intercept_methods(interceptor):
      return module.apply(variables, inputs, train=False)

  def cams(variables, inputs):
    _, state = module.apply(variables, inputs, train=False, capture_intermediates=is_target,
                            mutable=["intermediates"])
    features = state["intermediates"][target]["__call__"][0]
    logits, pullback = jax.vjp(lambda d: logits_with(variables, inputs, d), jnp.zeros_like(features))
    one_hot = jnp.eye(num_classes, dtype=logits.dtype)
    grads = jax.vmap(lambda row: pullback(jnp.broadcast_to(row, logits.shape))[0])(one_hot)
    return logits, jnp.einsum("nhwk,cnhwk->nhwc", features, grads)

  return jax.jit(cams)


def class_activation_maps(module, variables: Mapping[str, Any], inputs: np.ndarray) -> ClassActivations:
  """CAMs of one model on a batch.

  Args:
    module: the flax model (an RCN preset or searched architecture).
    variables: its `{params, batch_stats}`.
    inputs: `[N, H, W, 3]` network inputs.

  Returns:
    Logits and maps; for every model whose head is linear in the last feature map,
    `maps.sum(axis=(1, 2)) == logits - bias` up to float rounding.
  """
  variables = dict(variables)
  program = _cam_program(module, feature_module_name(variables), int(module.num_classes))
  logits, maps = program(variables, np.asarray(inputs, np.float32))
  return ClassActivations(np.asarray(logits), np.asarray(maps))


def heat_map(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """`[h, w]` map resized bilinearly to `size` (rows, cols) and min-max normalised to [0, 1]."""
  import cv2  # pylint: disable=g-import-not-at-top

  resized = cv2.resize(np.asarray(cam, np.float32), (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
  low, high = resized.min(), resized.max()
  if high - low <= 0:
    return np.zeros(size, np.float32)
  return ((resized - low) / (high - low)).astype(np.float32)


def flow_image(network_input_map: np.ndarray) -> np.ndarray:
  """A network input `[r, r, 3]` (u, v, strain in [0, 1]) shown as an RGB image."""
  return np.clip(np.asarray(network_input_map, np.float32), 0.0, 1.0)


def sample_panels(flow: np.ndarray, cam: np.ndarray, title: str,
                  apex: np.ndarray | None = None) -> list[plots.ImagePanel | None]:
  """The four panels of one sample (apex, flow map, CAM on flow, CAM on apex); None where no apex."""
  flow_rgb = flow_image(flow)
  panels: list[plots.ImagePanel | None] = [
      plots.ImagePanel(apex, "") if apex is not None else None,
      plots.ImagePanel(flow_rgb, title),
      plots.ImagePanel(flow_rgb, "", heat_map(cam, flow_rgb.shape[:2])),
      plots.ImagePanel(apex, "", heat_map(cam, apex.shape[:2])) if apex is not None else None,
  ]
  return panels


def sample_title(name: str, true_class: str | None, predicted_class: str, probability: float) -> str:
  truth = f"true {true_class}, " if true_class else ""
  return f"{name}\n{truth}predicted {predicted_class} ({probability:.2f})"


def choose_samples(rows: Sequence[Mapping[str, str]], class_names: Sequence[str], *,
                   per_class: int = 1) -> list[Mapping[str, str]]:
  """Per true class, the `per_class` most confident correct predictions and the most confident
  failures (paper Fig. 10 shows successes and a failure), from the first seed's rows."""
  if not rows:
    return []
  first_seed = rows[0]["seed"]
  rows = [r for r in rows if r["seed"] == first_seed]
  chosen = []
  for label, name in enumerate(class_names):
    of_class = [r for r in rows if int(r["label"]) == label]
    correct = sorted((r for r in of_class if int(r["prediction"]) == label),
                     key=lambda r: -float(r[f"p_{name}"]))
    wrong = sorted((r for r in of_class if int(r["prediction"]) != label),
                   key=lambda r: -max(float(r[f"p_{c}"]) for c in class_names))
    chosen.extend(correct[:per_class] + wrong[:per_class])
  return chosen


def write_run_cams(run: TrainedRun | str, path: str | None = None, *, composite: Composite | None = None,
                   apex_frames: Sequence[np.ndarray | None] | None = None, per_class: int = 1) -> str:
  """Writes the CAM grid of a run's chosen test samples.

  Args:
    run: a loaded run or its folder.
    path: the PNG (default `<workdir>/cams.png`).
    composite: the run's samples (default: `run_folder.load_run_composite`).
    apex_frames: grey apex frame per composite sample, or None entries (default: the stored ones;
      for the synthetic composite missing ones are regenerated).
    per_class: correct and failed samples shown per true class.

  Returns:
    The PNG's path.
  """
  run = load_run(run) if isinstance(run, (str, os.PathLike)) else run
  if composite is None:
    composite, stored_frames = run_folder.load_run_composite(run.workdir, run.config)
    apex_frames = apex_frames if apex_frames is not None else stored_frames
  if apex_frames is None:
    apex_frames = [None] * len(composite)
  index_of = {(d, s, n): i for i, (d, s, n) in
              enumerate(zip(composite.datasets, composite.subjects, composite.samples))}
  class_names = run.class_names
  rows, titles = [], []
  for row in choose_samples(run_folder.read_predictions(run.workdir), class_names, per_class=per_class):
    key = (row["dataset"], row["subject"], row["sample"])
    if key not in index_of:
      raise errors.UserError(f"{run.workdir}: predicted sample {'/'.join(key)} is not in the run's composite")
    index = index_of[key]
    model = run.select(row["fold"], [int(row["seed"])])[0]
    activations = class_activation_maps(run.module_of(model), run.model_variables(model),
                                          run.model_input(model, composite.flows[index:index + 1]))
    predicted = int(np.argmax(activations.logits[0]))
    apex = apex_frames[index]
    if apex is None and run.config["data"]["name"] == "synthetic":
      apex = inference.synthetic_apex_frame(*key, int(composite.labels[index]))
    title = sample_title("/".join(key), class_names[int(composite.labels[index])], class_names[predicted],
                         float(activations.probabilities[0, predicted]))
    rows.append(sample_panels(composite.flows[index], activations.maps[0, ..., predicted], title, apex))
    titles.append(f"fold {row['fold']}")
  if not rows:
    raise errors.UserError(f"{run.workdir}: {run_folder.PREDICTIONS} lists no test samples")
  path = path or os.path.join(run.workdir, run_folder.CAMS)
  model = run.config["model"]
  return plots.image_grid(path, rows, column_titles=COLUMNS, row_titles=titles,
                          suptitle=f"{model['preset']} class activation maps of the predicted class "
                          f"(each sample by the fold model that held its subject out)")


def write_pair_cams(path: str, run: TrainedRun, pair: FramePair, inputs: np.ndarray,
                    models: Sequence[FoldModel]) -> str:
  """The CAM of an onset/apex pair: the mean over `models`' maps and probabilities.

  Args:
    path: the PNG.
    run: the loaded run.
    pair: the frames (the apex is drawn under the map).
    inputs: `[1, r, r, 3]`, the pair's network input.
    models: the fold models that scored it.

  Returns:
    The PNG's path.
  """
  maps, probabilities = [], []
  for index in (model.slot for model in models):
    activations = class_activation_maps(run.module_of(index), run.model_variables(index), run.model_input(index, inputs))
    probabilities.append(activations.probabilities[0])
    maps.append(activations.maps[0])
  mean_probabilities = np.mean(probabilities, axis=0)
  predicted = int(np.argmax(mean_probabilities))
  # Each model's map is min-max normalised first: models differ in scale, not in what they show.
  cam = np.mean([heat_map(m[..., predicted], (run.resolution, run.resolution)) for m in maps], axis=0)
  title = sample_title(pair.apex_name, None, run.class_names[predicted], float(mean_probabilities[predicted]))
  rows = [sample_panels(inputs[0], cam, title, pair.apex)]
  suptitle = f"class activation map of the predicted class, mean over {len(models)} model(s)"
  return plots.image_grid(path, rows, column_titles=COLUMNS, suptitle=suptitle)


def comparison_grid(path: str, cells: Sequence[Sequence[tuple[TrainedRun, Composite, int] | None]], *,
                    row_titles: Sequence[str], column_titles: Sequence[str], suptitle: str,
                    apex_frame: np.ndarray | None = None) -> str:
  """One sample's CAMs under several runs (paper Fig. 2: models x resolutions).

  Args:
    path: the PNG.
    cells: `[rows][cols]` of (run, its composite, the sample's index in it), or None.
    row_titles: one per row (e.g. the models).
    column_titles: one per column (e.g. the resolutions).
    suptitle: the figure title (name the sample and its true class).
    apex_frame: drawn under the maps when given, else each run's flow map is.

  Returns:
    The PNG's path.
  """
  rows = []
  for cell_row in cells:
    panels = []
    for cell in cell_row:
      if cell is None:
        panels.append(None)
        continue
      run, composite, index = cell
      held_out = f"{composite.datasets[index]}/{composite.subjects[index]}"
      model = run.select(held_out, [run.models[0].seed])[0]
      activations = class_activation_maps(run.module_of(model), run.model_variables(model),
                                          run.model_input(model, composite.flows[index:index + 1]))
      predicted = int(np.argmax(activations.logits[0]))
      background = apex_frame if apex_frame is not None else flow_image(composite.flows[index])
      panels.append(plots.ImagePanel(background, f"predicted {run.class_names[predicted]}",
                                     heat_map(activations.maps[0, ..., predicted], background.shape[:2])))
    rows.append(panels)
  return plots.image_grid(path, rows, column_titles=column_titles, row_titles=row_titles, suptitle=suptitle)


def read_apex_dir(directory: str, composite: Composite) -> list[np.ndarray | None]:
  """Apex frames from `<dir>/<dataset>/<subject>/<sample>.<png|jpg|bmp>` (grey), None if absent."""
  import cv2  # pylint: disable=g-import-not-at-top

  frames = []
  for dataset, subject, sample in zip(composite.datasets, composite.subjects, composite.samples):
    found = None
    for suffix in (".png", ".jpg", ".bmp"):
      candidate = Path(directory, dataset, subject, f"{sample}{suffix}")
      if candidate.is_file():
        found = cv2.imread(str(candidate), cv2.IMREAD_GRAYSCALE)
        if found is None:
          raise errors.UserError(f"{candidate}: cannot read the image")
        break
    frames.append(found)
  return frames


def main(argv: Sequence[str] | None = None) -> int:
  """Runs the command line; returns the exit status."""
  parser = argparse.ArgumentParser(prog="python -m rcn_jax.analysis.cam", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--workdir", required=True, help="a finished run folder")
  parser.add_argument("--out", help=f"the PNG (default WORKDIR/{run_folder.CAMS})")
  parser.add_argument("--per_class", type=int, default=1, help="correct and failed samples per class")
  parser.add_argument("--apex_dir", help="apex frames as DIR/<dataset>/<subject>/<sample>.png")
  errors.add_verbosity_argument(parser)
  args = parser.parse_args(argv)

  def run_command() -> None:
    run = load_run(args.workdir)
    composite, frames = run_folder.load_run_composite(run.workdir, run.config)
    if args.apex_dir:
      frames = read_apex_dir(args.apex_dir, composite)
    print(write_run_cams(run, args.out, composite=composite, apex_frames=frames, per_class=args.per_class))

  return errors.run_main(run_command, verbose=args.verbosity > 0)


if __name__ == "__main__":
  sys.exit(main())

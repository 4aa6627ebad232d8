"""Class probabilities of new clips from a finished run's fold models.

  python -m rcn_jax.analysis.predict --workdir=RUN --onset=ONSET.png --apex=APEX.png
  python -m rcn_jax.analysis.predict --workdir=RUN --clip=CLIP_DIR [--apex_method=xia_std]

Faces must already be cropped. The frames go through the run's own input pipeline: grey
conversion, the frame size the dataset was built at, motion magnification if the run used it,
the run's optical-flow backend, the float16 precision the datasets store flow maps in, the area
resize to the run's resolution and the per-channel min-max. Every fold model of the run (each
fold x seed) scores the pair; the printed probabilities are their mean. `--held_out=DATASET/SUBJECT`
keeps only the models that never saw that subject, which reproduces the run's own LOSO
evaluation of that subject's samples.

The library side (`load_run`, `TrainedRun`, `network_input`) serves `rcn_jax.analysis.cam` and
`rcn_jax.analysis.report` too.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rcn_jax import errors
from rcn_jax import scoring

CONFIG = "config.json"
RESULTS = "results.json"
CHECKPOINTS = "checkpoints"
SIZE_CHOICES = "auto, none or ROWSxCOLS"


@dataclasses.dataclass(frozen=True)
class FoldModel:
  """One trained model of a run.

  Attributes:
    slot: its index on the run's stacked model axis.
    fold: the fold name, `dataset/subject` (LOSO) or `dataset` (leave-one-dataset-out).
    seed: the run seed it was trained with.
  """
  slot: int
  fold: str
  seed: int


@dataclasses.dataclass(frozen=True)
class TrainedRun:
  """A finished run's fold models, restored from its last checkpoint.

  Attributes:
    workdir: the run folder.
    config: the run's `config.json`.
    results: the run's `results.json`.
    module: the flax module every fold model shares.
    variables: `{params, batch_stats}` with a leading `[models]` axis, in `models` order.
    models: the fold models.
    epoch: the checkpoint's epoch count.
  """
  workdir: str
  config: Mapping[str, Any]
  results: Mapping[str, Any]
  module: Any
  variables: Mapping[str, Any]
  models: tuple[FoldModel, ...]
  epoch: int

  @property
  def resolution(self) -> int:
    return int(self.config["data"]["resolution"])

  @property
  def class_names(self) -> tuple[str, ...]:
    from rcn_jax import sample_list  # pylint: disable=g-import-not-at-top
    return tuple(self.results.get("class_names", sample_list.CLASS_NAMES))

  @property
  def flow_backend(self) -> str:
    return str(self.config["data"]["flow_backend"])

  @property
  def magnification(self) -> Mapping[str, Any] | None:
    """The magnification the run's data was made with (recorded by `rcn_jax.studies`), or None."""
    return self.config["data"].get("magnification")

  def model_variables(self, index: int) -> dict[str, Any]:
    """The variables of model `index` (no leading axis)."""
    import jax  # pylint: disable=g-import-not-at-top
    return jax.tree.map(lambda leaf: leaf[index], dict(self.variables))

  def select(self, held_out: str | None = None, seeds: Sequence[int] | None = None) -> list[int]:
    """Indices of the models whose fold tested `held_out` (all folds when None), of `seeds`."""
    chosen = [i for i, m in enumerate(self.models)
              if (held_out is None or m.fold == held_out) and (seeds is None or m.seed in seeds)]
    if not chosen:
      folds = sorted({m.fold for m in self.models})
      raise errors.UserError(f"{self.workdir}: no fold model held out {held_out!r} (seeds {seeds}); "
                             f"the run's folds are {folds[:8]}{' ...' if len(folds) > 8 else ''}")
    return chosen

  def probabilities(self, inputs: np.ndarray, indices: Sequence[int] | None = None) -> np.ndarray:
    """Softmax outputs `[M, N, C]` of models `indices` (all when None) on inputs `[N, r, r, 3]`."""
    inputs = np.asarray(inputs, np.float32)
    expected = (self.resolution, self.resolution, 3)
    if inputs.ndim != 4 or inputs.shape[1:] != expected:
      raise errors.UserError(f"inputs have shape {inputs.shape}; the run's models take [N, {expected[0]}, "
                             f"{expected[1]}, 3]")
    apply = _eval_program(self.module)
    indices = range(len(self.models)) if indices is None else indices
    return np.stack([np.asarray(apply(self.model_variables(i), inputs)) for i in indices])


@functools.lru_cache(maxsize=None)
def _eval_program(module):
  import jax  # pylint: disable=g-import-not-at-top

  def apply(variables, inputs):
    logits = module.apply(variables, inputs, train=False)
    return jax.nn.softmax(logits.astype("float32"), axis=-1)

  return jax.jit(apply)


def read_run_json(path: Path) -> dict[str, Any]:
  """A JSON file of a run folder; a missing one is an error naming it."""
  if not path.is_file():
    raise errors.MissingInput(f"{path}: missing; is {path.parent} a finished run folder?")
  with open(path) as stream:
    return json.load(stream)


def read_model_names(workdir: str | os.PathLike) -> list[tuple[str, int]]:
  """(fold, seed) of each model slot, from the header of the run's `train_loss.csv`."""
  names = []
  for column in scoring.read_train_losses(workdir)[0]:
    fold, separator, seed = column.rpartition("@")
    if not separator or not seed.lstrip("-").isdigit():
      raise errors.UserError(f"{Path(workdir) / scoring.TRAIN_LOSS}: column {column!r} is not FOLD@SEED")
    names.append((fold, int(seed)))
  return names


def load_run(workdir: str | os.PathLike) -> TrainedRun:
  """Restores every fold model of a finished run from its newest checkpoint.

  Args:
    workdir: a run folder written by `rcn_jax.train.train_and_evaluate` (`launch.py`).

  Returns:
    The run; missing files or a checkpoint that does not fit the config raise naming the file.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import ml_collections  # pylint: disable=g-import-not-at-top

  from rcn_jax.engine import checkpoint, plan  # pylint: disable=g-import-not-at-top

  workdir = Path(workdir)
  config_dict = read_run_json(workdir / CONFIG)
  results = read_run_json(workdir / RESULTS)
  names = read_model_names(workdir)
  slots = int(results.get("execution", {}).get("slots", len(names)))
  if slots < len(names):
    raise errors.UserError(f"{workdir / RESULTS}: {slots} slots for {len(names)} models")
  program = plan.create_program(ml_collections.ConfigDict(config_dict), 1)
  resolution = int(config_dict["data"]["resolution"])
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  shapes = jax.eval_shape(jax.vmap(program.init, in_axes=(0, None)),
                          jax.ShapeDtypeStruct((slots, 2), np.uint32),
                          jax.ShapeDtypeStruct((1, resolution, resolution, 3), np.float32))
  abstract = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=device), shapes)
  store = checkpoint.Checkpoints(str(workdir / CHECKPOINTS))
  try:
    if store.latest_epoch() is None:
      raise errors.MissingInput(f"{workdir / CHECKPOINTS}: no checkpoint")
    epoch, state = store.restore(abstract)
  finally:
    store.close()
  count = len(names)
  variables = {"params": jax.tree.map(lambda leaf: leaf[:count], state["params"]),
               "batch_stats": jax.tree.map(lambda leaf: leaf[:count], state["batch_stats"])}
  models = tuple(FoldModel(slot, fold, seed) for slot, (fold, seed) in enumerate(names))
  return TrainedRun(str(workdir), config_dict, results, program.module, variables, models, int(epoch))


def parse_size(text: str, data_name: str) -> tuple[int, int] | None:
  """The frame size (rows, cols) before flow: `auto` is the build's default for MEGC2019 runs
  (data_prep resizes every cropped face to it) and the frames' own size otherwise."""
  if text == "auto":
    if data_name == "megc2019":
      from data_prep import face  # pylint: disable=g-import-not-at-top
      return tuple(face.DEFAULT_SIZE)
    return None
  from data_prep.build import parse_size as parse_frame_size  # pylint: disable=g-import-not-at-top
  return parse_frame_size(text)


def read_frame(path: str | os.PathLike, *, data_name: str = "synthetic",
               size: tuple[int, int] | None = None) -> np.ndarray:
  """One frame as uint8 grey `[H, W]`, read as the run's data was.

  MEGC2019 builds read frames with OpenCV's grey decoder; the synthetic composite converts its
  colour frames with `cvtColor` (which also keeps grey images exactly).
  """
  import cv2  # pylint: disable=g-import-not-at-top

  from data_prep import face  # pylint: disable=g-import-not-at-top
  from data_prep.flowmap import to_grey  # pylint: disable=g-import-not-at-top

  path = Path(path)
  if not path.is_file():
    raise errors.MissingInput(f"{path}: frame image not found")
  if data_name == "megc2019":
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
  else:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
  if image is None:
    raise errors.UserError(f"{path}: cannot read the image")
  grey = to_grey(image, str(path))
  return face.resize(grey, size)


def network_input(onset: np.ndarray, apex: np.ndarray, *, backend: str, resolution: int,
                  magnification: Mapping[str, Any] | None = None) -> np.ndarray:
  """The network input of one onset/apex pair, as the flow-map datasets and the loader make it.

  Args:
    onset: uint8 grey `[H, W]` (or BGR `[H, W, 3]`).
    apex: the same size.
    backend: the optical-flow backend (`data_prep.flow.BACKENDS`).
    resolution: the network's input side.
    magnification: `data_prep.magnify.MagnificationConfig` fields, or None for none.

  Returns:
    `[resolution, resolution, 3]` float32 in [0, 1].
  """
  from data_prep.flowmap import compute_flow_map  # pylint: disable=g-import-not-at-top
  from rcn_jax import transform  # pylint: disable=g-import-not-at-top

  onset, apex = np.asarray(onset), np.asarray(apex)
  if magnification:
    from data_prep import magnify  # pylint: disable=g-import-not-at-top
    config = magnify.MagnificationConfig(**magnification)
    apex = magnify.magnify_pairs(onset[None], apex[None], config)[0]
  flow_map = compute_flow_map(onset, apex, backend=backend)
  # The datasets store flow maps in float16 (data_prep.flow_dataset); the run saw those values.
  stored = flow_map.astype(np.float16).astype(np.float32)
  return transform.to_network_input(stored, resolution)


@dataclasses.dataclass(frozen=True)
class FramePair:
  """The onset and apex frames of a clip and where they came from."""
  onset: np.ndarray
  apex: np.ndarray
  onset_name: str
  apex_name: str
  apex_method: str


def clip_pair(directory: str | os.PathLike, *, apex_method: str = "xia_std", data_name: str = "synthetic",
              size: tuple[int, int] | None = None, backend: str = "tvl1") -> FramePair:
  """The first frame of a clip folder as onset and its detected apex.

  Args:
    directory: a folder of frame images (numbered, e.g. `img1.jpg ... img40.jpg`), onset first.
    apex_method: a detector of `data_prep.apex.METHODS` other than `annotated`.
    data_name: the run's data (how frames are read).
    size: frame size before the flow.
    backend: flow backend for the `max_flow` detector.

  Returns:
    The pair.
  """
  from data_prep import apex as apex_lib  # pylint: disable=g-import-not-at-top
  from data_prep.flowmap import compute_flow_map  # pylint: disable=g-import-not-at-top
  from data_prep.frames import list_frames  # pylint: disable=g-import-not-at-top

  if apex_method not in apex_lib.METHODS or apex_method == "annotated":
    raise errors.UserError(f"--apex_method={apex_method!r}: expected one of {list(apex_lib.METHODS[1:])}")
  frames = list_frames(directory)
  if len(frames.paths) < 2:
    raise errors.UserError(f"{directory}: a clip needs at least 2 frames, found {len(frames.paths)}")
  images = np.stack([read_frame(p, data_name=data_name, size=size) for p in frames.paths])
  position = apex_lib.detect_apex(apex_method, images,
                                  flow_fn=functools.partial(compute_flow_map, backend=backend))
  if position == 0:
    raise errors.UserError(f"{directory}: the {apex_method} apex is the onset frame: no motion")
  return FramePair(images[0], images[position], frames.paths[0].name, frames.paths[position].name,
                   apex_method)


@dataclasses.dataclass(frozen=True)
class Prediction:
  """Probabilities of one pair.

  Attributes:
    probabilities: `[M, C]` per model.
    models: the models that scored it.
    class_names: `[C]`.
    inputs: `[1, r, r, 3]`, the network input the models scored (for CAMs of the same pair).
  """
  probabilities: np.ndarray
  models: tuple[FoldModel, ...]
  class_names: tuple[str, ...]
  inputs: np.ndarray

  @property
  def mean(self) -> np.ndarray:
    return self.probabilities.mean(axis=0)

  @property
  def std(self) -> np.ndarray:
    return self.probabilities.std(axis=0)

  @property
  def predicted_class(self) -> str:
    return self.class_names[int(np.argmax(self.mean))]

  def to_json(self) -> dict[str, Any]:
    return {"class_names": list(self.class_names),
            "probabilities": dict(zip(self.class_names, self.mean.tolist())),
            "std_over_models": dict(zip(self.class_names, self.std.tolist())),
            "predicted_class": self.predicted_class,
            "models": [{"fold": m.fold, "seed": m.seed,
                        "probabilities": dict(zip(self.class_names, p.tolist()))}
                       for m, p in zip(self.models, self.probabilities)]}


def predict_pair(run: TrainedRun, onset: np.ndarray, apex: np.ndarray, *, held_out: str | None = None,
                 seeds: Sequence[int] | None = None) -> Prediction:
  """Scores one onset/apex pair with the run's fold models.

  Args:
    run: the loaded run.
    onset: uint8 grey `[H, W]`, face cropped.
    apex: the same size.
    held_out: keep only the models that held out this fold (`dataset/subject`).
    seeds: keep only these seeds.

  Returns:
    The prediction.
  """
  inputs = network_input(onset, apex, backend=run.flow_backend, resolution=run.resolution,
                         magnification=run.magnification)[None]
  indices = run.select(held_out, seeds)
  probabilities = run.probabilities(inputs, indices)[:, 0]
  return Prediction(probabilities, tuple(run.models[i] for i in indices), run.class_names, inputs)


def format_prediction(run: TrainedRun, pair: FramePair, prediction: Prediction, *,
                      per_model: bool = False) -> str:
  """The printed report: the run, the frames, the mean probabilities, optionally every model."""
  model = run.config["model"]
  seeds = sorted({m.seed for m in prediction.models})
  folds = len({m.fold for m in prediction.models})
  lines = [f"run {run.workdir}: {model['preset']} (fm {model['features']}, pool {model['pool_size']}), "
           f"input {run.resolution}x{run.resolution}, flow {run.flow_backend}"
           + (", motion magnified" if run.magnification else ""),
           f"frames: onset {pair.onset_name}, apex {pair.apex_name} ({pair.apex_method})",
           f"models: {len(prediction.models)} ({folds} fold(s) x {len(seeds)} seed(s)); "
           "probabilities are their mean",
           f"{'class':<10} {'probability':>11} {'std over models':>16}"]
  for name, mean, std in zip(prediction.class_names, prediction.mean, prediction.std):
    lines.append(f"{name:<10} {mean:>11.6f} {std:>16.6f}")
  lines.append(f"predicted class: {prediction.predicted_class}")
  if per_model:
    lines.append(f"{'fold':<16} {'seed':>4} " + " ".join(f"{n:>10}" for n in prediction.class_names))
    for fold_model, probabilities in zip(prediction.models, prediction.probabilities):
      lines.append(f"{fold_model.fold:<16} {fold_model.seed:>4} "
                   + " ".join(f"{p:>10.6f}" for p in probabilities))
  return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog="python -m rcn_jax.analysis.predict", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--workdir", required=True, help="a finished run folder (launch.py --workdir)")
  parser.add_argument("--onset", help="onset frame image (face cropped)")
  parser.add_argument("--apex", help="apex frame image (same size)")
  parser.add_argument("--clip", help="a clip folder of numbered frames, onset first; the apex is detected")
  parser.add_argument("--apex_method", default="xia_std", help="apex detector for --clip (default xia_std)")
  parser.add_argument("--size", default="auto", help=f"frame size before the flow: {SIZE_CHOICES} "
                      "(auto: 220x200 for MEGC2019 runs, as data_prep builds them; the frames' size otherwise)")
  parser.add_argument("--held_out", help="only the models that held out DATASET/SUBJECT (the run's LOSO "
                      "prediction for a sample of that subject)")
  parser.add_argument("--seeds", help="only these run seeds, comma-separated")
  parser.add_argument("--per_model", action="store_true", help="also print every model's probabilities")
  parser.add_argument("--json", action="store_true", help="print JSON instead of text")
  parser.add_argument("--cam", help="also write the class activation maps of the pair to this PNG")
  errors.add_verbosity_argument(parser)
  args = parser.parse_args(argv)
  if bool(args.clip) == bool(args.onset or args.apex):
    parser.error("give either --onset and --apex, or --clip")
  if args.onset and not args.apex or args.apex and not args.onset:
    parser.error("--onset and --apex go together")
  return args


def main(argv: Sequence[str] | None = None) -> int:
  """Runs the command line; returns the exit status."""
  args = parse_args(argv)
  return errors.run_main(lambda: _predict_command(args), verbose=args.verbosity > 0)


def _predict_command(args: argparse.Namespace) -> None:
  run = load_run(args.workdir)
  data_name = run.config["data"]["name"]
  size = parse_size(args.size, data_name)
  if args.clip:
    pair = clip_pair(args.clip, apex_method=args.apex_method, data_name=data_name, size=size,
                     backend=run.flow_backend)
  else:
    onset = read_frame(args.onset, data_name=data_name, size=size)
    apex = read_frame(args.apex, data_name=data_name, size=size)
    if onset.shape != apex.shape:
      raise errors.UserError(f"onset {args.onset} {onset.shape} and apex {args.apex} {apex.shape} differ in size")
    pair = FramePair(onset, apex, Path(args.onset).name, Path(args.apex).name, "given")
  seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
  prediction = predict_pair(run, pair.onset, pair.apex, held_out=args.held_out, seeds=seeds)
  if args.cam:
    from rcn_jax.analysis import cam  # pylint: disable=g-import-not-at-top
    cam.write_pair_cams(args.cam, run, pair, prediction)
  if args.json:
    print(json.dumps({"frames": {"onset": pair.onset_name, "apex": pair.apex_name,
                                 "apex_method": pair.apex_method}, **prediction.to_json()}, indent=1))
  else:
    print(format_prediction(run, pair, prediction, per_model=args.per_model))


if __name__ == "__main__":
  sys.exit(main())

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

The run comes from `rcn_jax.run_folder.load_run`; the frames go through `data_prep.inference`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from data_prep import inference
from data_prep.inference import FramePair
from rcn_jax import errors
from rcn_jax.analysis import cam
from rcn_jax.analysis.trained_run import FoldModel, TrainedRun, load_run


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
                 seeds: Sequence[int] | None = None, backend: str | None = None) -> Prediction:
  """Scores one onset/apex pair with the run's fold models.

  Args:
    run: the loaded run.
    onset: uint8 grey `[H, W]`, face cropped.
    apex: the same size.
    held_out: keep only the models that held out this fold (`dataset/subject`).
    seeds: keep only these seeds.
    backend: the optical-flow backend (default: the run's `data.flow_backend`).

  Returns:
    The prediction.
  """
  inputs = inference.network_input(onset, apex, backend=backend or run.flow_backend, resolution=run.resolution,
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
  parser.add_argument("--size", default="auto", help=f"frame size before the flow: {inference.SIZE_CHOICES} "
                      "(auto: 220x200 for MEGC2019 runs, as data_prep builds them; the frames' size otherwise)")
  parser.add_argument("--flow_backend", help="optical-flow backend for the frames (default: the run's; a run "
                      "trained on imported flow maps needs one named: the import does not say how its maps were made)")
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
  backend = args.flow_backend or run.flow_backend
  if backend not in inference.BACKENDS:
    raise errors.UserError(f"{args.workdir} trained on imported flow maps {run.flow_backend!r} (data.flow_backend), "
                           f"which name no optical-flow backend: pass --flow_backend=one of {sorted(inference.BACKENDS)} "
                           "for the frames (the one that made the imported maps, if known)")
  data_name = run.config["data"]["name"]
  size = inference.frame_size(args.size, data_name)
  if args.clip:
    pair = inference.clip_pair(args.clip, apex_method=args.apex_method, data_name=data_name, size=size,
                               backend=backend)
  else:
    onset = inference.read_frame(args.onset, data_name=data_name, size=size)
    apex = inference.read_frame(args.apex, data_name=data_name, size=size)
    if onset.shape != apex.shape:
      raise errors.UserError(f"onset {args.onset} {onset.shape} and apex {args.apex} {apex.shape} differ in size")
    pair = FramePair(onset, apex, Path(args.onset).name, Path(args.apex).name, "given")
  seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
  prediction = predict_pair(run, pair.onset, pair.apex, held_out=args.held_out, seeds=seeds, backend=backend)
  if args.cam:
    cam.write_pair_cams(args.cam, run, pair, prediction.inputs, prediction.models)
  if args.json:
    print(json.dumps({"frames": {"onset": pair.onset_name, "apex": pair.apex_name,
                                 "apex_method": pair.apex_method}, **prediction.to_json()}, indent=1))
  else:
    print(format_prediction(run, pair, prediction, per_model=args.per_model))


if __name__ == "__main__":
  sys.exit(main())

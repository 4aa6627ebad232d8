"""Builds the MEGC2019 flow-map dataset from the licensed CASME II, SAMM and SMIC folders.

  python -m data_prep.build --casme2=DIR --samm=DIR --smic=DIR --out=DIR
  python -m data_prep.build --casme2=DIR --samm=DIR --smic=DIR --dry-run

Reads the annotation sheets (found in the dataset folders, or named with --casme2-sheet etc.),
joins them with the organisers' 442-row list, locates onset and apex frames, crops faces where the
frames are not already cropped, computes [u, v, strain] maps in parallel worker processes (each
finished sample cached, so an interrupted build resumes) and writes the `megc2019` TFDS dataset to
`<out>/megc2019/<backend>/<version>/`. `--dry-run` reads only sheets and folder listings and prints
the match report as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from rcn_jax import errors
from rcn_jax.sample_list import DATASETS, ListedSample, read_official_list

from data_prep import InputError, face
from data_prep import apex as apex_lib
from data_prep.annotations import shipped_smic_table
from data_prep.build_summary import build_summary, format_summary
from data_prep.composite import CompositeSample, MatchReport, join_composite, read_dataset_inputs
from data_prep.frames import list_frames
from data_prep.pipeline import DEFAULT_BATCH_SIZE, BuildFailed, build_dataset, make_flow_fns
from data_prep.samples import CROP_MODES, SampleOutcome, SampleSettings, plan_apex

DEFAULT_BACKEND = "tvl1"
SHEET_PATTERNS = {  # file-name globs of each release's sheet, searched in the dataset folder
    "casme2": ("*CASME2*coding*.xlsx", "*casme2*coding*.xlsx"),
    "samm": ("*SAMM*FACS*.xlsx", "*samm*facs*.xlsx"),
    "smic": ("*SMIC*HS*E*annotation*.xlsx", "*smic*hs*e*annotation*.xlsx"),
}
SHEET_SEARCH_DEPTH = 2


def default_data_dir() -> str:
  return os.environ.get("RCN_JAX_DATA_DIR", str(Path.home() / ".cache" / "rcn_jax"))


def per_dataset(value: str, choices: Sequence[str], option: str) -> dict[str, str]:
  """Parses `X` (every dataset) or `casme2=X,smic=Y` (others keep the default, under key '*')."""
  parsed = {}
  for part in value.split(","):
    dataset, _, choice = part.rpartition("=")
    dataset = dataset.strip() or "*"
    if dataset != "*" and dataset not in DATASETS:
      raise InputError(f"{option}: unknown dataset {dataset!r} in {value!r}")
    if choice.strip() not in choices:
      raise InputError(f"{option}: unknown choice {choice!r}; expected one of {list(choices)}")
    parsed[dataset] = choice.strip()
  return parsed


def find_sheet(dataset: str, root: Path) -> Path | None:
  """The dataset's annotation sheet inside its folder, if exactly one is found there."""
  found = set()
  for depth in range(SHEET_SEARCH_DEPTH + 1):
    for pattern in SHEET_PATTERNS[dataset]:
      found.update(root.glob("/".join(["*"] * depth + [pattern])))
  if len(found) > 1:
    raise InputError(f"{root}: several {dataset} sheets found ({sorted(map(str, found))}); name "
                     f"one with --{dataset}-sheet (for CASME II prefer the 2014-05-08 release)")
  return found.pop() if found else None


def read_inputs(args: argparse.Namespace, datasets: Sequence[str]) -> dict:
  """Reads every chosen dataset's sheet, table and folder listing."""
  tables = {"smic": str(shipped_smic_table())}
  for item in args.frame_table:
    dataset, _, path = item.partition("=")
    if dataset not in DATASETS or not path:
      raise InputError(f"--frame-table: expected DATASET=CSV or DATASET=none, got {item!r}")
    tables[dataset] = path
  inputs = {}
  for dataset in datasets:
    root = getattr(args, dataset)
    if root is None:
      raise InputError(f"--{dataset}: the {dataset} folder is required (or leave {dataset} out "
                       "of --datasets)")
    root = Path(root)
    sheet = getattr(args, f"{dataset}_sheet")
    if sheet is None and root.is_dir():
      sheet = find_sheet(dataset, root)
    table = tables.get(dataset)
    inputs[dataset] = read_dataset_inputs(dataset, root, sheet=sheet,
                                          frame_table=None if table in (None, "none") else table)
  return inputs


def settings_by_dataset(args: argparse.Namespace, datasets: Sequence[str],
                        flow_variant: str = "") -> dict[str, SampleSettings]:
  apex = per_dataset(args.apex, apex_lib.METHODS, "--apex")
  crop = per_dataset(args.crop, ("auto",) + CROP_MODES, "--crop")
  fallback = None if args.apex_fallback == "none" else args.apex_fallback
  return {dataset: SampleSettings(
      backend=args.backend, apex=apex.get(dataset, apex.get("*", "annotated")),
      apex_fallback=fallback, crop=crop.get(dataset, crop.get("*", "auto")),
      margin=args.crop_margin, size=face.parse_size(args.size), index_quirk=args.strcn_index_quirk,
      flow_variant=flow_variant)
      for dataset in datasets}


def frame_problems(composite: Sequence[CompositeSample],
                   settings: Mapping[str, SampleSettings]) -> list[dict]:
  """Annotations that do not fit the frames on disk, found from folder listings alone.

  Each entry has `fallback`: the detector that will run instead, or None when the sample will fail.
  """
  problems = []
  for sample in composite:
    entry = {"dataset": sample.dataset, "subject": sample.subject, "sample": sample.sample}
    try:
      plan = plan_apex(list_frames(sample.clip_dir), sample, settings[sample.dataset])
    except InputError as error:
      problems.append({**entry, "error": str(error), "fallback": None})
      continue
    if plan.problem is not None:
      problems.append({**entry, "error": plan.problem, "fallback": plan.method})
  return problems


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      prog="python -m data_prep.build", description=__doc__,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  for dataset, what in (("casme2", "CASME II (Cropped or CASME2_RAW_selected)"),
                        ("samm", "SAMM"), ("smic", "SMIC (SMIC_all_cropped, its HS, or SMIC-E)")):
    parser.add_argument(f"--{dataset}", metavar="DIR", help=f"{what} clip folders")
    parser.add_argument(f"--{dataset}-sheet", metavar="XLSX",
                        help=f"{dataset} annotation sheet (default: found in --{dataset})"
                        + ("; optional SMIC-E sheet for onset/offset" if dataset == "smic" else ""))
  parser.add_argument("--frame-table", action="append", default=[], metavar="DATASET=CSV",
                      help="onset/apex/offset table (subject,sample,onset,apex,offset,label) "
                      "replacing the annotated frames of the clips it lists; smic defaults to the "
                      "shipped table of the first author, smic=none disables it")
  parser.add_argument("--datasets", default=",".join(DATASETS),
                      help="comma-separated databases, for a partial composite (default: all)")
  parser.add_argument("--out", default=default_data_dir(), metavar="DIR",
                      help="TFDS data dir ($RCN_JAX_DATA_DIR or ~/.cache/rcn_jax)")
  parser.add_argument("--cache-dir", metavar="DIR",
                      help="per-sample map cache (default OUT/megc2019_cache/BACKEND)")
  parser.add_argument("--backend", default=DEFAULT_BACKEND,
                      help=f"optical-flow backend, data_prep.flow.BACKENDS (default: "
                      f"{DEFAULT_BACKEND})")
  parser.add_argument("--apex", default="annotated", help=f"apex method {list(apex_lib.METHODS)}, "
                      "for all datasets or per dataset as smic=xia_std,casme2=annotated "
                      "(default: annotated; SMIC's comes from the shipped frame table)")
  parser.add_argument("--apex-fallback", default="none",
                      choices=("none",) + apex_lib.METHODS[1:],
                      help="detector for clips whose annotated apex is missing or outside the clip "
                      "(none: such clips fail)")
  parser.add_argument("--strcn-index-quirk", action="store_true",
                      help="xia_std_10x8_window: add the window-relative index to the onset, as "
                      "the released STRCN script does")
  parser.add_argument("--crop", default="auto",
                      help="face crop: haar, none (inputs already cropped) or auto (none for the "
                      "official cropped releases' reg_img*/reg_image* frames); per dataset as "
                      "samm=haar,casme2=none (default: auto)")
  parser.add_argument("--crop-margin", type=float, default=0.15,
                      help="crop margin, fraction of the detected face's size per side "
                      "(default: 0.15)")
  parser.add_argument("--size", default="220x200",
                      help="frame size ROWSxCOLS before flow, or none (default: 220x200, "
                      "as the authors)")
  parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                      help="worker processes for frames, crops and (OpenCV backends) flow; the "
                      "JAX backends solve the flow batched in the main process (default: one per "
                      "core)")
  parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                      help=f"pairs per batched flow call of the JAX backends (default: "
                      f"{DEFAULT_BATCH_SIZE})")
  parser.add_argument("--allow-missing", action="store_true",
                      help="proceed without samples that are unmatched, whose label disagrees, or "
                      "that fail (all listed in the report) instead of stopping")
  parser.add_argument("--dry-run", action="store_true",
                      help="read sheets and folder listings only; print the match report as JSON")
  parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
  parser.add_argument("--export", metavar="DIR",
                      help="also write the official release's layout there: one PNG per sample "
                      "and per-subject LOSO lists")
  parser.add_argument("--export-resolution", type=int, default=60,
                      help="side of the exported PNG maps (default: 60)")
  errors.add_verbosity_argument(parser)
  return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, flow_fn: Callable | None = None, flow_variant: str = "") -> int:
  """Runs the CLI; returns the exit status (0 success, 1 a dry run with problems, 2 bad input or
  failed samples: one line `error: ...` naming them).

  Args:
    argv: the arguments (default: sys.argv).
    flow_fn: a flow function instead of `--backend`'s (the backend name is still recorded).
    flow_variant: what `flow_fn` does besides the backend; part of every sample's cache key.
  """
  args = parse_args(argv)
  return errors.run_main(lambda: _build(args, flow_fn, flow_variant), verbose=args.verbosity > 0)


def _build(args: argparse.Namespace, flow_fn: Callable | None, flow_variant: str) -> int:
  started = time.perf_counter()
  datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
  unknown = sorted(set(datasets) - set(DATASETS))
  if unknown or not datasets:
    raise InputError(f"--datasets: unknown dataset(s) {unknown}; expected some of "
                     f"{list(DATASETS)}")
  listed = read_official_list(datasets)
  inputs = read_inputs(args, datasets)
  settings = settings_by_dataset(args, datasets, flow_variant)
  composite, match = join_composite(listed, inputs)
  if args.dry_run:
    return _dry_run(match, composite, settings, args.allow_missing)
  if not match.ok and not args.allow_missing:
    print(json.dumps(match.to_json(), indent=1), file=sys.stderr)
    raise InputError("some listed samples are unmatched or disagree in label (report above); "
                     "rerun with --allow-missing to build without them")
  batch_flow_fn = None
  if flow_fn is None:
    flow_fn, batch_flow_fn = make_flow_fns(args.backend)
  try:
    outcomes, dataset_dir = build_dataset(
        composite, settings, flow_fn, out_dir=args.out, cache_dir=args.cache_dir,
        workers=args.workers, allow_missing=args.allow_missing,
        progress=not args.no_progress, batch_flow_fn=batch_flow_fn, batch_size=args.batch_size)
  except BuildFailed as error:
    _write_summary(listed, error.outcomes, match, started, None, args)
    raise
  _write_summary(listed, outcomes, match, started, dataset_dir, args)
  if args.export and dataset_dir is not None:
    from data_prep.export import export_official_layout

    paths = export_official_layout(dataset_dir, args.export, resolution=args.export_resolution)
    print(f"exported {len(paths)} maps to {args.export}")
  return 0


def _dry_run(match: MatchReport, composite: Sequence[CompositeSample],
             settings: Mapping[str, SampleSettings], allow_missing: bool) -> int:
  report = match.to_json()
  problems = frame_problems(composite, settings)
  report["frame_problems"] = problems
  report["ok"] = report["ok"] and not any(p["fallback"] is None for p in problems)
  print(json.dumps(report, indent=1))
  return 0 if report["ok"] or allow_missing else 1


def _write_summary(listed: Sequence[ListedSample], outcomes: Sequence[SampleOutcome],
                   match: MatchReport, started: float, dataset_dir: Path | None,
                   args: argparse.Namespace) -> None:
  summary = build_summary(listed, outcomes, time.perf_counter() - started)
  summary["match"] = match.to_json()
  summary["dataset_dir"] = str(dataset_dir) if dataset_dir else None
  out = Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  path = out / f"megc2019_{args.backend}_build_report.json"
  path.write_text(json.dumps(summary, indent=1))
  print(format_summary(summary))
  print(f"report: {path}" + (f"\ndataset: {dataset_dir}" if dataset_dir else ""))


if __name__ == "__main__":
  sys.exit(main())

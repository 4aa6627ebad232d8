"""Imports a folder of shared flow images as a `megc2019` flow-map dataset that training reads.

  python -m data_prep.import_flowmaps --layout=ststnet --source=DIR --out=DATA_DIR --name=NAME
  python launch.py --config=configs/rcn_a.py --config.data.name=megc2019 --config.data.flow_backend=NAME

Layouts (`data_prep.flow_images`): `ststnet` (flat `<subject>_<sample> .png`, or its LOSO tree
`<root>/<subject>/u_train|u_test/<label>/<file>`), `rcn` (what `data_prep.export` writes) and
`manifest` (a CSV `path,dataset,subject,sample,label`). Files are joined by name with the
organisers' 442-sample list and their labels checked against it. The dataset lands in
`<out>/megc2019/<name>/<version>/` at the images' own size, holding what the files hold (8-bit
values, the files' channel order); its metadata records `channels` (`rgb`: the files' R, G, B are
u, v, strain, as in STSTNet's and the RCN release's images; `bgr`: strain, v, u) and `value_range`
(`LO,HI`: the values map linearly to the network's [0, 1]; `minmax`: per image and channel, as the
built datasets). `rcn_jax.data` turns them into the network's [0, 1] RGB input when it loads them;
a model that wants other input says so with `model.input_order` / `model.input_scale`.

The dataset is written in a temporary folder and renamed into place, so an error leaves nothing
half-written. Missing listed samples are an error listing them unless `--allow-missing` (a partial
composite). `--dry-run` checks everything and prints the match report as JSON without writing.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rcn_jax import errors
from rcn_jax.sample_list import read_official_list

from data_prep import InputError
from data_prep.build import default_data_dir
from data_prep.flow_images import LAYOUTS, FlowImage, counts, missing_samples, read_layout

BUILDER_NAME = "megc2019"
CHANNELS = ("rgb", "bgr")
_NAME = re.compile(r"[a-z0-9][a-z0-9_]*")


def parse_value_range(text: str) -> list[float] | str:
  """`LO,HI` (0 <= LO < HI <= 255) or `minmax`."""
  if text.strip() == "minmax":
    return "minmax"
  try:
    low, high = (float(part) for part in text.split(","))
  except ValueError:
    raise InputError(f"--value-range={text}: expected LO,HI (e.g. 0,255) or minmax") from None
  if not 0 <= low < high <= 255:
    raise InputError(f"--value-range={text}: expected 0 <= LO < HI <= 255 (8-bit images)")
  return [low, high]


def check_name(name: str) -> None:
  """The import's name is the TFDS config (`data.flow_backend`); it may not shadow a flow build."""
  from data_prep.flow import BACKENDS  # pylint: disable=g-import-not-at-top

  if not _NAME.fullmatch(name):
    raise InputError(f"--name={name}: use lower-case letters, digits and underscores")
  if name in BACKENDS:
    raise InputError(f"--name={name}: that is a flow backend's build name; choose another")


def match_report(images: Sequence[FlowImage], scan: Mapping[str, Any]) -> dict:
  """JSON-ready: per database listed/matched and the missing samples, as data_prep.build's report."""
  listed = read_official_list()
  missing = missing_samples(images, listed)
  per_dataset = counts(images, listed)
  for dataset, entry in per_dataset.items():
    entry["unmatched"] = [f"{s.subject}/{s.sample}" for s in missing if s.dataset == dataset]
  size = list(images[0].pixels.shape[:2]) if images else None
  return {"ok": not missing, "listed": len(listed), "matched": len(images), "image_size": size,
          "scan": dict(scan), "datasets": per_dataset}


def dataset_settings(args: argparse.Namespace, images: Sequence[FlowImage], report: Mapping) -> dict:
  """The dataset's metadata: how to read the stored values, where they came from, what is missing."""
  missing = [f"{d}/{name}" for d, entry in report["datasets"].items() for name in entry["unmatched"]]
  return {"imported": True, "layout": args.layout, "source": str(Path(args.source).resolve()),
          "channels": args.channels, "value_range": parse_value_range(args.value_range),
          "image_size": report["image_size"], "dtype": "uint8",
          "datasets": sorted({image.listed.dataset for image in images}), "missing": missing}


def write_dataset(images: Sequence[FlowImage], settings: Mapping[str, Any], out: Path, name: str) -> Path:
  """Writes `<out>/megc2019/<name>/<version>/` through a temporary folder and a rename.

  Returns:
    The dataset folder.
  """
  from data_prep.flow_dataset import DATASET_VERSION  # pylint: disable=g-import-not-at-top

  out.mkdir(parents=True, exist_ok=True)
  final = out / BUILDER_NAME / name / DATASET_VERSION
  staging = Path(tempfile.mkdtemp(dir=out, prefix=f".import-{name}-"))
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

    tfds.display_progress_bar(False)
    builder = _builder_class()(images=images, settings=settings, data_dir=str(staging), name=name)
    builder.download_and_prepare()
    written = Path(builder.data_dir)
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():  # a re-import replaces the old version in two renames
      final.rename(staging / "replaced")
    written.rename(final)
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  return final


def _builder_class():
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  from data_prep.flow_dataset import FlowMapBuilder, make_example  # pylint: disable=g-import-not-at-top

  class ImportedFlowMaps(FlowMapBuilder, skip_registration=True):
    """Imported flow images as `megc2019/<name>`: the stored values are the files' pixels."""

    name = BUILDER_NAME
    DESCRIPTION = ("Flow images of the MEGC2019 composite imported from a shared folder "
                   "(data_prep.import_flowmaps); the metadata says how to read them.")

    def __init__(self, *, images, settings, name, **kwargs):
      self._images, self._settings = images, settings
      super().__init__(config=tfds.core.BuilderConfig(name=name, description="imported flow images"),
                       file_format="array_record", **kwargs)

    def _split_generators(self, dl_manager):
      self.info.metadata.update(self._settings)
      return {"train": self._generate_examples()}

    def _generate_examples(self):
      for index, image in enumerate(self._images):
        listed = image.listed
        yield f"{index:05d}", make_example(
            image.pixels.astype(np.float16), label=listed.label, dataset=listed.dataset,
            subject=listed.subject, sample=listed.sample, onset_frame=-1, apex_frame=-1)

  return ImportedFlowMaps


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog="python -m data_prep.import_flowmaps", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--layout", required=True, choices=LAYOUTS, help="the folder's layout")
  parser.add_argument("--source", required=True, metavar="DIR",
                      help="the folder (ststnet, rcn) or the CSV file (manifest)")
  parser.add_argument("--out", default=default_data_dir(), metavar="DATA_DIR",
                      help="TFDS data dir ($RCN_JAX_DATA_DIR or ~/.cache/rcn_jax), as data.data_dir")
  parser.add_argument("--name", required=False, default=None,
                      help="the import's name: training reads it with --config.data.flow_backend=NAME")
  parser.add_argument("--channels", default="rgb", choices=CHANNELS,
                      help="what the files' R, G, B hold: rgb = u, v, strain (STSTNet, the RCN release; "
                      "default), bgr = strain, v, u")
  parser.add_argument("--value-range", default="0,255",
                      help="LO,HI: pixel values LO..HI map to the network's 0..1 (default 0,255); "
                      "minmax: per image and channel")
  parser.add_argument("--allow-missing", action="store_true",
                      help="import without the listed samples that are not there (a partial composite)")
  parser.add_argument("--dry-run", action="store_true", help="check and print the match report; write nothing")
  errors.add_verbosity_argument(parser)
  return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
  """Runs the CLI; returns 0, 1 (a dry run with missing samples) or 2 (bad input: one line naming it)."""
  args = parse_args(argv)
  return errors.run_main(lambda: _import(args), verbose=args.verbosity > 0)


def _import(args: argparse.Namespace) -> int:
  started = time.perf_counter()
  parse_value_range(args.value_range)
  if not args.dry_run:
    if args.name is None:
      raise InputError("--name: required (the name that --config.data.flow_backend reads)")
    check_name(args.name)
  images, scan = read_layout(args.layout, args.source)
  if not images:
    raise InputError(f"--source={args.source}: no flow images found")
  report = match_report(images, scan)
  if args.dry_run:
    print(json.dumps(report, indent=1))
    return 0 if report["ok"] or args.allow_missing else 1
  if not report["ok"] and not args.allow_missing:
    missing = [f"{d}/{n}" for d, entry in report["datasets"].items() for n in entry["unmatched"]]
    raise InputError(f"{len(missing)} listed sample(s) have no image in {args.source}: {', '.join(missing)} "
                     "(--allow-missing imports a partial composite)")
  settings = dataset_settings(args, images, report)
  folder = write_dataset(images, settings, Path(args.out), args.name)
  height, width = report["image_size"]
  print(f"imported {len(images)} of {report['listed']} listed samples ({height}x{width} px) in "
        f"{time.perf_counter() - started:.1f} s to {folder}\ntrain: python launch.py --config=configs/rcn_a.py "
        f"--config.data.name=megc2019 --config.data.flow_backend={args.name} --config.data.data_dir={args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())

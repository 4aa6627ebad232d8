"""The summary a build ends with (`megc2019_<backend>_build_report.json` and the printed tables):
counts per dataset and class against the official list, apex statistics, crops, failures and time,
as a JSON-ready dict and as text."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
from rcn_jax.sample_list import CLASS_NAMES, ListedSample

from data_prep.samples import SampleOutcome


def class_counts(listed: Sequence[ListedSample], outcomes: Sequence[SampleOutcome]) -> dict:
  """Built and official sample counts per dataset and class (official: the organisers' list)."""
  official = Counter((s.dataset, CLASS_NAMES[s.label]) for s in listed)
  built = Counter((o.dataset, CLASS_NAMES[o.label]) for o in outcomes if o.error is None)
  counts = {}
  for dataset in dict.fromkeys(s.dataset for s in listed):
    counts[dataset] = {name: {"built": built[dataset, name], "official": official[dataset, name]}
                       for name in CLASS_NAMES}
  counts["total"] = {name: {"built": sum(built[d, name] for d in counts),
                            "official": sum(official[d, name] for d in counts)}
                     for name in CLASS_NAMES}
  return counts


def apex_statistics(outcomes: Sequence[SampleOutcome]) -> dict:
  """Per dataset: methods used, where the apex falls in the clip, and distance to the annotation."""
  statistics = {}
  for dataset in dict.fromkeys(o.dataset for o in outcomes):
    infos = [o.info for o in outcomes if o.dataset == dataset and o.error is None]
    if not infos:
      continue
    relative = [(i["apex_frame"] - i["onset_frame"]) / max(i["offset_frame"] - i["onset_frame"], 1)
                for i in infos]
    distance = [i["apex_frame"] - i["onset_frame"] for i in infos]
    versus = [abs(i["apex_frame"] - i["annotated_apex"]) for i in infos
              if i["annotated_apex"] is not None]
    statistics[dataset] = {
        "methods": dict(Counter(i["apex_method"] for i in infos)),
        "relative_position": _summary(relative),
        "onset_to_apex_frames": _summary(distance),
        "abs_difference_to_annotated_apex": _summary(versus),
        "with_notes": sum(bool(i["notes"]) for i in infos),
        "crop": dict(Counter(i["crop"] for i in infos)),
    }
  return statistics


def _summary(values: Sequence[float]) -> dict | None:
  if not values:
    return None
  array = np.asarray(values, dtype=np.float64)
  return {"n": len(array), "mean": round(float(array.mean()), 4),
          "min": round(float(array.min()), 4), "max": round(float(array.max()), 4)}


def build_summary(listed: Sequence[ListedSample], outcomes: Sequence[SampleOutcome],
                 seconds: float) -> dict:
  """The summary of a build.

  Args:
    listed: the organisers' list for the chosen datasets.
    outcomes: one per matched sample, built or failed.
    seconds: wall time of the build.
  Returns:
    JSON-ready summary.
  """
  return {
      "counts": class_counts(listed, outcomes),
      "apex": apex_statistics(outcomes),
      "failures": [{"dataset": o.dataset, "subject": o.subject, "sample": o.sample,
                    "error": o.error} for o in outcomes if o.error is not None],
      "notes": [{"dataset": o.dataset, "subject": o.subject, "sample": o.sample,
                 "notes": o.info["notes"]}
                for o in outcomes if o.error is None and o.info["notes"]],
      "samples": {"built": sum(o.error is None for o in outcomes),
                  "from_cache": sum(o.cached for o in outcomes),
                  "failed": sum(o.error is not None for o in outcomes),
                  "listed": len(listed)},
      "seconds": round(seconds, 1),
  }


def format_summary(summary: dict) -> str:
  """The summary as a few plain-text tables."""
  lines = ["samples per class: built / official"]
  lines.append(f"  {'dataset':<8}" + "".join(f"{name:>14}" for name in CLASS_NAMES))
  for dataset, classes in summary["counts"].items():
    cells = "".join(f"{classes[n]['built']:>8} / {classes[n]['official']:<3}" for n in CLASS_NAMES)
    lines.append(f"  {dataset:<8}{cells}")
  lines.append("apex: relative position (apex-onset)/(offset-onset), onset->apex frames, "
               "|apex - annotated apex|")
  for dataset, stats in summary["apex"].items():
    relative, frames, versus = (stats[k] or {} for k in (
        "relative_position", "onset_to_apex_frames", "abs_difference_to_annotated_apex"))
    lines.append(
        f"  {dataset:<8} methods {stats['methods']}  rel.pos mean {relative.get('mean')} "
        f"[{relative.get('min')}, {relative.get('max')}]  frames mean {frames.get('mean')}  "
        f"|diff| mean {versus.get('mean')}  with notes {stats['with_notes']}  crop {stats['crop']}")
  for failure in summary["failures"]:
    lines.append(f"  FAILED {failure['dataset']} {failure['subject']}/{failure['sample']}: "
                 f"{failure['error']}")
  samples = summary["samples"]
  lines.append(f"{samples['built']} of {samples['listed']} listed samples built "
               f"({samples['from_cache']} from the cache), {samples['failed']} failed, "
               f"{summary['seconds']} s")
  return "\n".join(lines)

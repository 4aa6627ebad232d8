"""The search study: K search seeds against random search over the same space, all retrained under LOSO.

Each search seed runs the search config (`rcn_jax.config.make_search_config`, what `configs/search.py`
gives; mode `once`, the scale's `search_overrides`) in `<workdir>/runs/search_s<seed>/` and exports
its top-k. The random baseline draws as many
architectures as the searches export, uniformly over the valid members of the same space
(`random_architectures`): the same evaluation budget (one LOSO run per pick), no search compute.
Every pick is retrained with the scale's LOSO settings in `<workdir>/runs/arch_<digest>/` (a pick
drawn twice trains once). The table gives each pick's UAR and UF1 (mean ± std over the training
seeds), the groups' mean ± std over their picks, and each search's cost in device-seconds and in
XLA-counted FLOPs. Searched picks are `once (test subjects seen)` selections: the LOSO scores of
searched and random picks compare the selection rules, not an unbiased estimate of either.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections
import numpy as np

from rcn_jax import config as config_lib
from rcn_jax import plots, run_folder
from rcn_jax.models import search_space
from rcn_jax.studies.runner import Runner, set_dotted
from rcn_jax.studies.specs import RunSpec
from rcn_jax.studies.tables import Outputs, score

SEARCH_JSON = "search.json"


def random_architectures(space: search_space.SearchSpace, count: int, rng: np.random.Generator, *,
                         min_gates: int = 0, max_gates: int = -1) -> list[search_space.Architecture]:
  """`count` architectures drawn uniformly over the valid members of `space` (gate bounds included).

  Uniform over members: every decision uniformly, redrawn until the choice is a network within the
  bounds (rejection keeps the draw uniform over the valid choices).
  """
  decisions = space.decisions()
  drawn = []
  while len(drawn) < count:
    choice = {name: candidates[rng.integers(len(candidates))] for name, candidates in decisions.items()}
    gates = sum(name.startswith("gate_") and label != search_space.NO_GATE for name, label in choice.items())
    if search_space.choice_problem(choice, space.steps) or gates < min_gates or 0 <= max_gates < gates:
      continue
    drawn.append(search_space.Architecture.from_choices(space, choice))
  return drawn


def _search_config(runner: Runner, spec: RunSpec, seed: int) -> ml_collections.ConfigDict:
  config = config_lib.make_search_config(features=spec.features, pool_size=spec.pool_size, arg=None)
  overrides = {"data.resolution": spec.resolution, "data.datasets": tuple(spec.datasets),
               "search.mode": "once", "search.top_k": runner.scale.search_top_k}
  overrides.update(runner.data.config_overrides(spec))
  overrides.update(runner.scale.search_overrides)
  for dotted, value in overrides.items():
    set_dotted(config, dotted, value)
  config.seeds = (seed,)
  return config


def _run_search(runner: Runner, spec: RunSpec, seed: int) -> dict[str, Any] | None:
  """A search's `search.json`, searching first unless it is there."""
  workdir = os.path.join(runner.workdir, "runs", f"search_s{seed}")
  path = os.path.join(workdir, SEARCH_JSON)
  if runner.dry_run:
    print(f"search_s{seed}: {'finished' if os.path.exists(path) else 'to search'}")
    return None
  if not os.path.exists(path):
    from rcn_jax.search import loop as search  # pylint: disable=g-import-not-at-top
    search.run_search(_search_config(runner, spec, seed), workdir, composite=runner.data.composite(spec))
  with open(path) as stream:
    return json.load(stream)


def _retrain(runner: Runner, spec: RunSpec, architecture: str, selection: Mapping[str, Any] | None) -> dict | None:
  """The LOSO results of one pick (the retraining config of the scale, `model.preset` the pick)."""
  digest = hashlib.sha1(f"{architecture}|{json.dumps(selection, sort_keys=True)}".encode()).hexdigest()[:10]
  run_dir = os.path.join(runner.workdir, "runs", f"arch_{digest}")
  if runner.dry_run:
    finished = os.path.exists(os.path.join(run_dir, run_folder.RESULTS))
    print(f"arch_{digest} ({architecture}): {'finished' if finished else 'to train'}")
    return None
  from rcn_jax import train  # pylint: disable=g-import-not-at-top
  config = runner.config(spec, {"model.preset": architecture, "model.steps": None})
  if selection:
    config.selection = ml_collections.ConfigDict(dict(selection))
  return train.train_and_evaluate(config, run_dir, composite=runner.data.composite(spec))


def search_study(runner: Runner) -> Outputs:
  """K search seeds and random search, every pick retrained under LOSO: table, plot, costs."""
  from rcn_jax import selection  # pylint: disable=g-import-not-at-top
  from rcn_jax.search import loop as search

  scale = runner.scale
  fm, pool, resolution = scale.base
  spec = RunSpec("rcn", fm, pool, resolution, seeds=scale.search_train_seeds)
  summaries = {seed: _run_search(runner, spec, seed) for seed in scale.search_seeds}
  probe = _search_config(runner, spec, scale.search_seeds[0]).search
  space = search.make_space(probe)
  count = len(scale.search_seeds) * scale.search_top_k
  randoms = random_architectures(space, count, np.random.default_rng(scale.search_seeds[0]),
                                 min_gates=probe.min_gates, max_gates=probe.max_gates)
  picks = []  # (group, label, architecture, selection, cost)
  for seed, summary in summaries.items():
    if summary is None:
      continue
    cost = summary["cost"]
    workdir = os.path.join(runner.workdir, "runs", f"search_s{seed}")
    for entry in summary["ranked"]:
      picks.append(("searched", f"S{seed}#{entry['rank']}", entry["architecture"],
                    {"search": selection.ONCE, "search_workdir": workdir}, cost))
  picks += [("random", f"R{i + 1}", arch.encode(), None, None) for i, arch in enumerate(randoms)]
  results = [_retrain(runner, spec, arch, chosen) for _, _, arch, chosen, _ in picks]
  outputs = Outputs("search", "Architecture search against random search (paper Sec. III-C.4)")
  if not runner.writes:
    return outputs
  rows, numbers = [], []
  for (group, label, arch, _, cost), entry in zip(picks, results):
    uar, uf1 = score(entry, "uar"), score(entry, "uf1")
    rows.append([label, group, f"`{arch}`", plots.format_mean_std(*uar), plots.format_mean_std(*uf1),
                 f"{cost['device_seconds']:.0f}" if cost else "0", f"{cost['flops']:.3g}" if cost else "0"])
    numbers.append({"label": label, "group": group, "architecture": arch, "uar": list(uar), "uf1": list(uf1),
                    "search_device_seconds": cost["device_seconds"] if cost else 0.0,
                    "search_flops": cost["flops"] if cost else 0.0})
  groups = {"searched top-1": [n for n in numbers if n["group"] == "searched" and n["label"].endswith("#1")],
            f"searched top-{scale.search_top_k}": [n for n in numbers if n["group"] == "searched"],
            "random": [n for n in numbers if n["group"] == "random"]}
  group_rows, group_numbers = [], {}
  for name, members in groups.items():
    stats = {m: _mean_std([n[m][0] for n in members]) for m in ("uar", "uf1")}
    seconds = sum({n["label"].split("#")[0]: n["search_device_seconds"] for n in members}.values())
    flops = sum({n["label"].split("#")[0]: n["search_flops"] for n in members}.values())
    group_rows.append([name, len(members), plots.format_mean_std(*stats["uar"]), plots.format_mean_std(*stats["uf1"]),
                       f"{seconds:.0f}", f"{flops:.3g}"])
    group_numbers[name] = {"picks": len(members), "uar": list(stats["uar"]), "uf1": list(stats["uf1"]),
                           "search_device_seconds": seconds, "search_flops": flops}
  path = os.path.join(runner.workdir, "search.png")
  labels = [n["label"] for n in numbers]
  panels = [plots.Panel(title=f"{metric.upper()} of every pick", x_label="pick (S<seed>#<rank>: searched, R: random)",
                        y_label=f"{metric.upper()} (pooled LOSO)", x=labels,
                        series={group: [n[metric][0] if n["group"] == group else None for n in numbers]
                                for group in ("searched", "random")},
                        errors={group: [n[metric][1] if n["group"] == group else None for n in numbers]
                                for group in ("searched", "random")})
            for metric in ("uar", "uf1")]
  plots.bar_plot(path, panels, suptitle=f"{len(summaries)} search seed(s) x top-{scale.search_top_k} against "
                 f"{len(randoms)} random architectures")
  outputs.figures.append(path)
  seeds = ", ".join(map(str, scale.search_train_seeds))
  outputs.sections += [
      "## Groups: mean ± std over their picks of each pick's UAR/UF1; search cost summed over searches",
      plots.markdown_table(["group", "picks", "UAR", "UF1", "search device-s", "search FLOPs"], group_rows),
      f"## Every pick: UAR and UF1 mean ± std over training seeds {seeds}; its search's cost",
      plots.markdown_table(["pick", "group", "architecture", "UAR", "UF1", "search device-s", "search FLOPs"], rows),
      "Searched picks come from `mode=once` searches (`search: once (test subjects seen)` in their "
      "results): the search saw the LOSO test subjects. Random picks saw nothing (`search: none`). The random "
      "baseline has the searches' evaluation budget (one LOSO run per pick) and no search compute."]
  outputs.numbers = {"search_seeds": list(scale.search_seeds), "top_k": scale.search_top_k, "picks": numbers,
                     "groups": group_numbers}
  return outputs


def _mean_std(values: Sequence[float | None]) -> tuple[float | None, float | None]:
  present = [v for v in values if v is not None]
  if not present:
    return None, None
  return float(np.mean(present)), float(np.std(present))

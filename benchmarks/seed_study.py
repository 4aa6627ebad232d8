"""Seed study: rcn-jax's RCN-A against the same model trained the official way in PyTorch, many seeds each.

Both sides train RCN-A (fm 16, P 5) with the official release's recipe (SGD lr 5e-4, momentum
0.9, no weight decay, batch 64, dropout 0.5, a fixed number of epochs, the last epoch's model
tested) over every LOSO fold of the built-in synthetic composite, from the same arrays
(`rcn_jax.data.load_composite('synthetic', resolution=R)`). Per seed the pooled UAR and UF1 of
all folds are recorded; the two sides' seed distributions are compared with Welch's t test.
- rcn-jax: `rcn_jax.train.train_and_evaluate` with `configs/rcn_a.py:reference` at fm 16, P 5,
  all seeds in one program (`config.seeds`), `launch.py`'s XLA flags.
- official: `benchmarks/torch_rcn.py`'s `TorchRCN` (the official `RCN_A` layer for layer), the
  official script's loop: `torch.manual_seed(seed)` once per run, then per fold a fresh model and
  per epoch a fresh random order (the DataLoader's `shuffle=True`), partial last batch kept.

Swaps for bisecting a gap (one source of randomness at a time):
- `--save-init DIR` (official side) writes every fold's initial state dict, official keys, to
  `DIR/seed<S>/<subject>.npz`; `--jax-init DIR` (rcn-jax side) starts each seed's folds from them
  (`init.per_fold`, one program per seed);
- `--jax-order` (official side) takes each epoch's sample order from rcn-jax's program
  (`rcn_jax.engine.plan.model_keys` and `program.epoch_batches`) instead of `torch.randperm`.
With both swaps and `--dropout 0` nothing random differs: on a few folds (`--max-folds`, which
also keeps every test probability) `--compare` prints the largest probability difference between
the sides, which must be float32 rounding (7e-7 after 3 epochs on 4 folds x 2 seeds; 0.13 without
`--jax-order`):

  python benchmarks/seed_study.py --side=torch --max-folds=4 --epochs=3 --seed-list=3,4 --dropout=0 \
      --jax-order --save-init=init --out=t.json
  python benchmarks/seed_study.py --side=jax --max-folds=4 --epochs=3 --seed-list=3,4 --dropout=0 \
      --jax-init=init --out=j.json
  python benchmarks/seed_study.py --compare j.json t.json

The study itself:

  nice -n 10 python benchmarks/seed_study.py --side=jax --seeds=10 --epochs=E --out=jax.json
  nice -n 10 python benchmarks/seed_study.py --side=torch --seeds=10 --epochs=E --out=torch.json
  python benchmarks/seed_study.py --compare jax.json torch.json   # the test (also --out)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]  # configs/, torch_rcn.py
FEATURES, POOL, BATCH, LEARNING_RATE, MOMENTUM = 16, 5, 64, 5e-4, 0.9
# TorchRCN's module names -> the official RCN_A's (state-dict keys the importer reads).
OFFICIAL_NAMES = {"stem.conv.": "conv1.0.", "stem.bn.": "conv1.1.", "feedforward.conv.": "rcls.0.ffconv.0.",
                  "feedforward.bn.": "rcls.0.ffconv.1.", "recurrent.conv.": "rcls.0.rrconv.0.",
                  "recurrent.bn.": "rcls.0.rrconv.1.", "classifier.": "classifier."}


def _composite(resolution: int):
  from rcn_jax import data  # pylint: disable=g-import-not-at-top
  return data.load_composite("synthetic", resolution=resolution)


def _folds(composite):
  from rcn_jax import folds  # pylint: disable=g-import-not-at-top
  return folds.make_folds(composite.subjects, composite.datasets, "loso")


def _scores(labels, predictions) -> dict[str, float]:
  from rcn_jax import metrics  # pylint: disable=g-import-not-at-top
  return {"uar": metrics.uar(labels, predictions), "uf1": metrics.uf1(labels, predictions)}


def run_jax(args) -> list[dict]:
  """rcn-jax's per-seed pooled scores: one program for all seeds, or one per seed with `--jax-init`."""
  from configs import rcn_a  # pylint: disable=g-import-not-at-top
  from rcn_jax import train  # pylint: disable=g-import-not-at-top
  composite = _composite(args.resolution)
  runs = [tuple(args.seed_list)] if not args.jax_init else [(s,) for s in args.seed_list]
  per_seed = []
  for seeds in runs:
    config = rcn_a.get_config("reference")
    config.model.features, config.model.pool_size = FEATURES, POOL
    config.data.resolution = args.resolution
    config.train.num_epochs = args.epochs
    config.seeds = seeds
    config.report.bootstrap_resamples = 0
    config.protocol.max_folds = args.max_folds
    config.model.dropout_rate = args.dropout
    if args.jax_init:
      config.init.per_fold = os.path.join(args.jax_init, f"seed{seeds[0]}")
    workdir = tempfile.mkdtemp(prefix="seed_study_jax_", dir=args.workdir)
    results = train.train_and_evaluate(config, workdir, composite)
    probabilities = _run_probabilities(workdir) if args.max_folds else {}
    per_seed += [{"seed": s["seed"], "uar": s["uar"], "uf1": s["uf1"],
                  **({"probabilities": probabilities[s["seed"]]} if probabilities else {})} for s in results["seeds"]]
  return per_seed


def _run_probabilities(workdir: str) -> dict[int, dict[str, list[float]]]:
  """`{seed: {sample: [p_negative, p_positive, p_surprise]}}` of a run folder's predictions.csv."""
  import csv  # pylint: disable=g-import-not-at-top
  out = {}
  with open(os.path.join(workdir, "predictions.csv"), newline="") as stream:
    for row in csv.DictReader(stream):
      out.setdefault(int(row["seed"]), {})[row["sample"]] = [float(row[f"p_{c}"]) for c in ("negative", "positive", "surprise")]
  return out


def _official_state_dict(model) -> dict:
  state = {}
  for key, value in model.state_dict().items():
    prefix = next(p for p in OFFICIAL_NAMES if key.startswith(p))
    state[OFFICIAL_NAMES[prefix] + key[len(prefix):]] = value.detach().numpy().copy()
  return state


def _jax_orders(composite, fold, seed: int, epochs: int):
  """rcn-jax's sample order of each epoch for (fold, seed): the same keys and sampler as its program."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from rcn_jax import folds  # pylint: disable=g-import-not-at-top
  from rcn_jax.engine import plan, program  # pylint: disable=g-import-not-at-top
  layout = folds.layout_models([fold], [seed], 1)
  train_key = plan.model_keys(layout)[1][0]
  mask = np.zeros(len(composite.labels), bool)
  mask[fold.train_indices] = True
  steps = -(-int(mask.sum()) // BATCH)
  orders = []
  for epoch in range(epochs):
    order_key, _ = jax.random.split(jax.random.fold_in(train_key, epoch))
    indices, valid = program.epoch_batches(order_key, mask, BATCH, steps, True)
    orders.append(np.asarray(indices)[np.asarray(valid)])
  return orders


def run_torch(args) -> list[dict]:
  """The official way: per seed, `manual_seed` once, then every fold one after another."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  from torch.nn import functional as F  # pylint: disable=g-import-not-at-top
  from torch_rcn import TorchRCN  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(args.torch_threads)
  composite = _composite(args.resolution)
  inputs = torch.from_numpy(np.ascontiguousarray(composite.flows.transpose(0, 3, 1, 2)))
  labels = torch.from_numpy(np.asarray(composite.labels, np.int64))
  per_seed = []
  for seed in args.seed_list:
    started = time.perf_counter()
    torch.manual_seed(seed)
    predictions, probabilities = np.full(len(labels), -1), {}
    run_folds = _folds(composite)[:args.max_folds or None]
    for fold in run_folds:
      model = TorchRCN("rcn_a", FEATURES, POOL, dropout=args.dropout)
      if args.save_init:
        folder = Path(args.save_init) / f"seed{seed}"
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / f"{fold.subject}.npz", **_official_state_dict(model))
      optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM)
      train_indices = torch.from_numpy(fold.train_indices)
      orders = _jax_orders(composite, fold, seed, args.epochs) if args.jax_order else None
      model.train()
      for epoch in range(args.epochs):
        if orders is not None:
          order = torch.from_numpy(orders[epoch].astype(np.int64))
        else:
          order = train_indices[torch.randperm(len(train_indices))]
        for start in range(0, len(order), BATCH):
          batch = order[start:start + BATCH]
          optimizer.zero_grad(set_to_none=True)
          F.cross_entropy(model(inputs[batch]), labels[batch]).backward()
          optimizer.step()
      model.eval()
      with torch.no_grad():
        test = torch.from_numpy(fold.test_indices)
        probs = torch.softmax(model(inputs[test]), dim=1).numpy()
      predictions[fold.test_indices] = probs.argmax(axis=1)
      probabilities.update({composite.samples[i]: p.tolist() for i, p in zip(fold.test_indices, probs)})
    tested = predictions >= 0
    per_seed.append({"seed": seed, **_scores(composite.labels[tested], predictions[tested]),
                     "seconds": time.perf_counter() - started,
                     **({"probabilities": probabilities} if args.max_folds else {})})
    print(f"torch seed {seed}: UAR {per_seed[-1]['uar']:.4f} UF1 {per_seed[-1]['uf1']:.4f} "
          f"({per_seed[-1]['seconds']:.0f} s)", flush=True)
  return per_seed


def welch(a, b) -> dict[str, float]:
  """Welch's two-sided t test of mean(a) - mean(b): t, Welch-Satterthwaite df, p."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  a, b = np.asarray(a, float), np.asarray(b, float)
  va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
  t = (a.mean() - b.mean()) / math.sqrt(va + vb)
  df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
  return {"t": float(t), "df": float(df), "p": float(2 * _t_sf(abs(t), df))}


def _t_sf(t: float, df: float) -> float:
  """Student's t survival function through the regularised incomplete beta (SciPy when present)."""
  try:
    from scipy import stats  # pylint: disable=g-import-not-at-top
    return float(stats.t.sf(t, df))
  except ImportError:
    x = df / (df + t * t)
    return 0.5 * _betainc(df / 2, 0.5, x)


def _betainc(a: float, b: float, x: float) -> float:
  """Regularised incomplete beta I_x(a, b) by its continued fraction (Lentz), for the no-SciPy case."""
  if x <= 0 or x >= 1:
    return float(x >= 1)
  if x > (a + 1) / (a + b + 2):
    return 1 - _betainc(b, a, 1 - x)
  front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(1 - x)) / a
  f, c, d = 1.0, 1.0, 0.0
  for i in range(400):
    m = i // 2
    if i == 0:
      num = 1.0
    elif i % 2 == 0:
      num = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
    else:
      num = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
    d = 1 + num * d
    d = 1 / (d if abs(d) > 1e-300 else 1e-300)
    c = 1 + num / (c if abs(c) > 1e-300 else 1e-300)
    f *= c * d
    if abs(1 - c * d) < 1e-14:
      break
  return front * (f - 1)


def compare(sides: dict[str, dict]) -> dict:
  """Mean, std and the per-seed list of each side's UAR and UF1; Welch's test of the first two sides."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  summary = {}
  for name, side in sides.items():
    for metric in ("uar", "uf1"):
      values = [s[metric] for s in side["seeds"]]
      summary.setdefault(name, {})[metric] = {"values": values, "mean": float(np.mean(values)),
                                               "std": float(np.std(values, ddof=1))}
  names = list(sides)
  if len(names) == 2 and all("probabilities" in s for side in sides.values() for s in side["seeds"]):
    # Checks on a few folds keep every probability: the largest difference between the sides.
    by_seed = [{s["seed"]: s["probabilities"] for s in sides[n]["seeds"]} for n in names]
    summary["max_probability_difference"] = max(
        abs(a - b) for seed in by_seed[0] for sample in by_seed[0][seed]
        for a, b in zip(by_seed[0][seed][sample], by_seed[1][seed][sample]))
  if len(names) == 2:
    summary["welch"] = {m: welch(summary[names[0]][m]["values"], summary[names[1]][m]["values"]) for m in ("uar", "uf1")}
  return summary


def _print(summary: dict) -> None:
  for name, entry in summary.items():
    if name == "max_probability_difference":
      print(f"largest difference of a test probability between the sides: {entry:.2e}")
    if not isinstance(entry, dict) or name == "welch":
      continue
    for metric, values in entry.items():
      listed = " ".join(f"{v:.4f}" for v in values["values"])
      print(f"{name:>28} {metric.upper()}: mean {values['mean']:.4f} std {values['std']:.4f}  [{listed}]")
  for metric, test in summary.get("welch", {}).items():
    print(f"Welch {metric.upper()} ({' - '.join(n for n in summary if isinstance(summary[n], dict) and n != 'welch')}): "
          f"t {test['t']:.3f} df {test['df']:.1f} p {test['p']:.4f}")


def _load_average() -> list[float]:
  return list(os.getloadavg())


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
  parser.add_argument("--side", choices=("jax", "torch"), help="which side to train")
  parser.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1 (or --seed-list)")
  parser.add_argument("--seed-list", type=lambda t: [int(s) for s in t.split(",")], default=None)
  parser.add_argument("--epochs", type=int, default=10)
  parser.add_argument("--resolution", type=int, default=28)
  parser.add_argument("--max-folds", type=int, default=0, help="the first N folds only (0: all; checks)")
  parser.add_argument("--dropout", type=float, default=0.5, help="0 with both swaps: the sides must agree")
  parser.add_argument("--torch-threads", type=int, default=1)
  parser.add_argument("--save-init", default=None, help="official side: write each fold's initial weights here")
  parser.add_argument("--jax-init", default=None, help="rcn-jax side: start from --save-init's weights")
  parser.add_argument("--jax-order", action="store_true", help="official side: rcn-jax's epoch orders")
  parser.add_argument("--workdir", default=None, help="parent of rcn-jax's run folders (default: temp)")
  parser.add_argument("--label", default=None, help="name of this side in the JSON (default: the side)")
  parser.add_argument("--compare", nargs="+", default=None, help="JSON files of sides to compare")
  parser.add_argument("--out", default=None, help="write the results as JSON here")
  args = parser.parse_args(argv)
  if args.compare:
    sides = {}
    for path in args.compare:  # files of one side (seed ranges run apart) merge their seeds
      for label, side in json.loads(Path(path).read_text())["sides"].items():
        if label in sides:
          sides[label] = {**sides[label], "seeds": sides[label]["seeds"] + side["seeds"],
                          "wall_s": sides[label]["wall_s"] + side["wall_s"]}
        else:
          sides[label] = side
        sides[label]["seeds"].sort(key=lambda s: s["seed"])
    summary = compare(sides)
    _print(summary)
    if args.out:
      Path(args.out).write_text(json.dumps({"sides": sides, "summary": summary}, indent=1))
    return 0
  if args.side is None:
    parser.error("give --side or --compare")
  args.seed_list = args.seed_list or list(range(args.seeds))
  if args.side == "jax":
    from rcn_jax import xla_flags  # pylint: disable=g-import-not-at-top
    xla_flags.apply_defaults()
  started, load_before = time.perf_counter(), _load_average()
  seeds = run_jax(args) if args.side == "jax" else run_torch(args)
  side = {"seeds": seeds, "epochs": args.epochs, "resolution": args.resolution,
          "wall_s": time.perf_counter() - started, "load_average_before": load_before,
          "load_average_after": _load_average(), "cpus": os.cpu_count(),
          "swaps": {"jax_init": args.jax_init, "jax_order": args.jax_order}, "dropout": args.dropout,
          "max_folds": args.max_folds}
  label = args.label or ("rcn-jax" if args.side == "jax" else "official (PyTorch)")
  _print(compare({label: side}))
  print(f"{label}: {side['wall_s']:.0f} s, load average {load_before} -> {side['load_average_after']}")
  if args.out:
    Path(args.out).write_text(json.dumps({"sides": {label: side}}, indent=1))
  return 0


if __name__ == "__main__":
  sys.exit(main())

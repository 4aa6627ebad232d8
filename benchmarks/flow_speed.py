"""Speed and accuracy of the optical-flow backends on synthetic micro-expression pairs.

Accuracy: the canonical pair and four random ones (3-5 bumps from seed 0), clean and with 2 grey
levels of sensor noise; metrics ignore an 8-px border: EPE over all pixels, over moving pixels
(|w| > 0.1 px) and static ones (|w| < 0.01 px), Pearson r of the strain maps and the magnitude
ratio |estimate| / |truth| on moving pixels (< 1: the solver shrinks motion).

Speed: the OpenCV backends one pair at a time, the JAX backends batched over all pairs (442, the
size of the MEGC2019 composite, by default) in one vmapped call per chunk; the first JAX call
includes compilation, reported separately.

  python benchmarks/flow_speed.py            # 200x200 pairs, 442 per backend
  python benchmarks/flow_speed.py --quick    # 128x128, 24 pairs: a few minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import time

import cv2
import jax
import numpy as np

from data_prep import flow as flow_lib
from data_prep import strain
from data_prep.flow import synthetic

BORDER = 8


def accuracy_pairs(size: int, noise: float) -> list[synthetic.SyntheticPair]:
  """The canonical pair and four random ones (3-5 Gaussian bumps each, `default_rng(0)`)."""
  rng = np.random.default_rng(0)
  bump_sets = [synthetic.canonical_bumps(size)]
  bump_sets += [synthetic.random_bumps(rng, size) for _ in range(4)]
  return [synthetic.micro_expression_pair(size, bumps=bumps, noise_grey_levels=noise, seed=k)
          for k, bumps in enumerate(bump_sets)]


def speed_pairs(scored: list[synthetic.SyntheticPair], size: int,
                count: int) -> tuple[np.ndarray, np.ndarray]:
  """`count` pairs `[N, size, size]` uint8: the scored pairs first, then 16 noisy ones repeated."""
  rng = np.random.default_rng(1)
  distinct = [synthetic.micro_expression_pair(size, bumps=synthetic.random_bumps(rng, size),
                                              noise_grey_levels=2.0, seed=k) for k in range(16)]
  chosen = (scored + [distinct[k % len(distinct)] for k in range(count)])[:count]
  return np.stack([p.frame0 for p in chosen]), np.stack([p.frame1 for p in chosen])


def metrics(estimate: np.ndarray, truth: np.ndarray) -> dict[str, float]:
  """Accuracy of a flow `[H, W, 2]` against the truth, inside the border ring."""
  inner = (slice(BORDER, -BORDER), slice(BORDER, -BORDER))
  error = np.linalg.norm(estimate - truth, axis=-1)[inner]
  magnitude = np.linalg.norm(truth, axis=-1)[inner]
  moving, static = magnitude > 0.1, magnitude < 0.01
  strain_r = np.corrcoef(strain.optical_strain(estimate)[inner].ravel(),
                         strain.optical_strain(truth)[inner].ravel())[0, 1]
  return {
      "epe_all": float(error.mean()),
      "epe_mov": float(error[moving].mean()),
      "epe_stat": float(error[static].mean()),
      "strain_r": float(strain_r),
      "mag": float(np.linalg.norm(estimate, axis=-1)[inner][moving].mean()
                   / magnitude[moving].mean()),
  }


def timed(function, *args, **kwargs):
  """`(result, seconds)` of one call."""
  start = time.perf_counter()
  result = function(*args, **kwargs)
  return result, time.perf_counter() - start


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--quick", action="store_true", help="128x128 frames and 24 pairs for speed")
  parser.add_argument("--size", type=int, help="frame side in px (default 200, quick 128)")
  parser.add_argument("--pairs", type=int, help="pairs for the speed test (default 442, quick 24)")
  parser.add_argument("--batch-size", type=int, default=None,
                      help="pairs per JAX call (default: all)")
  parser.add_argument("--backends", nargs="+", default=list(flow_lib.BACKENDS),
                      choices=flow_lib.BACKENDS)
  args = parser.parse_args()
  size = args.size or (128 if args.quick else 200)
  count = args.pairs or (24 if args.quick else 442)

  print(f"devices: {jax.devices()}; OpenCV {cv2.__version__} with {cv2.getNumThreads()} threads")
  print(f"accuracy: 5 synthetic pairs of {size}x{size}, clean and noisy; speed: {count} pairs")
  clean, noisy = accuracy_pairs(size, 0.0), accuracy_pairs(size, 2.0)
  if count < len(clean) + len(noisy):
    parser.error(f"--pairs must be at least {len(clean) + len(noisy)} "
                 "(the scored pairs come first)")
  # One batch holds the scored pairs and the rest, so each JAX backend compiles once.
  speed0, speed1 = speed_pairs(clean + noisy, size, count)
  print(f"{'backend':21s} {'clean: EPE_all':>14s} {'EPE_mov':>8s} {'EPE_stat':>8s} "
        f"{'strainR':>7s} {'mag':>5s} | {'noisy: EPE_mov':>14s} {'EPE_stat':>8s} {'strainR':>7s} | "
        f"{'ms/pair':>8s} {'compile s':>9s}")
  for backend in args.backends:
    compile_s = float("nan")
    if backend in flow_lib.JAX_BACKENDS:
      _, first = timed(flow_lib.compute_flows, speed0, speed1, backend=backend,
                       batch_size=args.batch_size)
      flows, elapsed = timed(flow_lib.compute_flows, speed0, speed1, backend=backend,
                             batch_size=args.batch_size)
      compile_s = first - elapsed
    else:
      flows, elapsed = timed(flow_lib.compute_flows, speed0, speed1, backend=backend)
    scores = {}
    for name, pairs, offset in (("clean", clean, 0), ("noisy", noisy, len(clean))):
      per_pair = [metrics(flows[offset + k], p.flow) for k, p in enumerate(pairs)]
      scores[name] = {key: float(np.mean([m[key] for m in per_pair])) for key in per_pair[0]}
    c, n = scores["clean"], scores["noisy"]
    print(f"{backend:21s} {c['epe_all']:14.3f} {c['epe_mov']:8.3f} {c['epe_stat']:8.3f} "
          f"{c['strain_r']:7.3f} {c['mag']:5.2f} | {n['epe_mov']:14.3f} {n['epe_stat']:8.3f} "
          f"{n['strain_r']:7.3f} | {1000 * elapsed / count:8.1f} {compile_s:9.1f}", flush=True)
  zero = [np.linalg.norm(p.flow, axis=-1)[BORDER:-BORDER, BORDER:-BORDER] for p in clean]
  print(f"zero flow: EPE_mov {np.mean([m[m > 0.1].mean() for m in zero]):.3f} "
        "(the baseline every backend must beat)")


if __name__ == "__main__":
  main()

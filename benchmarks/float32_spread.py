"""The float32 spread behind the parity tolerances, and what the deliberate breaks produce.

  python benchmarks/float32_spread.py [--cases=RCN_S_fm16_p5,...] [--seeds=3]

For every recorded case (tests/data/reference_vectors) it runs rcn-jax in float32 and measures, per
kind of output (logits, loss, attention, BN statistics, gradients), the largest difference relative
to the tensor's max magnitude (`rcn_jax.models.parity.deviations`):
- ulp: the input and every weight moved by one ulp up or down at random (`--seeds` draws), against
  the unperturbed run: how far float32 rounding alone moves each output;
- xla: the same unperturbed run in fresh processes under other XLA CPU settings (instruction set
  restricted to AVX and to SSE4.2, single-threaded Eigen, YNNPACK convolutions, one core), each
  otherwise with `launch.py`'s flags (`rcn_jax.xla_flags`), against this process's run:
  the kernel choices that differ between CPUs;
- here: this machine against the official float32 outputs (what the test compares);
- breaks: the two deliberate faults (`jax.image.resize` nearest; Flax's biased running variance)
  against the official outputs.
A tolerance must sit well above the first three and well below the breaks. Gradient differences
beyond the tolerance under ulp or xla are ReLU kinks: that variant's gradients are left out of
the spread and listed apart, by case.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile

from rcn_jax import xla_flags

xla_flags.apply_defaults(devices=1)  # before JAX starts: this process runs with launch.py's flags

import jax  # pylint: disable=wrong-import-position  # noqa: E402
import jax.numpy as jnp
import numpy as np

from rcn_jax.models import layers, parity

VECTORS = pathlib.Path(__file__).resolve().parent.parent / "tests" / "data" / "reference_vectors"
CASES = ([f"{name}_fm16_p{pool}" for name in ("RCN_A", "RCN_S", "RCN_W", "RCN_C", "RCN_P", "RCN_F")
          for pool in (5, 7)] + [f"RecNet_{k}_fm16_p5" for k in ("L1", "L2", "L3", "v2")])
KINDS = (*parity.FORWARD_KINDS, "grads", "bias_grads")
XLA_SETTINGS = {"isa=AVX": (["--xla_cpu_max_isa=AVX"], None), "isa=SSE4_2": (["--xla_cpu_max_isa=SSE4_2"], None),
                "eigen single-threaded": (["--xla_cpu_multi_thread_eigen=false"], None),
                "YNNPACK convolutions (XLA's own default)":
                    ([f"--{xla_flags.LIBRARY_FUSIONS}=individual_convolution"], None),
                "one core": ([], "0")}
TOLERANCE = {"eval_logits": parity.FLOAT32.forward, "train_logits": parity.FLOAT32.forward,
             "eval_attention": parity.FLOAT32.forward, "train_attention": parity.FLOAT32.forward,
             "loss": parity.FLOAT32.loss, "stats": parity.FLOAT32.stats, "grads": parity.FLOAT32.grads,
             "bias_grads": parity.FLOAT32.bias_grads}


def _ulp_perturb(key: jax.Array):
  """A function moving every float leaf of a tree by one ulp up or down, at random per element."""
  def perturb(tree):
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(key, len(leaves))
    moved = [jnp.nextafter(leaf, jnp.where(jax.random.bernoulli(k, shape=leaf.shape), jnp.inf, -jnp.inf))
             for k, leaf in zip(keys, leaves)]
    return jax.tree.unflatten(treedef, moved)
  return perturb


def _largest(errors: dict[str, dict[str, float]]) -> dict[str, float]:
  return {kind: max(values.values(), default=0.0) for kind, values in errors.items()}


def _save(outputs: dict, path: str) -> None:
  flat = {f"grads/{k}": v for k, v in outputs["grads"].items()}
  flat.update({f"stats/{k}": v for k, v in outputs["stats"].items()})
  for kind in ("eval_logits", "train_logits", "eval_attention", "train_attention"):
    if outputs[kind] is not None:
      flat[kind] = outputs[kind]
  flat["loss"] = np.asarray(outputs["loss"])
  np.savez(path, **flat)


def _load(path: str) -> dict:
  data = np.load(path)
  outputs = {kind: (data[kind] if kind in data.files else None)
             for kind in ("eval_logits", "train_logits", "eval_attention", "train_attention")}
  outputs["loss"] = float(data["loss"])
  for group in ("grads", "stats"):
    outputs[group] = {k[len(group) + 1:]: data[k] for k in data.files if k.startswith(group + "/")}
  return outputs


def worker(cases: list[str], out_dir: str) -> None:
  """Writes each case's unperturbed float32 outputs to `out_dir/<case>.npz`."""
  x, y = parity.read_input(VECTORS)
  for name in cases:
    _save(parity.run_case(parity.Case(VECTORS / f"{name}.npz"), "f32", x, y), os.path.join(out_dir, f"{name}.npz"))


def _xla_outputs(cases: list[str], flags: list[str], cpus: str | None, out_dir: str) -> None:
  env = dict(os.environ, XLA_FLAGS=xla_flags.with_defaults(" ".join(flags), 1), JAX_PLATFORMS="cpu")
  command = [sys.executable, __file__, "--worker", out_dir, f"--cases={','.join(cases)}"]
  if cpus is not None:
    command = ["taskset", "-c", cpus, *command]
  subprocess.run(command, env=env, check=True)


def _half_pixel_upsample(x, out_h, out_w):
  return jax.image.resize(x, (x.shape[0], out_h, out_w, *x.shape[3:]), "nearest")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--cases", default=",".join(CASES))
  parser.add_argument("--seeds", type=int, default=3, help="ulp perturbation draws per case")
  parser.add_argument("--worker", help=argparse.SUPPRESS)
  parser.add_argument("--json", help="also write the table as JSON here")
  args = parser.parse_args()
  cases = args.cases.split(",")
  if args.worker:
    worker(cases, args.worker)
    return
  x, y = parity.read_input(VECTORS)
  table = {source: {kind: 0.0 for kind in KINDS} for source in ("ulp", "xla", "here", "nearest break", "bn break")}
  kinks: dict[str, list[str]] = {}
  with tempfile.TemporaryDirectory() as tmp:
    settings_dirs = {}
    for label, (flags, cpus) in XLA_SETTINGS.items():
      settings_dirs[label] = os.path.join(tmp, label.replace(" ", "_").replace("=", "_"))
      os.makedirs(settings_dirs[label])
      _xla_outputs(cases, flags, cpus, settings_dirs[label])
    for name in cases:
      case = parity.Case(VECTORS / f"{name}.npz")
      base = parity.run_case(case, "f32", x, y)
      official = parity.recorded(case, "f32")
      variants = {f"ulp seed {seed}": parity.run_case(case, "f32", x, y,
                                                      variables_fn=_ulp_perturb(jax.random.PRNGKey(seed)))
                  for seed in range(args.seeds)}
      variants.update({label: _load(os.path.join(d, f"{name}.npz")) for label, d in settings_dirs.items()})
      for label, outputs in variants.items():
        source = "ulp" if label.startswith("ulp") else "xla"
        errors = parity.deviations(outputs, base, relative=True)
        flipped = [p for kind in ("grads", "bias_grads") for p, v in errors[kind].items() if v > TOLERANCE[kind]]
        if flipped:  # a kink moves gradients by a finite step: listed apart, not as spread
          kinks.setdefault(name, []).append(f"{label}: {len(flipped)} tensors")
        for kind, value in _largest(errors).items():
          if not (flipped and kind in ("grads", "bias_grads")):
            table[source][kind] = max(table[source][kind], value)
      for kind, value in _largest(parity.deviations(base, official, relative=True)).items():
        table["here"][kind] = max(table["here"][kind], value)
    # Each break is measured where it acts: resize on a 7 -> 20 upsample, the variance on BN stats.
    breaks = {"nearest break": ("RCN_F_fm16_p7", dict(), True),
              "bn break": ("RCN_A_fm16_p5", dict(model_fn=lambda m: m.clone(unbiased_running_var=False)), False)}
    for source, (name, options, patch_resize) in breaks.items():
      case = parity.Case(VECTORS / f"{name}.npz")
      original = layers.upsample_nearest
      if patch_resize:
        layers.upsample_nearest = _half_pixel_upsample
      try:
        outputs = parity.run_case(case, "f32", x, y, **options)
      finally:
        layers.upsample_nearest = original
      table[source] = _largest(parity.deviations(outputs, parity.recorded(case, "f32"), relative=True))

  print(f"float32 spread over {len(cases)} case(s), {args.seeds} ulp draw(s), XLA settings: {', '.join(XLA_SETTINGS)}")
  print(f"JAX {jax.__version__}; fractions of each tensor's max (loss: relative; bias_grads: of the same conv's kernel-gradient max)")
  header = ["kind", "tolerance", *table]
  print("| " + " | ".join(header) + " |")
  print("|" + "---|" * len(header))
  for kind in KINDS:
    cells = [kind, f"{TOLERANCE[kind]:.0e}", *(f"{table[source][kind]:.2g}" for source in table)]
    print("| " + " | ".join(cells) + " |")
  print("gradient kinks (float32 gradients beyond tolerance under a perturbation):",
        json.dumps(kinks) if kinks else "none")
  if args.json:
    pathlib.Path(args.json).write_text(json.dumps({"table": table, "kinks": kinks}, indent=1))


if __name__ == "__main__":
  main()

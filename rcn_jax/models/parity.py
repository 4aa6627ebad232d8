"""Parity of rcn-jax with recorded outputs of the official PyTorch models.

A recorded case (`<Class>_fm<fm>_p<P>.npz`, see `tests/data/reference_vectors/`) holds an official
state_dict (`sd/...`) and what the official model computed from it on a fixed batch, in float64 and
float32: eval and train logits, the summed cross-entropy loss, every gradient, the BN running
statistics after one train forward, and attention maps. `run_case` computes the same quantities
with rcn-jax on the imported weights; `compare` lists where they differ beyond a `Tolerance`.

The float32 rule: XLA picks kernels per instruction set, so float32 results
differ in the last bits from one CPU to the next; every float32 quantity is therefore compared
relative to its tensor's scale, and a float32 gradient mismatch is a fault only where the float64
check of the same case fails too (a ReLU input within rounding of zero flips its gradient).
`benchmarks/float32_spread.py` measures the spread behind the float32 tolerances.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from rcn_jax.models.torch_import import from_torch_state_dict

# The official class of each case file and the rcn-jax preset it corresponds to.
PRESET_OF = {"RCN_A": "rcn_a", "RCN_S": "rcn_s", "RCN_W": "rcn_w", "RCN_C": "rcn_c",
             "RCN_P": "rcn_p", "RCN_F": "rcn_f", "RecNet_L1": "depth_2", "RecNet_L2": "depth_3",
             "RecNet_L3": "depth_4", "RecNet_v2": "depth_1"}
# Conv biases directly followed by a batch-statistics BN have zero true gradient: their recorded
# values are rounding noise, compared in absolute terms.
BIAS_BEFORE_BN = ("stem/main/conv/bias", "feedforward/conv/bias", "recurrent/conv/bias")
FORWARD_KINDS = ("eval_logits", "train_logits", "loss", "eval_attention", "train_attention", "stats")


@dataclasses.dataclass(frozen=True)
class Tolerance:
  """Largest accepted differences; with `relative`, each is a fraction of the tensor's max magnitude.

  The loss is a scalar: relative means relative to its magnitude. Gradients span many magnitudes, so
  `grads` is always a fraction of each tensor's max; `bias_grads` (biases of a conv followed by a
  batch-statistics BN, zero true gradient) are, with `relative`, a fraction of the same conv's
  kernel-gradient max, else absolute.
  """
  forward: float
  loss: float
  stats: float
  grads: float
  bias_grads: float
  relative: bool


FLOAT64 = Tolerance(forward=1e-9, loss=1e-9, stats=1e-9, grads=1e-9, bias_grads=1e-9, relative=False)
# Sized by `benchmarks/float32_spread.py` over the 16 recorded cases: the largest float32 spread
# (one-ulp perturbations of inputs and weights; XLA restricted to AVX or SSE4.2, single-threaded,
# one core) was 2.2e-6 for logits, 9.9e-7 for the loss, 3.8e-7 for BN statistics, 4.2e-6 for
# gradients and 1.8e-6 for zero-gradient biases; each bound sits about 10x above that, and far below
# the deliberate breaks (nearest resize: logits 0.06; biased running variance: statistics 3.9e-5).
FLOAT32 = Tolerance(forward=2e-5, loss=1e-5, stats=4e-6, grads=1e-4, bias_grads=1e-4, relative=True)


@dataclasses.dataclass(frozen=True)
class Case:
  """One recorded case: its file, the official class and the pool size P (fm is 16 throughout)."""
  path: Path

  @property
  def name(self) -> str:
    return self.path.stem

  @property
  def official_class(self) -> str:
    return self.name.rsplit("_", 2)[0]

  @property
  def preset(self) -> str:
    return PRESET_OF[self.official_class]

  @property
  def pool_size(self) -> int:
    return int(self.name.rsplit("_", 1)[1][1:])

  @property
  def features(self) -> int:
    return int(self.name.rsplit("_", 2)[1][2:])


def read_input(directory: Path) -> tuple[np.ndarray, np.ndarray]:
  """The recorded batch: `x [8, 60, 60, 3]` (NHWC) and labels `y [8]`."""
  data = np.load(Path(directory) / "input_b8.npz")
  return data["x"].transpose(0, 2, 3, 1), data["y"]


def flatten(tree: dict, prefix: str = "") -> dict[str, np.ndarray]:
  """`{"a": {"b": x}}` -> `{"a/b": x}` as NumPy arrays."""
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(flatten(value, f"{prefix}{key}/"))
    else:
      flat[prefix + key] = np.asarray(value)
  return flat


def state_dict(vectors) -> dict[str, np.ndarray]:
  """The official state_dict recorded in a case file."""
  return {k[3:]: vectors[k] for k in vectors.files if k.startswith("sd/")}


def run_case(case: Case, precision: str, x: np.ndarray, y: np.ndarray, *,
             variables_fn: Callable[[dict], dict] | None = None,
             model_fn: Callable[[nn.Module], nn.Module] | None = None) -> dict[str, object]:
  """rcn-jax's outputs for a case in `precision` (`f64` or `f32`), at `highest` matmul precision.

  Args:
    case: the recorded case.
    precision: `f64` or `f32`.
    x: `[N, H, W, 3]` input, cast to the precision.
    y: `[N]` labels.
    variables_fn: applied to the imported variables after the cast (perturbation studies).
    model_fn: applied to the imported model (deliberate-break studies).

  Returns:
    `eval_logits`, `train_logits` `[N, C]`, `loss` (float), `eval_attention`, `train_attention`
    (`[N, h, w]` or None), `grads` and `stats` (flat dicts).
  """
  vectors = np.load(case.path)
  dtype = jnp.float64 if precision == "f64" else jnp.float32
  with jax.enable_x64(precision == "f64"), jax.default_matmul_precision("highest"):
    model, variables = from_torch_state_dict(case.preset, state_dict(vectors), features=case.features,
                                             pool_size=case.pool_size)
    if model_fn is not None:
      model = model_fn(model)
    variables = jax.tree.map(lambda a: jnp.asarray(a, dtype), variables)
    if variables_fn is not None:
      variables = variables_fn(variables)
    no_dropout = model.clone(dropout_rate=0.0)

    @jax.jit
    def evaluate(variables, x):
      eval_outputs = model.apply(variables, x, train=False, mutable=["intermediates"])

      def loss_fn(params):
        logits, state = no_dropout.apply(
            {"params": params, "batch_stats": variables["batch_stats"]}, x, train=True,
            mutable=["batch_stats", "intermediates"])
        loss = -jnp.sum(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))
        return loss, (logits, state)

      return eval_outputs, jax.value_and_grad(loss_fn, has_aux=True)(variables["params"])

    (eval_logits, eval_state), ((loss, (train_logits, train_state)), grads) = evaluate(
        variables, jnp.asarray(x, dtype))

  def attention(state: dict) -> np.ndarray | None:
    maps = state.get("intermediates", {}).get("attention")
    return None if maps is None else np.asarray(maps[0])

  return {"eval_logits": np.asarray(eval_logits), "train_logits": np.asarray(train_logits),
          "loss": float(loss), "eval_attention": attention(eval_state),
          "train_attention": attention(train_state), "grads": flatten({"params": grads}),
          "stats": flatten({"batch_stats": train_state["batch_stats"]})}


def recorded(case: Case, precision: str) -> dict[str, object]:
  """The official outputs of a case in rcn-jax's layout, keyed as `run_case`'s."""
  vectors = np.load(case.path)
  weights = state_dict(vectors)

  def converted(prefix: str, collection: str) -> dict[str, np.ndarray]:
    tensors = {k[len(prefix):]: vectors[k] for k in vectors.files if k.startswith(prefix)}
    merged = {**weights, **tensors}  # keys the file does not record keep their weights
    variables = from_torch_state_dict(case.preset, merged, features=case.features,
                                      pool_size=case.pool_size)[1]
    return flatten({collection: variables[collection]})

  def attention(mode: str) -> np.ndarray | None:
    keys = [k for k in vectors.files if k.startswith(f"{mode}_attn_{precision}/")]
    if len(keys) > 1:
      raise ValueError(f"{case.path}: {len(keys)} {mode} attention maps recorded; expected at most one")
    return vectors[keys[0]][:, 0] if keys else None

  return {"eval_logits": vectors[f"eval/logits_{precision}"],
          "train_logits": vectors[f"train/logits_{precision}"],
          "loss": float(vectors[f"train/loss_{precision}"]),
          "eval_attention": attention("eval"), "train_attention": attention("train"),
          "grads": converted(f"grad_{precision}/", "params"),
          "stats": converted(f"after_train_{precision}/", "batch_stats")}


def deviations(ours: dict[str, object], reference: dict[str, object],
               relative: bool) -> dict[str, dict[str, float]]:
  """Per kind (`FORWARD_KINDS`, `grads`, `bias_grads`), each tensor's largest difference.

  With `relative`, every difference is divided by the reference tensor's max magnitude (the
  loss's by its magnitude) and `bias_grads` by the same conv's kernel-gradient max; `grads` always
  are divided by their own max.
  """
  def error(a, b, scaled: bool) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = max(float(np.abs(b).max()), 1e-30) if scaled else 1.0
    return float(np.abs(a - b).max()) / scale

  result: dict[str, dict[str, float]] = {kind: {} for kind in (*FORWARD_KINDS, "grads", "bias_grads")}
  for kind in ("eval_logits", "train_logits", "loss", "eval_attention", "train_attention"):
    if (ours[kind] is None) != (reference[kind] is None):
      raise ValueError(f"{kind}: present in only one of the two outputs")
    if ours[kind] is not None:
      result[kind][kind] = error(ours[kind], reference[kind], relative)
  if ours["stats"].keys() != reference["stats"].keys():
    raise ValueError(f"BN statistics differ in names: {sorted(ours['stats'].keys() ^ reference['stats'].keys())}")
  for path, ref in reference["stats"].items():
    result["stats"][path] = error(ours["stats"][path], ref, relative)
  for path, ref in reference["grads"].items():
    if path.endswith(BIAS_BEFORE_BN):
      # Zero true gradient: the recorded value is rounding noise of a sum over the conv's outputs,
      # whose size follows the same conv's kernel gradient, the scale used here.
      kernel = reference["grads"][path.removesuffix("bias") + "kernel"]
      scale = max(float(np.abs(kernel).max()), 1e-30) if relative else 1.0
      result["bias_grads"][path] = error(ours["grads"][path], ref, False) / scale
    else:
      result["grads"][path] = error(ours["grads"][path], ref, True)
  return result


def compare(ours: dict[str, object], reference: dict[str, object],
            tolerance: Tolerance) -> dict[str, list[str]]:
  """`{"forward": [...], "grads": [...]}`: the tensors beyond `tolerance`, each with its error."""
  bounds = {"eval_logits": tolerance.forward, "train_logits": tolerance.forward,
            "eval_attention": tolerance.forward, "train_attention": tolerance.forward,
            "loss": tolerance.loss, "stats": tolerance.stats, "grads": tolerance.grads,
            "bias_grads": tolerance.bias_grads}
  unit = "of max" if tolerance.relative else "absolute"
  failures: dict[str, list[str]] = {"forward": [], "grads": []}
  for kind, errors in deviations(ours, reference, tolerance.relative).items():
    group = "grads" if kind in ("grads", "bias_grads") else "forward"
    label = {"grads": "of max", "bias_grads": "of the kernel gradient's max" if tolerance.relative else unit}.get(kind, unit)
    failures[group] += [f"{path}: {value:.3g} {label} > {bounds[kind]:.0e}"
                        for path, value in errors.items() if value > bounds[kind]]
  return failures

"""Parameter and FLOP table of every preset and of the Table V comparison models, computed from the model code.

  python -m rcn_jax.models.summary [--resolution=60]

FLOPs are 2 x the multiply-accumulates of the convolutions and the classifier in one eval forward
of one sample, counted on the traced program (jaxpr), so they follow the code, not a formula.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from absl import app, flags

from rcn_jax.models import comparison, factory

_RESOLUTION = flags.DEFINE_integer("resolution", 60, "Input height and width in pixels.")


def _sub_jaxprs(params: dict):
  for value in params.values():
    for item in value if isinstance(value, (tuple, list)) else (value,):
      if isinstance(item, jax.extend.core.ClosedJaxpr):
        yield item.jaxpr
      elif isinstance(item, jax.extend.core.Jaxpr):
        yield item


def _count_macs(jaxpr) -> int:
  """Multiply-accumulates of every convolution and matrix product in `jaxpr`, nested ones included."""
  macs = 0
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    out_size = math.prod(eqn.outvars[0].aval.shape)
    if name == "conv_general_dilated":
      kernel_shape = eqn.invars[1].aval.shape
      out_feature_dim = eqn.params["dimension_numbers"].rhs_spec[0]
      macs += out_size * math.prod(kernel_shape) // kernel_shape[out_feature_dim]
    elif name == "dot_general":
      (lhs_contracting, _), _ = eqn.params["dimension_numbers"]
      lhs_shape = eqn.invars[0].aval.shape
      macs += out_size * math.prod(lhs_shape[d] for d in lhs_contracting)
    for sub in _sub_jaxprs(eqn.params):
      macs += _count_macs(sub)
  return macs


def parameters_and_flops(model: nn.Module, resolution: int = 60) -> tuple[int, int]:
  """(learnable parameters, forward FLOPs per sample) of `model` at `resolution` px."""
  x = jnp.zeros((1, resolution, resolution, 3))
  variables = jax.eval_shape(
      lambda: model.init({"params": jax.random.key(0), "dropout": jax.random.key(0)}, x,
                         train=False))
  params = sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(variables["params"]))
  jaxpr = jax.make_jaxpr(lambda v: model.apply(v, x, train=False))(variables)
  return params, 2 * _count_macs(jaxpr.jaxpr)


def summary_rows(resolution: int = 60, features: Sequence[int] = (16, 32, 64),
                 pool_sizes: Sequence[int] = (5, 7)) -> list[dict]:
  """One row per preset, features and pool size: parameters and forward FLOPs per sample."""
  rows = []
  for preset, spec in factory.PRESETS.items():
    for fm in features:
      for pool in pool_sizes:
        params, flops = parameters_and_flops(
            factory.create_model(preset, features=fm, pool_size=pool), resolution)
        rows.append({"preset": preset, "paper_name": spec.paper_name, "features": fm,
                     "pool_size": pool, "parameters": params, "flops": flops})
  return rows


def comparison_rows(names: Sequence[str] = ("ststnet", "off_apexnet", "dual_inception", "resnet18",
                                             "densenet121")) -> list[dict]:
  """One row per Table V comparison model at its published input side and standard width."""
  rows = []
  for name in names:
    spec = comparison.MODELS[name]
    params, flops = parameters_and_flops(
        factory.create_model(name, features=spec.features or comparison.FIXED_WIDTH_FEATURES, pool_size=1), spec.resolution)
    rows.append({"preset": name, "paper_name": spec.paper_name, "features": spec.features,
                 "resolution": spec.resolution, "parameters": params, "flops": flops})
  return rows


def format_comparison_table(rows: list[dict]) -> str:
  lines = ["| model | paper name | width | input px | parameters | MFLOPs/sample |", "|---|---|---|---|---|---|"]
  lines += [f"| {r['preset']} | {r['paper_name']} | {r['features'] or 'fixed'} | {r['resolution']} | "
            f"{r['parameters']:,} | {r['flops'] / 1e6:.1f} |" for r in rows]
  return "\n".join(lines)


def format_table(rows: list[dict], resolution: int) -> str:
  lines = [f"| preset | paper name | fm | P | parameters | MFLOPs/sample at {resolution}px |",
           "|---|---|---|---|---|---|"]
  lines += [f"| {r['preset']} | {r['paper_name']} | {r['features']} | {r['pool_size']} | "
            f"{r['parameters']:,} | {r['flops'] / 1e6:.1f} |" for r in rows]
  return "\n".join(lines)


def main(argv: Sequence[str]) -> None:
  del argv
  print(format_table(summary_rows(_RESOLUTION.value), _RESOLUTION.value))
  print()
  print("Table V comparison models (at their own input side; width: ResNet18's first stage, DenseNet121's "
        "growth rate):")
  print(format_comparison_table(comparison_rows()))


if __name__ == "__main__":
  app.run(main)

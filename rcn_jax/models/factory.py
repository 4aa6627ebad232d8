"""The model factory: the paper's named presets and searched architectures as linen modules.

`create_model(config.model.preset, ...)` is how the trainer, the importer of official weights and
saved models build a network: a key of `PRESETS` gives an `rcn.RCN`, a searched architecture (the
`searched:` text that `search_space.Architecture.encode` writes and the search's exported configs
carry) gives its discrete `supernet.Supernet`.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn

from rcn_jax import errors
from rcn_jax.models import comparison, rcn, search_space, supernet


@dataclasses.dataclass(frozen=True)
class Preset:
  """A named architecture of the paper."""
  stem: str
  layer: str
  num_layers: int
  attention: str
  paper_name: str
  # Behaviours of the official class that `reference_quirks` reproduces.
  quirks: tuple[str, ...] = ()


# The paper's networks (Sec. III, Table V) and the depth study's Models 1-4 (Sec. III, Fig. 1).
PRESETS: dict[str, Preset] = {
    "rcn": Preset("conv5_pool", "recurrent", 1, "none", "RCN (basic)"),
    "rcn_a": Preset("conv5_pool", "recurrent", 1, "stem_to_head", "RCN-A"),
    "rcn_s": Preset("conv5_pool", "shortcut", 1, "none", "RCN-S"),
    "rcn_w": Preset("wide", "recurrent", 1, "none", "RCN-W"),
    "rcn_c": Preset("wide", "shortcut", 1, "input_to_stem", "RCN-C"),
    "rcn_f": Preset("wide", "embedding", 1, "embedding", "RCN-F", quirks=("reuse_stream2",)),
    "rcn_p": Preset("wide_pooled", "shortcut", 1, "stem_to_head", "RCN-P"),
    "depth_1": Preset("conv5_pool4", "recurrent", 0, "none", "Model 1 (one conv)"),
    "depth_2": Preset("conv5_pool", "recurrent", 1, "none", "Model 2"),
    "depth_3": Preset("conv5_pool", "recurrent", 2, "none", "Model 3"),
    "depth_4": Preset("conv5_pool", "recurrent", 3, "none", "Model 4"),
}

# `model.preset` of a searched architecture given separately (`create_model(..., architecture=)`).
SEARCHED = "searched"


def create_model(preset: str, *, features: int, pool_size: int, num_classes: int = 3,
                 dropout_rate: float = 0.5, reference_quirks: bool = False,
                 pytorch_bn: bool | None = None, steps: int | None = None,
                 architecture: str | None = None) -> nn.Module:
  """Builds a preset of `PRESETS`, or a searched architecture.

  The module maps flow maps `[N, H, W, 3]` to logits `[N, num_classes]`.

  Args:
    preset: a key of `PRESETS` (`rcn`, `rcn_a`, ..., `depth_4`); a comparison model of Table V
      (`comparison.MODELS`: `ststnet`, `off_apexnet`, `dual_inception`, `resnet18`, `densenet121`;
      they ignore `pool_size`); `searched` (the architecture in
      `architecture`); or a searched architecture's text itself,
      `searched:stem=<stem>,states=<op>+<op>...,gates=<node><<source>+...` (or `gates=none`), as
      `search_space.Architecture.encode` writes it.
    features: fm.
    pool_size: P.
    num_classes: C.
    dropout_rate: the dropout probability.
    reference_quirks: reproduce the official release (parity tests, imported official weights);
      searched architectures have none.
    pytorch_bn: PyTorch's unbiased running variance in batch norm; None means yes (the
      official training behaviour, which the reference results were produced with).
    steps: recurrent unfoldings; None for the layer type's official default (a searched
      architecture's own count, which a given value must equal).
    architecture: the `searched:...` text of preset `searched`.

  Returns:
    The linen module: an `rcn.RCN` for a named preset, a discrete `supernet.Supernet` for a
    searched architecture.
  """
  if preset in comparison.MODELS:
    return comparison.create(preset, features=features, num_classes=num_classes, dropout_rate=dropout_rate,
                             pytorch_bn=pytorch_bn, steps=steps)
  if preset == SEARCHED or preset.startswith(search_space.SEARCHED_PREFIX):
    return supernet.searched_model(architecture or preset, features=features, pool_size=pool_size,
                                   num_classes=num_classes, dropout_rate=dropout_rate,
                                   reference_quirks=reference_quirks, pytorch_bn=pytorch_bn, steps=steps)
  if preset not in PRESETS:
    raise errors.UserError(f"model.preset={preset!r}: expected one of {sorted(PRESETS) + sorted(comparison.MODELS)}")
  spec = PRESETS[preset]
  return rcn.RCN(stem=spec.stem, layer=spec.layer, num_layers=spec.num_layers,
                 attention=spec.attention, features=features, pool_size=pool_size,
                 num_classes=num_classes, dropout_rate=dropout_rate, steps=steps,
                 reuse_stream2=reference_quirks and "reuse_stream2" in spec.quirks,
                 unbiased_running_var=True if pytorch_bn is None else pytorch_bn)

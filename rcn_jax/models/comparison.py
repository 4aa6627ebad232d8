"""The comparison models of paper Table V that rcn-jax trains: STSTNet, OFF-ApexNet, Dual-Inception,
ResNet18 and DenseNet121 (one module per family; `factory.create_model` builds them by name).

Each maps flow maps `[N, H, W, 3]` to logits `[N, C]`, takes `train=` and `mask=` (samples left out
of batch-norm statistics) as `rcn.RCN` does, and draws dropout from the `dropout` RNG collection,
so the engine trains them unchanged. Their input conventions and training recipes are configs
(`rcn_jax.config.COMPARISON_RECIPES`).
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn

from rcn_jax import errors
from rcn_jax.models import densenet, dual_inception, off_apexnet, resnet, ststnet


@dataclasses.dataclass(frozen=True)
class ComparisonModel:
  """A comparison model: its paper name, published input side and standard width.

  `features` is what `model.features` means for it: ResNet18's first-stage channels, DenseNet121's
  growth rate; the three micro-expression networks have fixed widths (`features` None: any given
  value is ignored and recorded as given).
  """
  paper_name: str
  resolution: int
  features: int | None = None


# `model.features` given to the fixed-width models (they ignore it).
FIXED_WIDTH_FEATURES = 16

MODELS: dict[str, ComparisonModel] = {
    "ststnet": ComparisonModel("STSTNet", ststnet.INPUT_SIZE),
    "off_apexnet": ComparisonModel("OFF-ApexNet", 28),
    "dual_inception": ComparisonModel("Dual-Inception", 28),
    "resnet18": ComparisonModel("ResNet18", 60, 64),
    "densenet121": ComparisonModel("DenseNet121", 60, 32),
}


def create(name: str, *, features: int, num_classes: int = 3, dropout_rate: float = 0.5,
           pytorch_bn: bool | None = None, steps: int | None = None) -> nn.Module:
  """Builds comparison model `name` (a key of `MODELS`).

  Args:
    name: the model.
    features: ResNet18's first-stage width or DenseNet121's growth rate; ignored by the others.
    num_classes: C.
    dropout_rate: STSTNet's branch dropout, OFF-ApexNet's fully connected dropout; Dual-Inception
      (as its authors' code), ResNet18 and DenseNet121 (as torchvision's) have none.
    pytorch_bn: PyTorch's unbiased running variance in batch norm (None: yes).
    steps: must be None (no recurrence).
  """
  if steps is not None:
    raise errors.UserError(f"model.steps={steps}: {name} has no recurrent layer (use None)")
  if features < 1:
    raise errors.UserError(f"model.features={features} must be >= 1")
  unbiased = True if pytorch_bn is None else pytorch_bn
  if name == "ststnet":
    return ststnet.STSTNet(num_classes, dropout_rate, unbiased)
  if name == "off_apexnet":
    return off_apexnet.OffApexNet(num_classes, dropout_rate)
  if name == "dual_inception":
    return dual_inception.DualInception(num_classes)
  if name == "resnet18":
    return resnet.ResNet(resnet.STAGE_BLOCKS, features, num_classes, unbiased)
  if name == "densenet121":
    return densenet.DenseNet(densenet.BLOCK_LAYERS, features, num_classes, unbiased)
  raise errors.UserError(f"model.preset={name!r}: expected one of {sorted(MODELS)}")

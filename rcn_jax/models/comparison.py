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
    # One block per stage: the same modules at a depth that compiles in seconds (121 layers take
    # minutes on a 2-core CPU). The studies' `tiny` scale and the tests train these in place of
    # ResNet18 and DenseNet121; never a Table V result.
    "resnet10": ComparisonModel("ResNet10 (tiny-scale stand-in for ResNet18)", 60, 64),
    "densenet_tiny": ComparisonModel("DenseNet (1, 1, 1, 1) (tiny-scale stand-in for DenseNet121)", 60, 32),
}
# The depth of each residual / dense family member.
_DEPTHS = {"resnet18": resnet.STAGE_BLOCKS, "resnet10": (1, 1, 1, 1),
           "densenet121": densenet.BLOCK_LAYERS, "densenet_tiny": (1, 1, 1, 1)}


def create(name: str, *, features: int, num_classes: int = 3, dropout_rate: float = 0.5,
           pytorch_bn: bool | None = None, steps: int | None = None) -> nn.Module:
  """Builds comparison model `name` (a key of `MODELS`).

  Args:
    name: the model.
    features: ResNet18's first-stage width or DenseNet121's growth rate; ignored by the others.
    num_classes: C.
    dropout_rate: STSTNet's branch dropout, OFF-ApexNet's and Dual-Inception's fully connected
      dropout; ResNet18 and DenseNet121 have none (as torchvision's).
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
    return dual_inception.DualInception(num_classes, dropout_rate)
  if name.startswith("resnet"):
    return resnet.ResNet(_DEPTHS[name], features, num_classes, unbiased)
  if name.startswith("densenet"):
    return densenet.DenseNet(_DEPTHS[name], features, num_classes, unbiased)
  raise errors.UserError(f"model.preset={name!r}: expected one of {sorted(MODELS)}")

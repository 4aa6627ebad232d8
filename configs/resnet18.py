"""ResNet18 from scratch on 60x60 flow maps (the RCN paper's deep baseline), standard widths.
Paper Table V: UAR 0.5629, UF1 0.5894.
Recipe: the RCN authors' training script (`reference`: SGD momentum 0.9, lr 5e-4, batch 64, 100 epochs).
Run: `python launch.py --config=configs/resnet18.py` (arguments: `smoke`, another training preset;
see rcn_jax/config.py).
"""

import ml_collections

from rcn_jax import config as config_lib


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  return config_lib.make_comparison_config(preset="resnet18", arg=arg)

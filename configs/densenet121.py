"""DenseNet121 from scratch on 60x60 flow maps (the RCN paper's deep baseline), growth rate 32.
Paper Table V: UAR 0.3414, UF1 0.4253.
Recipe: the RCN authors' training script (`reference`: SGD momentum 0.9, lr 5e-4, batch 64, 100 epochs).
Run: `python launch.py --config=configs/densenet121.py` (arguments: `smoke`, another training preset;
see rcn_jax/config.py).
"""

import ml_collections

from rcn_jax import config as config_lib


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  return config_lib.make_comparison_config(preset="densenet121", arg=arg)

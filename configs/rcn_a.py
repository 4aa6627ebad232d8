"""RCN-A with fm 64 and P 7 on 60x60 flow maps (paper Table V setting).

Paper Table V (LOSO, MEGC2019 full composite): RCN-A: UAR 0.7190, UF1 0.7432.
Run: `python launch.py --config=configs/rcn_a.py` (arguments: `paper`, `reference`, `smoke`;
see rcn_jax/config.py).
"""

import ml_collections

from rcn_jax import config as config_lib


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  return config_lib.make_config(preset="rcn_a", features=64, pool_size=7, arg=arg)

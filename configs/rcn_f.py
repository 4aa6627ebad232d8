"""RCN-F with fm 32 and P 5 on 60x60 flow maps (paper Table V setting).

Paper Table V (LOSO, MEGC2019 full composite): RCN-F: UAR 0.7052, UF1 0.7164.
Run: `python launch.py --config=configs/rcn_f.py` (arguments: `paper`, `reference`, `smoke`;
see rcn_jax/config.py).
"""

import ml_collections

from rcn_jax import config as config_lib


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  return config_lib.make_config(preset="rcn_f", features=32, pool_size=5, arg=arg)

"""RCN-S with fm 16 and P 5 on 60x60 flow maps (paper Table V setting).

Paper Table V (LOSO, MEGC2019 full composite): RCN-S: UAR 0.7106, UF1 0.7466.
Run: `python launch.py --config=configs/rcn_s.py` (arguments: `paper`, `reference`, `smoke`;
see rcn_jax/config.py).
"""

import ml_collections

from rcn_jax import config as config_lib


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  return config_lib.make_config(preset="rcn_s", features=16, pool_size=5, arg=arg)

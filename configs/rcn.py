"""The basic RCN (conv stem + one recurrent layer) with fm 16 and P 5 on 60x60 flow maps.

Not in paper Table V; fm 16 and P 5 as the official code's default.
Run: `python launch.py --config=configs/rcn.py` (arguments: `paper`, `reference`, `smoke`;
see rcn_jax/config.py).
"""

import ml_collections

from rcn_jax import config as config_lib


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  return config_lib.make_config(preset="rcn", features=16, pool_size=5, arg=arg)

"""The basic RCN (conv stem + one recurrent layer) with fm 16 and P 5 on 60x60 flow maps.

Not in paper Table V; fm 16 and P 5 as the official code's default.
Run: `python launch.py --config=configs/rcn.py` (arguments: `paper`, `reference`, `smoke`;
see configs/base.py).
"""

from configs import base


def get_config(arg: str | None = None):
  return base.make_config(preset="rcn", features=16, pool_size=5, arg=arg)

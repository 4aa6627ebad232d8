"""RCN-A with fm 64 and P 7 on 60x60 flow maps (paper Table V setting).

Paper Table V (LOSO, MEGC2019 full composite): RCN-A: UAR 0.7190, UF1 0.7432.
Run: `python launch.py --config=configs/rcn_a.py` (arguments: `paper`, `reference`, `smoke`;
see configs/base.py).
"""

from configs import base


def get_config(arg: str | None = None):
  return base.make_config(preset="rcn_a", features=64, pool_size=7, arg=arg)

"""RCN-S with fm 16 and P 5 on 60x60 flow maps (paper Table V setting).

Paper Table V (LOSO, MEGC2019 full composite): RCN-S: UAR 0.7106, UF1 0.7466.
Run: `python launch.py --config=configs/rcn_s.py` (arguments: `paper`, `reference`, `smoke`;
see configs/base.py).
"""

from configs import base


def get_config(arg: str | None = None):
  return base.make_config(preset="rcn_s", features=16, pool_size=5, arg=arg)

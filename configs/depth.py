"""The depth study's Models 1-4 (paper Sec. III, Fig. 1) with fm 16 and P 5 on 60x60 flow maps.

Model 1 is one convolution; Models 2-4 stack 1-3 recurrent layers on the conv stem.
Run: `python launch.py --config=configs/depth.py:depth=3` (depth 1-4, default 1; combine with
`paper`, `reference`, `smoke`, e.g. `:depth=2,smoke`; see configs/base.py).
"""

from configs import base
from rcn_jax import errors

OPTIONS = {"depth": 1}


def get_config(arg: str | None = None):
  depth = base.parse_arg(arg, **OPTIONS)[2]["depth"]
  if depth not in (1, 2, 3, 4):
    raise errors.UserError(f"config argument depth={depth}: the depth study has Models 1-4")
  return base.make_config(preset=f"depth_{depth}", features=16, pool_size=5, arg=arg, options=OPTIONS)

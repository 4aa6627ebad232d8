"""The depth study's Models 1-4 (paper Sec. III, Fig. 1) with fm 16 and P 5 on 60x60 flow maps.

Model 1 is one convolution; Models 2-4 stack 1-3 recurrent layers on the conv stem.
Run: `python launch.py --config=configs/depth.py:depth=3` (depth 1-4, default 1; combine with
`paper`, `reference`, `smoke`, e.g. `:depth=2,smoke`; see rcn_jax/config.py).
"""

import ml_collections

from rcn_jax import config as config_lib


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  return config_lib.make_depth_config(features=16, pool_size=5, arg=arg)

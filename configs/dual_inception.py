"""Dual-Inception (Zhou et al., 2019): two Inception streams on the u and v flow components, 28x28.
Paper Table V (re-run by the RCN authors): UAR 0.6858, UF1 0.7188.
Recipe: its authors' released script: Adam lr 1e-4, batch 3, 40 epochs (the last epoch tested here).
Run: `python launch.py --config=configs/dual_inception.py` (arguments: `smoke`, another training preset;
see rcn_jax/config.py).
"""

import ml_collections

from rcn_jax import config as config_lib


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  return config_lib.make_comparison_config(preset="dual_inception", arg=arg)

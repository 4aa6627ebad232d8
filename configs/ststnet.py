"""STSTNet (Liong et al., 2019): three 3x3 conv branches (3, 5, 8 channels) on 28x28 BGR 0..255 flow images.
Paper Table V (re-run by the RCN authors, MEGC2019 composite): UAR 0.6724, UF1 0.7118.
Recipe: Adam lr 5e-5, batch 256 without shuffling, 800 epochs, last epoch.
Run: `python launch.py --config=configs/ststnet.py` (arguments: `smoke`, another training preset;
see rcn_jax/config.py).
"""

import ml_collections

from rcn_jax import config as config_lib


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  return config_lib.make_comparison_config(preset="ststnet", arg=arg)

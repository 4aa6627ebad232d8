"""OFF-ApexNet (Gan et al., 2019): two LeNet-like streams on the u and v flow components, 28x28.
Paper Table V (as reported by [25], UF1 only): UF1 0.7196.
Recipe: Adam lr 1e-4, 3000 epochs, batch 256 (see rcn_jax/config.py).
Run: `python launch.py --config=configs/off_apexnet.py` (arguments: `smoke`, another training preset;
see rcn_jax/config.py).
"""

import ml_collections

from rcn_jax import config as config_lib


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  return config_lib.make_comparison_config(preset="off_apexnet", arg=arg)

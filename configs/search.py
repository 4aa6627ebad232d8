"""Bilevel architecture search over the paper's module-integration space (Sec. III-C.4, Fig. 6).

The space, the optimisers and their settings (argued against DARTS') are described in
`rcn_jax.config.make_search_config`. Outputs in the workdir: `architecture_weights.{json,csv,png}`,
`architecture_weights_history.png`, `search.json`, `architectures/top<i>.py` and, with
`mode=nested`, `architectures/per_fold.py` (each LOSO fold trains its own searched architecture):
configs `launch.py` trains directly (`python launch.py --config=<workdir>/architectures/top1.py`).

What each mode guarantees (README, "Architecture search"):
- `once`: one search on a subject split of EVERY subject; a LOSO run of its export tests on subjects
  the search has seen: its results say `search: once (test subjects seen)`.
- `nested`: one search per LOSO fold without the fold's test subject; `per_fold.py` trains each fold
  with its own architecture, so no test subject influenced the architecture it is tested with
  (`search: nested`). The `top<i>.py` of a nested search rank on the mean over folds and therefore
  say `once (test subjects seen)` too.

Run: `python launch.py --config=configs/search.py` (arguments: `smoke`, `mode=once|nested`,
`order=1|2`, `mixing=normalized|softmax`, a training preset; e.g. `:order=2,mode=nested,smoke`).
`order=2` costs about 5x more per architecture step on a CPU.
"""

import ml_collections

from rcn_jax import config as config_lib


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  # fm 16, P 5: the width the presets train at (configs/rcn_*.py); the space holds all seven of them,
  # conv5_pool's 28x28 branch included, which at fm 32 would take the search past 10 minutes on 2 cores.
  return config_lib.make_search_config(features=16, pool_size=5, arg=arg)

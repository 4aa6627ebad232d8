"""Bilevel architecture search over the paper's module-integration space (Sec. IV-C-4, Fig. 6).

The supernet mixes a standard and a wide stem, a plain and a shortcut recurrent layer (four
states), and at every node the attention gate (none, or a map from the input, the stem output or
1-3 hops back). Network weights train by SGD with momentum (the `train` section) on training
subjects, architecture weights by Adam (the `search` section) on validation subjects held out from
them, never a test subject. Outputs in the workdir: `architecture_weights.{json,csv,png}`,
`architecture_weights_history.png`, `search.json` and `architectures/top<i>.py`, configs that
`launch.py` trains directly (`python launch.py --config=<workdir>/architectures/top1.py`).

Run: `python launch.py --config=configs/search.py` (arguments: `smoke`, `mode=once|nested`,
`order=1|2`, `mixing=normalized|softmax`, a training preset; e.g. `:order=2,mode=nested,smoke`).
The default (once, first order) takes about 6 minutes on a 2-core CPU; `order=2` costs about 5x
more per architecture step there.
"""

import ml_collections

from configs import base

OPTIONS = {"mode": "once", "order": 1, "mixing": "normalized"}
# The weight steps' learning rate unless a training preset is named: the LOSO presets' 5e-4
# (official) and 1e-4 (paper) train the shared weights too little in a 30-epoch search.
SEARCH_LEARNING_RATE = 5e-3


def get_config(arg: str | None = None):
  training, smoke, options = base.parse_arg(arg, **OPTIONS)
  config = base.make_config(preset="supernet", features=32, pool_size=5, arg=arg, options=OPTIONS)
  if training == "default":
    config.train.learning_rate = SEARCH_LEARNING_RATE

  config.search = ml_collections.ConfigDict()
  config.search.mode = options["mode"]  # `once` (one held-out subject split) or `nested` (per LOSO fold).
  config.search.order = options["order"]  # 1: alternating first-order; 2: unrolled second-order.
  config.search.mixing = options["mixing"]  # `normalized` (Eq. 8) or `softmax` (DARTS).
  config.search.stems = ("standard", "wide")  # Candidate stems (equal output sizes).
  config.search.layers = ("recurrent", "shortcut")  # Plain and shortcut recurrent layer.
  config.search.steps = 3  # 3x3 applications per layer: the paper's four states.
  config.search.max_hops = 3  # Gates reach back at most this many nodes (and always to input, stem).
  config.search.gate_output = True  # The pooled layer output is a node too (RCN-A/RCN-P's gate).
  config.search.val_fraction = 0.25  # Share of the training subjects, per dataset, for validation.
  config.search.epochs = 30
  config.search.warmup_epochs = 5  # Weight steps only: an untrained network's alpha gradient is noise.
  config.search.arch_learning_rate = 1e-2  # Adam on alphas (a few hundred steps, not DARTS' thousands).
  config.search.arch_b1 = 0.5  # DARTS' Adam betas.
  config.search.arch_b2 = 0.999
  config.search.arch_weight_decay = 1e-3
  config.search.top_k = 3  # Architectures exported as configs (the paper discusses its top three).
  # Gated nodes per exported architecture: the paper's three each place exactly one attention
  # unit, and the search decides where and from where (-1 as max: no upper bound).
  config.search.min_gates = 1
  config.search.max_gates = 1

  if smoke:
    config.model.features = 8
    config.data.resolution = 30
    config.search.epochs = 2
    config.search.warmup_epochs = 1
  return config

"""Bilevel architecture search over the paper's module-integration space (Sec. IV-C-4, Fig. 6).

The supernet mixes a standard and a wide stem, a plain and a shortcut recurrent layer (four
states), and at every node the attention gate (none, or a map from the input, the stem output or
1-3 hops back). Network weights train by SGD with momentum (`train` section) on training subjects,
architecture weights by Adam on validation subjects held out from them (`search` section).
Outputs in the workdir: `architecture_weights.{json,csv,png}`, `architecture_weights_history.png`,
`search.json` and `architectures/top<i>.py`, configs that `launch.py` trains directly.

Run: `python launch.py --config=configs/search.py` (arguments: `smoke`, `mode=once|nested`,
`order=1|2`, `mixing=normalized|softmax`, a training preset; e.g. `:order=2,mode=nested,smoke`).
"""

import ml_collections

from configs import base

OPTIONS = {"mode": "once", "order": 1, "mixing": "normalized"}


def get_config(arg: str | None = None):
  _, smoke, options = base.parse_arg(arg, **OPTIONS)
  config = base.make_config(preset="supernet", features=32, pool_size=5, arg=arg, options=OPTIONS)
  # The weight steps of the search: the default training preset's optimiser with a larger learning
  # rate, so that the few search epochs train the shared weights far enough to compare candidates.
  config.train.learning_rate = 5e-3

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
  config.search.arch_learning_rate = 3e-2  # Adam on alphas (few hundred steps, unlike DARTS' 3e-4).
  config.search.arch_b1 = 0.5  # DARTS' Adam betas.
  config.search.arch_b2 = 0.999
  config.search.arch_weight_decay = 1e-3
  config.search.top_k = 3  # Architectures exported as configs (the paper discusses its top three).
  config.search.max_gates = 1  # Gated nodes per exported architecture (-1: any); the paper's have one.

  if smoke:
    config.model.features = 8
    config.data.resolution = 30
    config.search.epochs = 2
    config.search.warmup_epochs = 1
  return config

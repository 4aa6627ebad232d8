"""Bilevel architecture search over the paper's module-integration space (Sec. III-C.4, Fig. 6).

The supernet mixes every stem of the presets (standard, wide, wide_pooled, conv5_pool), the module
of each unfolded state of the recurrent layer (plain or shortcut; optionally the wide expansion in
that conv, `search.ops`; the last state may be skipped, so 2 or 3 unfoldings) and, at every node,
the attention gate (none, or a map from the input, the stem output or 1-3 hops back). Every paper
preset (RCN, RCN-A/S/W/C/F/P) is a member of this space. Network weights train by SGD with momentum
(the `train` section) on training subjects, architecture weights by Adam (the `search` section) on
validation subjects held out from them. Outputs in the workdir: `architecture_weights.{json,csv,png}`,
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

Architecture optimiser (DARTS: Adam lr 3e-4, betas (0.5, 0.999), weight decay 1e-3, one architecture
step per weight step over ~19.5k steps, i.e. up to ~6 logit units of drift). The default search
makes 125 architecture steps (25 epochs after warm-up x 5 batches of 64 on the built-in data): at
3e-4 the alphas would not move; at 1e-2 an alpha falls from 1 to the floor in ~100 steps and the
ranking saturates. 3e-3 bounds the drift to ~0.4 around the initial 1.0 (ratios up to ~2.2
between candidates, no candidate at the floor), keeps DARTS' betas and decay, and alternates as the paper does (one
architecture step, then one weight step, per training batch, after a weight-only warm-up). Eq. 8's
alphas stay at or above `alpha_floor` so no decision dies (search_bilevel.make_arch_optimizer).

Run: `python launch.py --config=configs/search.py` (arguments: `smoke`, `mode=once|nested`,
`order=1|2`, `mixing=normalized|softmax`, a training preset; e.g. `:order=2,mode=nested,smoke`).
`order=2` costs about 5x more per architecture step on a CPU.
"""

import ml_collections

from configs import base

OPTIONS = {"mode": "once", "order": 1, "mixing": "normalized"}
# The weight steps' learning rate unless a training preset is named: the LOSO presets' 5e-4
# (official) and 1e-4 (paper) train the shared weights too little in a 30-epoch search.
SEARCH_LEARNING_RATE = 5e-3


def get_config(arg: str | None = None):
  training, smoke, options = base.parse_arg(arg, **OPTIONS)
  # fm 16, P 5: the width the presets train at (configs/rcn_*.py); the space holds all seven of them,
  # conv5_pool's 28x28 branch included, which at fm 32 would take the search past 10 minutes on 2 cores.
  config = base.make_config(preset="supernet", features=16, pool_size=5, arg=arg, options=OPTIONS)
  if training == "default":
    config.train.learning_rate = SEARCH_LEARNING_RATE

  config.search = ml_collections.ConfigDict()
  config.search.mode = options["mode"]  # `once` (one held-out subject split) or `nested` (per LOSO fold).
  config.search.order = options["order"]  # 1: alternating first-order; 2: unrolled second-order.
  config.search.mixing = options["mixing"]  # `normalized` (Eq. 8) or `softmax` (DARTS).
  config.search.stems = ("standard", "wide", "wide_pooled", "conv5_pool")  # Candidate stems.
  # Candidate modules of every unfolded state; add "recurrent_wide", "shortcut_wide" for the wide
  # expansion inside the unfolded convs (the paper allows it; none of its presets uses it).
  config.search.ops = ("recurrent", "shortcut")
  config.search.steps = 3  # The most 3x3 applications per layer: the paper's four states.
  config.search.min_steps = 2  # States beyond this may be skipped (RCN, RCN-A, RCN-W unfold twice).
  config.search.max_hops = 3  # Gates reach back at most this many nodes (and always to input, stem).
  config.search.gate_output = True  # The pooled layer output is a node too (RCN-A/RCN-P's gate).
  config.search.val_fraction = 0.25  # Share of the training subjects, per dataset, for validation.
  config.search.epochs = 30
  config.search.warmup_epochs = 5  # Weight steps only: an untrained network's alpha gradient is noise.
  config.search.arch_learning_rate = 3e-3  # Adam on alphas: see the docstring against DARTS' 3e-4.
  config.search.arch_b1 = 0.5  # DARTS' Adam betas.
  config.search.arch_b2 = 0.999
  config.search.arch_weight_decay = 1e-3  # DARTS'.
  config.search.alpha_floor = 1e-2  # Eq. 8's alphas stay >= this (initial value 1): no dead decision.
  config.search.top_k = 3  # Architectures exported as configs (the paper discusses its top three).
  # Optional bounds on the gated nodes of an exported architecture (a constrained argmax); by default
  # none: "no attention" and several gates are exportable (-1 as max: no upper bound).
  config.search.min_gates = 0
  config.search.max_gates = -1

  if smoke:
    config.model.features = 8
    config.data.resolution = 30
    config.search.epochs = 2
    config.search.warmup_epochs = 1
  return config

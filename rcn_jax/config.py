"""Run configs: the shared sections of every model, the training presets, the depth study and the search.

`configs/<model>.py` (what `launch.py --config=` loads) call these with their paper Table V
architecture; `rcn_jax.studies` builds its runs from them directly, so the studies work from an
installed package. The config argument (`--config=configs/rcn_f.py:ARG`) is a comma-separated list
of tokens:
- a training preset: `paper`, `reference`, or none for the default (see `TRAINING_PRESETS`);
- `smoke`: a run of under a minute (4 folds, 2 epochs, one training step per compiled call, which
  compiles faster) to check that everything works;
- `key=value` tokens that a config declares (`depth=3` for the depth study, `mode=nested` for the
  search).
"""

from __future__ import annotations

from collections.abc import Mapping

import ml_collections

from rcn_jax import errors
from rcn_jax.models import comparison

# Training presets: the paper (Sec. V-A) and the official release's script, plus the quick default.
TRAINING_PRESETS: dict[str, dict[str, object]] = {
    # The official release's optimiser (SGD momentum 0.9, lr 5e-4 constant as its StepLR is never
    # stepped, no weight decay, batch 64, fixed epochs, the last epoch's model tested) for 8
    # epochs, so that the full 68-fold protocol of rcn_f on the built-in data takes about 7
    # minutes of training on the 2-core CPU (0.73 s per fold-epoch with both cores free, plus
    # about 25 s of compilation). Use `reference` or `paper` for real experiments.
    "default": dict(learning_rate=5e-4, momentum=0.9, weight_decay=0.0, batch_size=64,
                    num_epochs=8, loss_threshold=0.0),
    # The official script exactly: its default of 100 epochs.
    "reference": dict(learning_rate=5e-4, momentum=0.9, weight_decay=0.0, batch_size=64,
                      num_epochs=100, loss_threshold=0.0),
    # The paper (Sec. V-A): lr 1e-4, weight decay 5e-4, stop once the training loss is below 0.5,
    # at most 500 epochs. The batch size is not stated; 64 as in the official code.
    "paper": dict(learning_rate=1e-4, momentum=0.9, weight_decay=5e-4, batch_size=64,
                  num_epochs=500, loss_threshold=0.5),
    # The Table V comparison models' own recipes (`COMPARISON_RECIPES`); any model may name them.
    # STSTNet's published script: Adam lr 5e-5, batch 256 in index order, 800 epochs, last epoch.
    "ststnet": dict(optimizer="adam", learning_rate=5e-5, momentum=0.0, weight_decay=0.0, batch_size=256,
                    num_epochs=800, loss_threshold=0.0, shuffle=False),
    # OFF-ApexNet (Gan et al. 2019), as we read its paper (not re-checked here): Adam lr 1e-4 for
    # 3000 epochs, last epoch; the batch: 256, as STSTNet (same group, same 28x28 input).
    "off_apexnet": dict(optimizer="adam", learning_rate=1e-4, momentum=0.0, weight_decay=0.0, batch_size=256,
                        num_epochs=3000, loss_threshold=0.0, shuffle=True),
    # Dual-Inception (Zhou et al. 2019), its authors' released script: Adam lr 1e-4, batch 3,
    # shuffled, 40 epochs. The script keeps the epoch of least validation loss on the test
    # subject's own database; here, as for every Table V row, the last epoch is tested.
    "dual_inception": dict(optimizer="adam", learning_rate=1e-4, momentum=0.0, weight_decay=0.0, batch_size=3,
                           num_epochs=40, loss_threshold=0.0, shuffle=True),
}

SMOKE_FOLDS = 4
SMOKE_EPOCHS = 2

# The depth study's Models 1-4 (paper Sec. III, Fig. 1): `depth=N` picks model preset `depth_N`.
DEPTH_OPTIONS = {"depth": 1}
DEPTHS = (1, 2, 3, 4)

SEARCH_OPTIONS = {"mode": "once", "order": 1, "mixing": "normalized"}
# The search's weight steps' learning rate unless a training preset is named: the LOSO presets'
# 5e-4 (official) and 1e-4 (paper) train the shared weights too little in a 30-epoch search.
SEARCH_LEARNING_RATE = 5e-3


def parse_arg(arg: str | None, **options: object) -> tuple[str, bool, dict[str, object]]:
  """Splits a config argument into (training preset, smoke, options).

  Args:
    arg: the text after `:` in `--config=FILE:ARG`, or None.
    **options: the `key=value` options the config accepts, with their defaults (their type
      converts the given text).

  Returns:
    The preset name, whether `smoke` was given, and the options with given values applied.
  """
  preset, smoke, values = "default", False, dict(options)
  for token in filter(None, (t.strip() for t in (arg or "").split(","))):
    key, has_value, text = token.partition("=")
    if has_value:
      if key not in options:
        raise errors.UserError(f"config argument {token!r}: unknown option {key!r}; "
                               f"this config accepts {sorted(options) or 'no options'}")
      values[key] = type(options[key])(text)
    elif token == "smoke":
      smoke = True
    elif token in TRAINING_PRESETS and token != "default":
      if preset != "default":
        raise errors.UserError(f"config argument {arg!r} names two training presets")
      preset = token
    else:
      raise errors.UserError(f"config argument token {token!r} is not one of "
                             f"{sorted(set(TRAINING_PRESETS) - {'default'}) + ['smoke']} or key=value")
  return preset, smoke, values


def make_config(*, preset: str, features: int, pool_size: int, arg: str | None,
                options: Mapping[str, object] | None = None, steps_per_call: int = 0) -> ml_collections.ConfigDict:
  """The full run config of a model preset.

  Args:
    preset: a model preset of `rcn_jax.models.PRESETS`, or a searched architecture
      (`searched:stem=...`, see `rcn_jax.models.create_model`).
    features: feature maps (paper Table V).
    pool_size: adaptive-pool output size P (paper Table V).
    arg: the config argument (see the module docstring).
    options: the `key=value` options the calling config accepts, with defaults (it reads their
      values with `parse_arg` itself).
    steps_per_call: the model's `parallel.steps_per_call` (`smoke` sets 1).

  Returns:
    The config.
  """
  training, smoke, _ = parse_arg(arg, **(options or {}))
  config = ml_collections.ConfigDict()

  config.model = ml_collections.ConfigDict()
  config.model.preset = preset  # rcn, rcn_a, rcn_s, rcn_w, rcn_c, rcn_f, rcn_p, depth_1..depth_4.
  config.model.features = features  # Feature maps fm of every layer.
  config.model.pool_size = pool_size  # P: the head pools to P x P.
  config.model.dropout_rate = 0.5
  config.model.reference_quirks = False  # Official-code quirks (parity and imported weights only).
  config.model.pytorch_bn = True  # PyTorch's unbiased running variance, as the official training.
  config.model.steps = ml_collections.FieldReference(None, field_type=int)  # None: the layer's default.
  config.model.input_order = "rgb"  # Channel order the model reads: rgb (u, v, strain) or bgr (strain, v, u).
  config.model.input_scale = 1.0  # Multiplies the [0, 1] input (255.0: raw 8-bit values, as OpenCV reads a PNG).

  config.data = ml_collections.ConfigDict()
  config.data.name = "synthetic"  # `synthetic` (built in) or `megc2019` (built by data_prep).
  config.data.data_dir = ml_collections.FieldReference(None, field_type=str)  # None: $RCN_JAX_DATA_DIR or ~/.cache/rcn_jax.
  config.data.flow_backend = "tvl1"  # Which flow build (or import's --name) of `megc2019` to read.
  # Network input is resolution x resolution x 3; None: an imported dataset's own image size
  # (data_prep.import_flowmaps), 60 for built and synthetic maps. Runs record the resolved value.
  config.data.resolution = ml_collections.FieldReference(None, field_type=int)
  config.data.datasets = ("casme2", "smic", "samm")  # Any subset: partial composites, single datasets.

  config.protocol = ml_collections.ConfigDict()
  config.protocol.name = "loso"  # `loso` (leave one subject out) or `lodo` (leave one dataset out).
  config.protocol.max_folds = 0  # Train only the first n folds (0: all); for smoke runs.

  config.train = ml_collections.ConfigDict()
  config.train.preset = training
  config.train.optimizer = "sgd"  # sgd (momentum) or adam (PyTorch's defaults); weight decay coupled as PyTorch's.
  config.train.shuffle = True  # A fresh sample order every epoch; False: index order (no shuffling).
  config.train.update(TRAINING_PRESETS[training])
  config.seeds = (0,)  # Every fold is trained once per seed; results report each seed and mean/std.

  # Imported initial weights (official PyTorch state dicts through the model's importer); with
  # train.num_epochs=0 a run evaluates them unchanged (`rcn_jax.engine.initial`).
  config.init = ml_collections.ConfigDict()
  config.init.weights = ml_collections.FieldReference(None, field_type=str)  # One file for every fold.
  config.init.per_fold = ml_collections.FieldReference(None, field_type=str)  # A folder of <subject>.npz/.pth.

  config.parallel = ml_collections.ConfigDict()
  config.parallel.strategy = "auto"  # auto, vmap (accelerators), shard_map or loop (CPU).
  config.parallel.models_per_call = 0  # Models per device and call (0: auto; CPU 1, vmap: the largest block that fits).
  config.parallel.steps_per_call = steps_per_call  # Training steps per compiled call (0: the whole epoch, fastest).

  config.checkpoint = ml_collections.ConfigDict()
  config.checkpoint.every_epochs = 1
  config.checkpoint.max_to_keep = 2

  config.report = ml_collections.ConfigDict()
  config.report.bootstrap_resamples = 1000  # Subject-level bootstrap of the pooled metrics.
  config.report.confidence = 0.95

  if smoke:
    config.protocol.max_folds = SMOKE_FOLDS
    config.train.num_epochs = SMOKE_EPOCHS
    config.parallel.steps_per_call = 1
    config.report.bootstrap_resamples = 100
  return config


# Table V's comparison models: training preset (their recipe unless the argument names another),
# input convention and training steps per compiled call; their input side and standard width are
# the model's own (`rcn_jax.models.comparison.MODELS`). ResNet18 and DenseNet121 are the RCN
# paper's own baselines, trained from scratch on its flow maps: the RCN authors' training script
# (`reference`), [0, 1] u, v, strain as the RCNs.
# Steps per call: the whole epoch unrolled (0) runs fastest; DenseNet121's 7-step epoch compiles
# for about 7 minutes on 2 cores (one step per call compiles in 1.5 but trains 44 % slower: 7.3
# against 5.1 s per fold-epoch, hours more at full scale). Dual-Inception's batches of 3 make
# 147-step epochs, too many to unroll: 4 steps per call run as fast as 16 and compile in half the
# time (7.6 s per fold-epoch; one step per call: 11.1).
COMPARISON_RECIPES: dict[str, dict[str, object]] = {
    "ststnet": dict(training="ststnet", input_order="bgr", input_scale=255.0, steps_per_call=0),
    "off_apexnet": dict(training="off_apexnet", input_order="rgb", input_scale=1.0, steps_per_call=0),
    "dual_inception": dict(training="dual_inception", input_order="rgb", input_scale=1.0, steps_per_call=4),
    "resnet18": dict(training="reference", input_order="rgb", input_scale=1.0, steps_per_call=0),
    "densenet121": dict(training="reference", input_order="rgb", input_scale=1.0, steps_per_call=0),
}


def make_comparison_config(*, preset: str, arg: str | None) -> ml_collections.ConfigDict:
  """The config of a Table V comparison model: its authors' recipe, input side and convention.

  Args:
    preset: a key of `COMPARISON_RECIPES` (`ststnet`, `off_apexnet`, `dual_inception`, `resnet18`,
      `densenet121`).
    arg: the config argument; without a training preset the model's own recipe is used.

  Returns:
    `make_config`'s config with `model.features` the model's standard width (ResNet18's first
    stage, DenseNet121's growth rate; unused by the others), `model.pool_size` 1 (unused),
    `data.resolution`, `model.input_order` / `input_scale` and `parallel.steps_per_call` the
    model's.
  """
  if preset not in COMPARISON_RECIPES:
    raise errors.UserError(f"model {preset!r}: expected one of {sorted(COMPARISON_RECIPES)}")
  recipe = COMPARISON_RECIPES[preset]
  training, _, _ = parse_arg(arg)
  if training == "default":
    arg = ",".join(filter(None, [str(recipe["training"]), arg]))
  model = comparison.MODELS[preset]
  config = make_config(preset=preset, features=model.features or comparison.FIXED_WIDTH_FEATURES, pool_size=1, arg=arg,
                       steps_per_call=int(recipe["steps_per_call"]))
  config.data.resolution = model.resolution
  config.model.input_order = recipe["input_order"]
  config.model.input_scale = recipe["input_scale"]
  return config


def make_depth_config(*, features: int, pool_size: int, arg: str | None) -> ml_collections.ConfigDict:
  """The config of the depth study's Model `depth` (option `depth=1..4` of `arg`, default 1).

  Model 1 is one convolution; Models 2-4 stack 1-3 recurrent layers on the conv stem (paper Sec. III,
  Fig. 1): model presets `depth_1` .. `depth_4`.
  """
  depth = parse_arg(arg, **DEPTH_OPTIONS)[2]["depth"]
  if depth not in DEPTHS:
    raise errors.UserError(f"config argument depth={depth}: the depth study has Models 1-4")
  return make_config(preset=f"depth_{depth}", features=features, pool_size=pool_size, arg=arg,
                     options=DEPTH_OPTIONS)


def make_search_config(*, features: int, pool_size: int, arg: str | None) -> ml_collections.ConfigDict:
  """The config of a bilevel architecture search over the module-integration space (Sec. III-C.4).

  The supernet mixes every stem of the presets (standard, wide, wide_pooled, conv5_pool), the
  module of each unfolded state of the recurrent layer (plain or shortcut; optionally the wide
  expansion in that conv, `search.ops`; the last state may be skipped, so 2 or 3 unfoldings) and,
  at every node, the attention gate (none, or a map from the input, the stem output or 1-3 hops
  back). Every paper preset (RCN, RCN-A/S/W/C/F/P) is a member of this space. Network weights
  train by SGD with momentum (the `train` section) on training subjects, architecture weights by
  Adam (the `search` section) on validation subjects held out from them.

  Architecture optimiser (DARTS: Adam lr 3e-4, betas (0.5, 0.999), weight decay 1e-3, one
  architecture step per weight step over ~19.5k steps, i.e. up to ~6 logit units of drift). The
  default search makes 125 architecture steps (25 epochs after warm-up x 5 batches of 64 on the
  built-in data): at 3e-4 the alphas would not move; at 1e-2 an alpha falls from 1 to the floor in
  ~100 steps and the ranking saturates. 3e-3 bounds the drift to ~0.4 around the initial 1.0
  (ratios up to ~2.2 between candidates, no candidate at the floor), keeps DARTS' betas and decay,
  and alternates as the paper does (one architecture step, then one weight step, per training
  batch, after a weight-only warm-up). Eq. 8's alphas stay at or above `alpha_floor` so no
  decision dies (`rcn_jax.search.bilevel.make_arch_optimizer`).

  Args:
    features: fm of the supernet.
    pool_size: P.
    arg: the config argument: `smoke`, a training preset and the options of `SEARCH_OPTIONS`
      (`mode=once|nested`, `order=1|2`, `mixing=normalized|softmax`).

  Returns:
    The config: `make_config`'s sections (model preset `supernet`) plus `search`.
  """
  training, smoke, options = parse_arg(arg, **SEARCH_OPTIONS)
  config = make_config(preset="supernet", features=features, pool_size=pool_size, arg=arg,
                       options=SEARCH_OPTIONS)
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

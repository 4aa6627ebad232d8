"""Shared config of every model: data, LOSO protocol, training presets, parallelism, reporting.

Each `configs/<model>.py` calls `make_config` with its Table V architecture. The config argument
(`--config=configs/rcn_f.py:ARG`) is a comma-separated list of tokens:
- a training preset: `paper`, `reference`, or none for the default (see `TRAINING_PRESETS`);
- `smoke`: a run of under a minute (4 folds, 2 epochs, one training step per compiled call, which
  compiles faster) to check that everything works;
- `key=value` tokens that a model file declares (`configs/depth.py:depth=3`).
"""

from __future__ import annotations

from collections.abc import Mapping

import ml_collections

from rcn_jax import errors

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
}

SMOKE_FOLDS = 4
SMOKE_EPOCHS = 2


def parse_arg(arg: str | None, **options: object) -> tuple[str, bool, dict[str, object]]:
  """Splits a config argument into (training preset, smoke, model options).

  Args:
    arg: the text after `:` in `--config=FILE:ARG`, or None.
    **options: the `key=value` options the model file accepts, with their defaults (their type
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
                options: Mapping[str, object] | None = None) -> ml_collections.ConfigDict:
  """The full run config of a model preset.

  Args:
    preset: a model preset of `rcn_jax.models.PRESETS`.
    features: feature maps (paper Table V).
    pool_size: adaptive-pool output size P (paper Table V).
    arg: the config argument (see the module docstring).
    options: the `key=value` options the model file accepts, with defaults (it reads their values
      with `parse_arg` itself).

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

  config.data = ml_collections.ConfigDict()
  config.data.name = "synthetic"  # `synthetic` (built in) or `megc2019` (built by data_prep).
  config.data.data_dir = ml_collections.FieldReference(None, field_type=str)  # None: $RCN_JAX_DATA_DIR or ~/.cache/rcn_jax.
  config.data.flow_backend = "tvl1"  # Which flow build of `megc2019` to read.
  config.data.resolution = 60  # Network input is resolution x resolution x 3.
  config.data.datasets = ("casme2", "smic", "samm")  # Any subset: partial composites, single datasets.

  config.protocol = ml_collections.ConfigDict()
  config.protocol.name = "loso"  # `loso` (leave one subject out) or `lodo` (leave one dataset out).
  config.protocol.max_folds = 0  # Train only the first n folds (0: all); for smoke runs.

  config.train = ml_collections.ConfigDict()
  config.train.preset = training
  config.train.update(TRAINING_PRESETS[training])
  config.seeds = (0,)  # Every fold is trained once per seed; results report each seed and mean/std.

  config.parallel = ml_collections.ConfigDict()
  config.parallel.strategy = "auto"  # auto, vmap (accelerators), shard_map or loop (CPU).
  config.parallel.models_per_call = 0  # Models per device and call (0: auto; CPU 1, vmap: the largest block that fits).
  config.parallel.steps_per_call = 0  # Training steps per compiled call (0: the whole epoch, fastest).
  # CPU block strategies: the stem as matmuls over its input windows, formed once (where they fit).
  # Off: on the 2-core CPU it measured no faster than the convolutions, for 1.4 GB more memory.
  config.parallel.stem_windows = False

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

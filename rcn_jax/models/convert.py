"""Converts official PyTorch RCN weights into a saved rcn-jax model.

  python -m rcn_jax.models.convert --preset=rcn_a --features=16 --pool_size=5 \
      --input=RCN_A.pth --output=DIR

`--input` is a `.npz` of the state_dict's arrays (or a `.pth` when torch is installed); the output
directory is read back with `rcn_jax.models.saved.load_model`.
"""

from collections.abc import Sequence

from absl import app, flags

from rcn_jax import errors
from rcn_jax.models import factory, saved, torch_import

_PRESET = flags.DEFINE_enum("preset", None, sorted(factory.PRESETS) + ["ststnet"],
                            "rcn-jax preset of the weights (ststnet: published STSTNet state dicts).")
_FEATURES = flags.DEFINE_integer("features", 16, "Feature maps (fm).")
_POOL_SIZE = flags.DEFINE_integer("pool_size", 5, "Adaptive pool size (P).")
_NUM_CLASSES = flags.DEFINE_integer("num_classes", 3, "Classes.")
_QUIRKS = flags.DEFINE_bool("reference_quirks", True, "Reproduce the official forward pass.")
_INPUT = flags.DEFINE_string("input", None, "The official state_dict (.npz or .pth).")
_OUTPUT = flags.DEFINE_string("output", None, "Directory of the saved rcn-jax model.")


def main(argv: Sequence[str]) -> int:
  del argv
  return errors.run_main(_convert, verbose=flags.FLAGS.verbosity >= 1)


def _convert() -> None:
  model, variables = torch_import.from_torch_state_dict(
      _PRESET.value, torch_import.read_state_dict(_INPUT.value), features=_FEATURES.value,
      pool_size=_POOL_SIZE.value, num_classes=_NUM_CLASSES.value,
      reference_quirks=_QUIRKS.value)
  saved.save_model(_OUTPUT.value, variables, preset=_PRESET.value, features=_FEATURES.value,
                   pool_size=_POOL_SIZE.value, num_classes=model.num_classes,
                   reference_quirks=_QUIRKS.value)
  print(f"saved {_PRESET.value} to {_OUTPUT.value}")


if __name__ == "__main__":
  flags.mark_flags_as_required(["preset", "input", "output"])
  app.run(main)

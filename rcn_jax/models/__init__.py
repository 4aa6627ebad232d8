"""The RCN model family as pure `flax.linen` modules, and the importer of official PyTorch weights."""

from rcn_jax.models.rcn import PRESETS, RCN, create_model, validate_architecture
from rcn_jax.models.supernet import Architecture, SearchSpace, Supernet
from rcn_jax.models.torch_import import from_torch_state_dict

__all__ = ["PRESETS", "RCN", "Architecture", "SearchSpace", "Supernet", "create_model",
           "from_torch_state_dict", "validate_architecture"]

"""The RCN model family as pure `flax.linen` modules, the factory of its presets, the search space
and its supernet, and the importer of official PyTorch weights."""

from rcn_jax.models.factory import PRESETS, create_model
from rcn_jax.models.rcn import RCN, validate_architecture
from rcn_jax.models.search_space import Architecture, SearchSpace
from rcn_jax.models.supernet import Supernet
from rcn_jax.models.torch_import import from_torch_state_dict, read_state_dict

__all__ = ["PRESETS", "RCN", "Architecture", "SearchSpace", "Supernet", "create_model",
           "from_torch_state_dict", "read_state_dict", "validate_architecture"]

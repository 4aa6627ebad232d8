"""The `megc2019` TFDS builder: the MEGC2019 composite as flow maps, one config per flow backend."""

from data_prep.megc2019.megc2019_dataset_builder import Megc2019

__all__ = ["Megc2019"]

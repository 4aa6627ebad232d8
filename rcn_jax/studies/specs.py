"""What a study sweeps: one run (`RunSpec`) and the values each scale of the studies takes (`SCALES`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from rcn_jax import sample_list


@dataclasses.dataclass(frozen=True)
class RunSpec:
  """One LOSO run of a sweep.

  Attributes:
    model: a model preset (`rcn`, `rcn_a`, ..., `depth_4`); its config file gives the rest.
    features: fm.
    pool_size: P.
    resolution: the flow-map side in px.
    datasets: the (partial) composite.
    magnified: the data is motion magnified.
    seeds: the run seeds.
  """
  model: str
  features: int
  pool_size: int
  resolution: int
  datasets: tuple[str, ...] = sample_list.DATASETS
  magnified: bool = False
  seeds: tuple[int, ...] = (0,)

  @property
  def name(self) -> str:
    parts = [self.model, f"fm{self.features}", f"p{self.pool_size}", f"r{self.resolution}"]
    if set(self.datasets) != set(sample_list.DATASETS):
      parts.append("+".join(self.datasets))
    if self.magnified:
      parts.append("mm")
    if self.seeds != (0,):
      parts.append("s" + "-".join(map(str, self.seeds)))
    return "_".join(parts)


@dataclasses.dataclass(frozen=True)
class Scale:
  """The values each study sweeps, and config overrides every run of the scale gets."""
  name: str
  base: tuple[int, int, int]  # fm, P, resolution of the paper's basic setup
  resolutions: tuple[int, ...]
  block_resolutions: tuple[int, ...]
  pool_sizes: tuple[int, ...]
  features: tuple[int, ...]
  table2_pools: tuple[int, ...]
  partial_blocks: tuple[tuple[int, int], ...]
  time_blocks: tuple[tuple[int, int], ...]
  time_resolutions: tuple[int, ...]
  cam_resolutions: tuple[int, ...]
  depth_models: tuple[str, ...]
  variant_models: tuple[str, ...]
  sweep_models: tuple[str, ...]  # pool, features (Fig. 9), partial
  table2_models: tuple[str, ...]
  comparison: tuple[tuple[str, int, int], ...]  # model, fm, P
  comparison_seeds: tuple[int, ...]
  overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  comparison_overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  search_seeds: tuple[int, ...] = (0, 1, 2)  # one `once` search per seed (the search study)
  search_top_k: int = 3  # exported and retrained per search; the random baseline draws seeds x top_k
  search_train_seeds: tuple[int, ...] = (0, 1, 2)  # LOSO training seeds of every retrained pick
  search_overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # on the search config (rcn_jax.config.make_search_config)
  # The table5 study: RCN rows (model, fm, P; empty: `comparison`), comparison rows (Table V row,
  # model preset, model.features, resolution) and overrides of every table5 run.
  table5_rcn: tuple[tuple[str, int, int], ...] = ()
  table5_models: tuple[tuple[str, str, int, int], ...] = (
      ("ststnet", "ststnet", 16, 28), ("off_apexnet", "off_apexnet", 16, 28),
      ("dual_inception", "dual_inception", 16, 28), ("resnet18", "resnet18", 64, 60),
      ("densenet121", "densenet121", 32, 60))
  table5_overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)


FIVE = ("rcn", "rcn_a", "rcn_s", "rcn_w", "rcn_f")
SCALES = {
    "full": Scale(
        name="full", base=(16, 5, 60), resolutions=(20, 40, 60, 80, 100, 150, 200, 250, 300),
        block_resolutions=(60, 100), pool_sizes=(1, 3, 5, 7, 9), features=(16, 32, 64),
        table2_pools=(5, 7), partial_blocks=((16, 5), (64, 7)), time_blocks=((16, 5), (64, 9)),
        time_resolutions=(60, 100, 200, 300), cam_resolutions=(40, 80, 150, 250),
        depth_models=("depth_1", "depth_2", "depth_3", "depth_4"), variant_models=FIVE, sweep_models=FIVE,
        table2_models=("rcn", "rcn_a", "rcn_s", "rcn_w", "rcn_p", "rcn_c", "rcn_f"),
        comparison=(("rcn_a", 64, 7), ("rcn_s", 16, 5), ("rcn_w", 32, 7), ("rcn_f", 32, 5)),
        comparison_seeds=(0, 1, 2)),
    "tiny": Scale(
        name="tiny", base=(4, 2, 20), resolutions=(20, 24), block_resolutions=(20,), pool_sizes=(1, 2),
        features=(4, 8), table2_pools=(2,), partial_blocks=((4, 2),), time_blocks=((4, 2),),
        time_resolutions=(20, 24), cam_resolutions=(20, 24), depth_models=("depth_1", "depth_2"),
        variant_models=("rcn", "rcn_w"), sweep_models=("rcn",), table2_models=("rcn",),
        comparison=(("rcn", 4, 2), ("rcn_w", 4, 2)), comparison_seeds=(0, 1),
        overrides={"train.num_epochs": 1, "train.batch_size": 16, "train.learning_rate": 0.05,
                   "protocol.max_folds": 4, "parallel.steps_per_call": 1, "parallel.models_per_call": 1,
                   "report.bootstrap_resamples": 0},
        comparison_overrides={"protocol.max_folds": 2},
        search_seeds=(0, 1), search_top_k=1, search_train_seeds=(0,),
        search_overrides={"search.epochs": 2, "search.warmup_epochs": 1, "train.batch_size": 16,
                          "search.stems": ("standard", "conv5_pool"), "search.steps": 2, "search.min_steps": 1,
                          "search.max_hops": 1, "search.gate_output": False},
        # Every Table V row at full depth; ResNet18 and DenseNet121 at width 4 (DenseNet121 takes
        # 29 px and more).
        table5_rcn=(("rcn_a", 4, 2), ("rcn_s", 4, 2), ("rcn_w", 4, 2), ("rcn_f", 4, 2)),
        table5_models=(("ststnet", "ststnet", 16, 28), ("off_apexnet", "off_apexnet", 16, 28),
                       ("dual_inception", "dual_inception", 16, 28), ("resnet18", "resnet18", 4, 20),
                       ("densenet121", "densenet121", 4, 32)),
        table5_overrides={"protocol.max_folds": 2, "report.bootstrap_resamples": 20}),
}

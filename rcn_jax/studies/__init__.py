"""The paper's parameter studies, one command each: sweeps of LOSO runs, PNG plots, Markdown tables.

  python -m rcn_jax.studies --study=NAME [--workdir=DIR] [--scale=full|tiny] [--data=synthetic|megc2019]

| study | paper | sweep (full scale) |
|---|---|---|
| `depth` | Fig. 1, Fig. 2 | Models 1-4 x resolutions 20..300; CAMs of one sample (models x 40/80/150/250 px) |
| `resolution` | Fig. 7 | RCN, RCN-A, RCN-S, RCN-W, RCN-F x resolutions 20..300 |
| `pool` | Fig. 8 | the five models x pool sizes 1..9 at 60 and 100 px |
| `features` | Fig. 9, Table II | five models x fm 16/32/64 at 60 and 100 px; seven models x fm x pool 5/7 at 60 px |
| `magnification` | Table III | the five models without and with motion magnification at 60 and 100 px |
| `partial` | Table IV | the five models on SMIC-CASME II, CASME II-SAMM, SMIC-SAMM, two settings |
| `comparison` | Table V | RCN-A/S/W/F at their Table V settings, several seeds: overall and per-dataset UAR/UF1 |
| `time` | Table VI | the five models x 60/100/200/300 px x two settings: training and test time |
| `table5` | Table V | RCN-A/S/W/F and STSTNet, OFF-ApexNet, Dual-Inception, ResNet18, DenseNet121 by their recipes (`--seeds N`), beside the published rows: table5.md/.csv/.png |
| `search` | Sec. III-C.4 | 3 search seeds (top-3 each) and 9 random architectures of the same space, each retrained under LOSO with 3 seeds: UAR/UF1, search cost in device-seconds and FLOPs |

Every run is the config of its model preset (`rcn_jax.config.make_config`, what `configs/<model>.py`
gives) with overrides, trained by `rcn_jax.train.train_and_evaluate` in `<workdir>/runs/<run name>/`
(`--workdir` defaults to `runs/studies`): an interrupted study resumes
(each run from its last epoch checkpoint) and studies sharing a workdir share their runs (the
basic RCN at 60 px is in five studies). Outputs: `<workdir>/<study>.md` (tables in the paper's
layout, top two per column in bold), `<workdir>/<study>*.png` and `<workdir>/<study>.json`.
`--scale=tiny` runs every study in a few CPU-minutes on built-in frames (a handful of synthetic
subjects, 1 epoch, 4 folds, fm 4): a check of the machinery, not a result. With `--distributed` or
`--coordinator_address/--num_processes/--process_id` (as for `launch.py`, docs/distributed.md) every
process trains each run together over all their devices and process 0 writes the outputs.
"""

# One job per module: `specs` (runs, scales), `sources` (data sources), `runner` (run configs,
# training), `tables` (results into tables, outputs), `definitions` (the studies), `cli` (command line).

from rcn_jax.studies.cli import main
from rcn_jax.studies.definitions import STUDIES, run_study
from rcn_jax.studies.runner import Runner, make_run_config
from rcn_jax.studies.sources import DataSource, FrameData, FrameSample, NamedData, tiny_frame_data
from rcn_jax.studies.specs import SCALES, RunSpec, Scale
from rcn_jax.studies.tables import Outputs, format_duration, run_hours, score

__all__ = ["DataSource", "FrameData", "FrameSample", "NamedData", "Outputs", "Runner", "RunSpec", "SCALES",
           "STUDIES", "Scale", "format_duration", "main", "make_run_config", "run_hours", "run_study", "score",
           "tiny_frame_data"]

"""Schemas of the experiment trackers (``conf/logger/``): types only, values in the YAML.

``cfg.logger`` maps a tracker name to its settings; each file in ``conf/logger/`` adds one
entry, so ``logger=[csv,tensorboard]`` turns on several and a misspelt key fails loudly.
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import MISSING


@dataclass
class CSVLoggerConf:
    log_steps: bool = MISSING
    every_n_steps: int = MISSING
    hparams: bool = MISSING


@dataclass
class TensorBoardConf:
    log_dir: str = MISSING
    log_steps: bool = MISSING
    every_n_steps: int = MISSING
    hparams: bool = MISSING


@dataclass
class MLflowConf:
    tracking_uri: str = MISSING
    experiment_name: str = MISSING
    run_name: str = MISSING
    tags: dict[str, str] = MISSING
    log_steps: bool = MISSING
    every_n_steps: int = MISSING
    log_artifacts: bool = MISSING
    log_checkpoint: bool = MISSING


SCHEMAS = {"logger": {"csv": CSVLoggerConf, "tensorboard": TensorBoardConf, "mlflow": MLflowConf}}

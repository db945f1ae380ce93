"""Experiment trackers: opt-in callbacks chosen by the ``logger`` config group.

``cfg.logger`` maps a tracker name to its settings (``conf/logger/*.yaml``,
schemas in :mod:`runner.schema.logger`)::

    runner logger=tensorboard            # one tracker
    runner logger=[csv,tensorboard]      # several
    runner logger=many                   # csv + tensorboard + mlflow

:func:`build_loggers` turns that mapping into :class:`runner.callbacks.Callback`
objects (only on the main process of a data-parallel run); the training loop
calls them like any other callback.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from runner.callbacks import Callback
from runner.errors import ConfigError
from runner.tracking.base import RunContext, run_context

# name -> "module:Class" (imported only when the tracker is enabled)
LOGGERS: dict[str, str] = {
    "csv": "runner.tracking.csv_logger:CSVLogger",
    "tensorboard": "runner.tracking.tensorboard_logger:TensorBoardLogger",
    "mlflow": "runner.tracking.mlflow_logger:MLflowLogger",
}
PRESETS = ("none", "many")  # files of conf/logger/ that are not a single tracker

__all__ = ["LOGGERS", "RunContext", "build_loggers", "run_context"]


def build_loggers(cfg: DictConfig, run_dir: Path) -> list[Callback]:
    """The trackers enabled in ``cfg.logger`` for the run in ``run_dir``.

    Returns an empty list when no tracker is enabled, and on every process but
    rank 0 of a data-parallel run (only rank 0 writes the run directory).
    Raises :class:`ConfigError` for an unknown tracker name or a missing package.
    """
    from runner.distributed import is_main_process

    node = OmegaConf.select(cfg, "logger")
    ctx = run_context(Path(run_dir))
    _check_choice(ctx, node)
    if not node or not is_main_process():
        return []
    unknown = sorted(set(node) - set(LOGGERS))
    if unknown:
        raise ConfigError(
            f"unknown logger(s) {unknown} in cfg.logger; valid trackers: "
            f"{', '.join(LOGGERS)} (e.g. logger=[csv,tensorboard] or logger=many)"
        )
    return [
        _load(name)(settings, cfg, ctx) for name, settings in node.items() if settings is not None
    ]


def _load(name: str) -> Any:
    module_name, cls = LOGGERS[name].split(":")
    return getattr(importlib.import_module(module_name), cls)


def _check_choice(ctx: RunContext, node: Any) -> None:
    """``logger=wandb`` with no such file composes silently to nothing: say so."""
    choice = ctx.logger_choice
    if choice and not node and choice not in PRESETS:
        raise ConfigError(
            f"logger={choice}: there is no conf/logger/{choice}.yaml; valid choices: "
            f"{', '.join([*PRESETS, *LOGGERS])}"
        )

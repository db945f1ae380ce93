"""Typed schemas of every config group, one module per group of ``conf/``.

Each YAML file in ``conf/<group>/`` names its schema in its defaults list
(``- /schema/<group>/<name>@_here_``), so Hydra merges the user's YAML onto a typed,
closed dataclass: a misspelt key, a wrong type or a value outside a :class:`Choice`
fails while the config is composed, with the key's full name, before any work starts.
The schemas hold types only (every field ``MISSING``); the values live in the YAML files
(:mod:`runner.schema.base`). Ranges and checks across keys: :mod:`runner.validate`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from runner.schema.base import SCHEMAS, Choice, choice, register, register_group
from runner.schema.trainer import TrainerConf

__all__ = ["SCHEMAS", "Choice", "RunnerConf", "choice", "register", "register_all"]

# one module per config group; each defines SCHEMAS = {group: {name: dataclass}}
GROUP_MODULES = ("trainer", "optimizer", "scheduler", "model", "dataset", "diagnostics", "logger")


@dataclass
class RunnerConf:
    """The top level (``conf/config.yaml``): one node per group, plus the run's own keys."""

    defaults: list[Any] = field(default_factory=list)
    model: Any = MISSING
    dataset: Any = MISSING
    optimizer: Any = MISSING
    scheduler: Any = MISSING
    trainer: TrainerConf = field(default_factory=TrainerConf)
    diagnostics: Any = None  # optional group: absent = no diagnostics
    logger: Any = None  # logger=none leaves it empty: no tracker
    run_dir: str = MISSING
    task_name: str = MISSING
    notes: str = MISSING


def register_all() -> None:
    """Store every group's schemas (``schema/<group>/<name>``) and the root schema."""
    for module_name in GROUP_MODULES:
        module = importlib.import_module(f"runner.schema.{module_name}")
        for group, members in module.SCHEMAS.items():
            register_group(group, members)
    ConfigStore.instance().store(name="runner_schema", node=RunnerConf)

"""Schemas of the ``scheduler`` group (``conf/scheduler/``): types only, values in the YAML.

``name``, ``interval``, ``warmup_*`` and ``monitor`` belong to the runner; the other keys go
to the torch scheduler named by ``_target_`` (:func:`runner.build.build_scheduler`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import MISSING

from runner.schema.base import choice
from runner.schema.trainer import Mode, Monitor

Interval = choice("Interval", ("epoch", "step"))
Anneal = choice("Anneal", ("cos", "linear"))
CyclicMode = choice("CyclicMode", ("triangular", "triangular2", "exp_range"))


@dataclass
class SchedulerConf:
    name: str = MISSING
    _target_: Any = MISSING  # null for a constant lr
    _partial_: bool = MISSING
    interval: Interval = MISSING
    warmup_epochs: float = MISSING
    warmup_start_factor: float = MISSING


@dataclass
class StepLRConf(SchedulerConf):
    step_size: int = MISSING
    gamma: float = MISSING


@dataclass
class MultiStepLRConf(SchedulerConf):
    milestones: list[int] = MISSING
    gamma: float = MISSING


@dataclass
class CosineConf(SchedulerConf):
    T_max: int = MISSING
    eta_min: float = MISSING


@dataclass
class OneCycleConf(SchedulerConf):
    max_lr: float = MISSING
    pct_start: float = MISSING
    anneal_strategy: Anneal = MISSING
    div_factor: float = MISSING
    final_div_factor: float = MISSING
    cycle_momentum: bool = MISSING


@dataclass
class LinearConf(SchedulerConf):
    start_factor: float = MISSING
    end_factor: float = MISSING
    total_iters: int = MISSING


@dataclass
class CyclicConf(SchedulerConf):
    base_lr: float = MISSING
    max_lr: float = MISSING
    step_size_up: int = MISSING
    mode: CyclicMode = MISSING
    cycle_momentum: bool = MISSING


@dataclass
class PlateauConf(SchedulerConf):
    monitor: Monitor = MISSING
    mode: Mode = MISSING
    factor: float = MISSING
    patience: int = MISSING
    threshold: float = MISSING
    min_lr: float = MISSING


SCHEMAS = {
    "scheduler": {
        "none": SchedulerConf,
        "step": StepLRConf,
        "multistep": MultiStepLRConf,
        "cosine": CosineConf,
        "onecycle": OneCycleConf,
        "linear": LinearConf,
        "cyclic": CyclicConf,
        "plateau": PlateauConf,
    }
}

"""Schemas of the ``optimizer`` group (``conf/optimizer/``): types only, values in the YAML.

``_target_`` names the torch optimizer class; it is built as a ``_partial_`` over the
model's parameters by :func:`runner.build.build_optimizer`.
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import MISSING


@dataclass
class OptimizerConf:
    _target_: str = MISSING
    _partial_: bool = MISSING
    lr: float = MISSING
    weight_decay: float = MISSING


@dataclass
class SGDConf(OptimizerConf):
    momentum: float = MISSING
    nesterov: bool = MISSING
    dampening: float = MISSING


@dataclass
class AdamConf(OptimizerConf):
    betas: list[float] = MISSING
    eps: float = MISSING
    amsgrad: bool = MISSING


@dataclass
class RMSpropConf(OptimizerConf):
    alpha: float = MISSING
    eps: float = MISSING
    momentum: float = MISSING
    centered: bool = MISSING


@dataclass
class MuonSGDConf(OptimizerConf):
    momentum: float = MISSING
    nesterov: bool = MISSING
    bias_lr: float = MISSING
    head_lr: float = MISSING
    sgd_momentum: float = MISSING
    ns_steps: int = MISSING


SCHEMAS = {
    "optimizer": {
        "sgd": SGDConf,
        "adam": AdamConf,
        "adamw": AdamConf,
        "rmsprop": RMSpropConf,
        "muon_sgd": MuonSGDConf,
    }
}

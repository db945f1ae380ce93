"""Schemas of the ``model`` group (``conf/model/``): types only, values in the YAML.

``family`` names the model's entry in the model registry (:mod:`runner.zoo`), which builds
it; ``name`` labels the run. The other keys are the family's keyword arguments;
``num_classes``, ``in_channels``, ``image_size`` (and ``vocab_size``/``pad_idx`` for text)
come from the dataset. The allowed names come from the layer registries of
:mod:`runner.models`, so a new activation is a choice here at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import MISSING

from runner.models.custom_cnn import POOLING
from runner.models.layers import ACTIVATIONS, ATTENTIONS, INITS
from runner.models.resnet import STEMS
from runner.models.text import CELLS, NONLINEARITIES, POOLINGS
from runner.schema.base import choice

Activation = choice("Activation", ACTIVATIONS)
Init = choice("Init", INITS)
Padding = choice("Padding", ("same", "valid"))
Pooling = choice("Pooling", tuple(POOLING))
Attention = choice("Attention", ATTENTIONS)
Stem = choice("Stem", STEMS)
Cell = choice("Cell", tuple(CELLS))
SequencePooling = choice("SequencePooling", POOLINGS)
Nonlinearity = choice("Nonlinearity", NONLINEARITIES)
Preprocessing = choice("Preprocessing", ("weights", "dataset"))


@dataclass
class ModelConf:
    family: str = MISSING  # the model registry's entry (runner.zoo)
    name: str = MISSING  # label of the run (directory name, report, sweep legends)


@dataclass
class PretrainedConf(ModelConf):
    """Keys of the image families that start from weights and fine-tune
    (conf/common/pretrained.yaml; runner.hub.weights, runner.finetune)."""

    weights: str | None = MISSING  # null | a weights name | a run directory | a weights file
    freeze: Any = MISSING  # none | backbone | N (the first N feature stages); checked by validate
    preprocessing: Preprocessing = MISSING


@dataclass
class CustomCNNConf(PretrainedConf):
    filters: list[int] = MISSING
    kernel_size: int = MISSING
    padding: Padding = MISSING
    pooling: Pooling = MISSING
    batch_norm: bool = MISSING
    activation: Activation = MISSING
    fc_neurons: list[int] = MISSING
    dropout: float = MISSING
    init: Init = MISSING


@dataclass
class ResNetConf(PretrainedConf):
    depth: int = MISSING
    shortcut: bool = MISSING
    attention: Attention = MISSING
    se_reduction: int = MISSING
    activation: Activation = MISSING
    stem: Stem = MISSING
    zero_init_residual: bool = MISSING
    width: int = MISSING
    init: Init = MISSING


@dataclass
class RNNConf(ModelConf):
    cell: Cell = MISSING
    bidirectional: bool = MISSING
    embed_dim: int = MISSING
    hidden_size: int = MISSING
    num_layers: int = MISSING
    dropout: float = MISSING
    rnn_dropout: float = MISSING
    embed_dropout: float = MISSING
    pooling: SequencePooling = MISSING
    nonlinearity: Nonlinearity = MISSING
    init: Init = MISSING


@dataclass
class AirbenchConf(ModelConf):
    widths: list[int] = MISSING
    whiten_kernel: int = MISSING
    whiten_samples: int = MISSING
    whiten_eps: float = MISSING


@dataclass
class TorchvisionConf(PretrainedConf):
    arch: str = MISSING  # a classification model of torchvision.models (runner.hub.torchvision)
    input_size: int = MISSING


@dataclass
class TimmConf(PretrainedConf):
    arch: str = MISSING  # a timm model name (runner.hub.timm)
    input_size: int = MISSING


SCHEMAS = {
    "model": {
        "custom_cnn": CustomCNNConf,
        "resnet": ResNetConf,
        "rnn": RNNConf,
        "airbench": AirbenchConf,
        "torchvision": TorchvisionConf,
        "timm": TimmConf,
    }
}

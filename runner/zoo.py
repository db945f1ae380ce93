"""The model registry: a model family → its builder, config schema and feature stages.

A model config names its entry with ``family`` (``conf/model/*.yaml``); the builder
gets the config's other keys (``name`` aside) plus what the dataset supplies
(``num_classes``, ``in_channels``, ``image_size``; ``vocab_size``/``pad_idx`` for text),
filtered by its signature. Adding a model: the architecture in ``models/`` (plain
``nn.Module``), a schema dataclass and one :func:`register_model` call, and a YAML file in
``conf/model/`` (see README "Architecture").
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from runner.errors import ConfigError
from runner.registry import Registry, resolve

log = logging.getLogger(__name__)

Stages = Callable[[Any], list[tuple[str, Any]]]
KEYS_NOT_PASSED = ("family", "name")  # the registry's and the run's, not the builder's
# fine-tuning keys (runner.finetune, runner.hub.weights): passed only to builders that take them
FINETUNE_KEYS = ("weights", "freeze", "preprocessing")


@dataclass(frozen=True)
class ModelEntry:
    """One model family.

    builder: a callable returning an ``nn.Module`` (or ``"module:attr"``).
    schema: the dataclass typing the family's config keys.
    kind: image | text — the inputs the family takes.
    stages: ``model → [(name, module), ...]``, the feature stages from input to output
        (feature maps, Grad-CAM, ``model.freeze``); ``None`` = the model's own
        ``feature_stages()`` if it has one, else none.
    named_weights: ``params → NamedWeights``, the pretrained weights the family knows by
        the name in ``params["weights"]`` and their preprocessing
        (:mod:`runner.hub.weights`); ``None`` = only run directories and files.
    check: ``params → None``, refuses a config before any work (an unknown architecture).
    data_init: ``(model, data) → str``, sets weights from the training data (a
        :class:`runner.data.base.DataBundle`) once, when a run builds the model, before
        any pretrained or resumed weights are loaded; returns what it did, for the log.
    """

    family: str
    builder: Callable[..., Any] | str
    schema: type
    kind: str = "image"
    stages: Stages | None = None
    description: str = ""
    named_weights: Callable[[dict[str, Any]], Any] | None = None
    check: Callable[[dict[str, Any]], None] | None = None
    data_init: Callable[[Any, Any], str] | None = None

    def feature_stages(self, model: Any) -> list[tuple[str, Any]]:
        if self.stages is not None:
            return list(self.stages(model))
        own = getattr(model, "feature_stages", None)
        return list(own()) if callable(own) else []


MODELS: Registry[ModelEntry] = Registry("model family", "model.family")


def register_model(
    family: str,
    builder: Callable[..., Any] | str,
    schema: type,
    *,
    kind: str = "image",
    stages: Stages | None = None,
    description: str = "",
    preset: Any = None,
    named_weights: Callable[[dict[str, Any]], Any] | None = None,
    check: Callable[[dict[str, Any]], None] | None = None,
    data_init: Callable[[Any, Any], str] | None = None,
) -> ModelEntry:
    """Register a model family (and its schema as ``schema/model/<family>``).

    ``preset``: an instance of ``schema`` with every value set, stored as the config
    ``model/<family>`` so ``model=<family>`` works without a YAML file (tests, notebooks).
    """
    from hydra.core.config_store import ConfigStore

    from runner.schema import register

    entry = ModelEntry(
        family, builder, schema, kind, stages, description, named_weights, check, data_init
    )
    MODELS.register(family, entry)
    register("model", family, schema)
    if preset is not None:
        ConfigStore.instance().store(group="model", name=family, node=preset)
    return entry


def model_params(model_cfg: Mapping[str, Any] | DictConfig) -> tuple[ModelEntry, dict[str, Any]]:
    """The entry and the builder's keyword arguments of ``model_cfg``, checked against the
    family's schema (a stored config with unknown keys or wrong types is refused)."""
    from omegaconf.errors import OmegaConfBaseException

    node = model_cfg if isinstance(model_cfg, DictConfig) else OmegaConf.create(dict(model_cfg))
    entry = MODELS.get(node.get("family"))
    try:
        typed = OmegaConf.merge(OmegaConf.structured(entry.schema), node)
    except OmegaConfBaseException as err:
        raise ConfigError(f"model config does not fit family {entry.family!r}: {err}") from None
    missing = sorted(OmegaConf.missing_keys(typed))
    if missing:
        raise ConfigError(f"model config lacks {', '.join('model.' + k for k in missing)}")
    params = OmegaConf.to_container(typed, resolve=True, enum_to_str=True)
    return entry, {k: v for k, v in params.items() if k not in KEYS_NOT_PASSED}


def build_model(
    model_cfg: Mapping[str, Any] | DictConfig, data_kwargs: Mapping[str, Any], announce: bool = True
):
    """The model of ``model_cfg`` for data described by ``data_kwargs`` (``num_classes``...),
    with its architecture's own initialisation (``model.weights`` are loaded by
    :func:`runner.hub.weights.load_pretrained`); ``announce=False`` builds it without the log
    line (a variant for comparison, or a rebuild)."""
    entry, params = model_params(model_cfg)
    builder = resolve(entry.builder)
    tuning = {k: params.pop(k) for k in FINETUNE_KEYS if k in params}
    kwargs = {**_accepted(builder, dict(data_kwargs)), **params, **_accepted(builder, tuning)}
    if announce:
        log.info("model: %s (family %s) with %s", model_cfg.get("name"), entry.family, kwargs)
    try:
        return builder(**kwargs)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"model {model_cfg.get('name')!r}: {err}") from None


def feature_stages(family: str, model: Any) -> list[tuple[str, Any]]:
    """The feature stages of ``model`` (a member of ``family``), input to output."""
    return MODELS.get(family).feature_stages(model)


def init_from_data(family: str, model: Any, data: Any) -> None:
    """The family's data-init hook on ``model`` (nothing for families without one)."""
    hook = MODELS.get(family).data_init
    if hook is not None:
        log.info("model initialised from data: %s", hook(model, data))


def check_model(model_cfg: Mapping[str, Any] | DictConfig) -> None:
    """The family's own check of ``model_cfg`` (e.g. that ``model.arch`` exists), if any."""
    entry, params = model_params(model_cfg)
    if entry.check is not None:
        entry.check(params)


def _accepted(builder: Callable[..., Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    params = inspect.signature(builder).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return kwargs
    return {k: v for k, v in kwargs.items() if k in params}


def _register_builtins() -> None:
    from runner.hub import register_hub_families
    from runner.schema.model import AirbenchConf, CustomCNNConf, ResNetConf, RNNConf

    register_model(
        "custom_cnn",
        "runner.models.custom_cnn:CustomCNN",
        CustomCNNConf,
        description="N x [conv -> BN -> act -> pool] -> fc (SEEDS.md S1/S3/S4)",
    )
    register_model(
        "resnet",
        "runner.models.resnet:ResNet",
        ResNetConf,
        description="ResNet-18..152, Plain, SE and Mish variants in torchvision's layout",
        named_weights=_resnet_weights,
    )
    register_model(
        "rnn",
        "runner.models.text:RNNClassifier",
        RNNConf,
        kind="text",
        description="SimpleRNN / GRU / LSTM text classifiers, uni- or bidirectional",
    )
    register_model(
        "airbench",
        "runner.models.airbench:AirbenchNet",
        AirbenchConf,
        description="airbench94-style fast CIFAR-10 net: patch-whitening stem set from data",
        data_init=_init_whitening,
    )
    register_hub_families()


def _init_whitening(model: Any, data: Any) -> str:
    """airbench's first layer from the first ``model.whiten_samples`` training images,
    normalised as the loader will feed them."""
    import torch

    x = data.train.x[: model.whiten_samples].float().div_(255.0)
    channels = x.shape[1]
    mean = torch.tensor(data.mean or (0.0,) * channels).view(1, -1, 1, 1)
    std = torch.tensor(data.std or (1.0,) * channels).view(1, -1, 1, 1)
    model.init_whitening((x - mean) / std)
    return (
        f"patch-whitening layer ({model.whiten.kernel_size[0]}x{model.whiten.kernel_size[0]} "
        f"patches) from the first {len(x)} training images, eps {model.whiten_eps}"
    )


def _resnet_weights(params: dict[str, Any]) -> Any:
    """torchvision's ResNet weights for the ResNet family (same parameter names and shapes)."""
    from runner.hub.torchvision import resnet_weights

    return resnet_weights(params)


_register_builtins()

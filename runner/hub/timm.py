"""``model=timm model.arch=<name>``: timm's models (``pip install 'runner[hub]'``).

timm builds the network for the data's class count and channel count
(``timm.create_model(..., num_classes=, in_chans=)``). ``model.weights`` is a pretrained
tag of the architecture (``a1_in1k``; ``DEFAULT`` = timm's default tag; or the full
``resnet18.a1_in1k``), loaded by timm's own ``load_pretrained`` — from the Hugging Face
cache (``$HF_HOME/hub``, ``~/.cache/huggingface/hub`` by default), downloaded only when not
there; it drops the classifier for another class count and adapts the first convolution to
grey input itself. Feature stages: the model's ``feature_info`` (timm's own list).

Input size (``model.input_size``; 0 = auto): a model with a fixed input size (ViT) takes
its pretrained config's size; otherwise the weights' input size when the run follows the
weights' preprocessing, else the data's own size. Another size is resized on the device.
"""

from __future__ import annotations

import difflib
import logging
from functools import lru_cache
from typing import Any

from torch import nn

from runner.errors import ConfigError
from runner.hub.modules import (
    HubClassifier,
    data_side,
    probe_stages,
    resolve_modules,
    trunk_candidates,
)
from runner.hub.weights import (
    LoadReport,
    NamedWeights,
    WeightsPreprocessing,
    is_path,
    is_unset,
)

log = logging.getLogger(__name__)
INSTALL = "timm is not installed: pip install 'runner[hub]' (or pip install timm)"


def _timm() -> Any:
    try:
        import timm
    except ImportError:
        raise ConfigError(f"model=timm: {INSTALL}") from None
    return timm


@lru_cache(maxsize=1)
def model_names() -> tuple[str, ...]:
    return tuple(_timm().list_models())


def check(params: dict[str, Any]) -> None:
    """Refuse an unknown ``model.arch`` (naming close matches) or tag, before any work."""
    _known_arch(params["arch"])
    tag_of(params["arch"], params.get("weights"))


def _known_arch(arch: str) -> str:
    names = model_names()
    if arch in names:
        return arch
    close = difflib.get_close_matches(str(arch), names, n=4, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    tag = " (put a pretrained tag in model.weights)" if "." in str(arch) else ""
    raise ConfigError(
        f"unknown timm architecture model.arch={arch!r}{tag}{hint} "
        f"({len(names)} models: runner --list-models timm)"
    )


def tag_of(arch: str, weights: Any) -> str | None:
    """The pretrained tag ``model.weights`` names for ``arch``, or None (unset or a path)."""
    if is_unset(weights) or is_path(weights):
        return None
    timm = _timm()
    tags = [name.split(".", 1)[1] for name in timm.list_pretrained(f"{arch}.*")]
    text = str(weights)
    if text.startswith(f"{arch}."):
        text = text[len(arch) + 1 :]
    if not tags:
        raise ConfigError(f"model.weights={weights}: timm has no pretrained weights for {arch}")
    default = _pretrained_cfg(arch, None).get("tag") or tags[0]
    if text.upper() == "DEFAULT":
        return default
    if text in tags:
        return text
    raise ConfigError(
        f"model.weights={weights}: {arch}'s pretrained tags are {', '.join(tags)} (DEFAULT = "
        f"{default}), or give a run directory or weights file"
    )


def _pretrained_cfg(arch: str, tag: str | None) -> dict[str, Any]:
    from timm.models import get_pretrained_cfg

    found = get_pretrained_cfg(f"{arch}.{tag}" if tag else arch)
    return found.to_dict() if found is not None else {}


def preprocessing_of(arch: str, tag: str) -> WeightsPreprocessing:
    cfg = _pretrained_cfg(arch, tag)
    crop = int(cfg.get("input_size", (3, 224, 224))[-1])
    return WeightsPreprocessing(
        source=f"timm {arch}.{tag}",
        mean=tuple(float(v) for v in cfg.get("mean", (0.485, 0.456, 0.406))),
        std=tuple(float(v) for v in cfg.get("std", (0.229, 0.224, 0.225))),
        crop_size=crop,
        resize_size=int(round(crop / float(cfg.get("crop_pct") or 1.0))),
        interpolation=str(cfg.get("interpolation", "bilinear")),
    )


def resolve_input_size(
    arch: str, tag: str | None, preprocessing: str, requested: int, data_size: int
) -> int:
    cfg = _pretrained_cfg(arch, tag)
    native = int(cfg.get("input_size", (3, 224, 224))[-1])
    if cfg.get("fixed_input_size"):
        if requested and requested != native:
            raise ConfigError(f"model.input_size={requested}: {arch} takes {native} px only")
        return native
    if requested:
        return requested
    if tag is not None and preprocessing == "weights":
        return native
    minimum = cfg.get("min_input_size")
    return max(data_size, int(minimum[-1])) if minimum else data_size


def build(
    arch: str,
    num_classes: int,
    in_channels: int = 3,
    image_size: Any = (224, 224),
    weights: Any = None,
    preprocessing: str = "weights",
    input_size: int = 0,
) -> HubClassifier:
    """timm's ``arch`` (with the pretrained config of the tag in ``weights``) for the data."""
    timm = _timm()
    arch = _known_arch(arch)
    tag = tag_of(arch, weights)
    data_size, square = data_side(image_size)
    size = resolve_input_size(arch, tag, str(preprocessing), int(input_size), data_size)
    name = f"{arch}.{tag}" if tag else arch
    net = timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_channels)
    resize = size != data_size or not square
    if resize:
        log.info(
            "%s takes %d px: batches of %s px are resized on the device", arch, size, data_size
        )
    return HubClassifier(net, size, resize)


def stages(model: HubClassifier) -> list[tuple[str, nn.Module]]:
    """The modules of timm's ``feature_info`` (or, without one, the last block at each
    resolution, as for torchvision)."""
    if model.stage_names is None:
        info = getattr(model.net, "feature_info", None)
        names = [str(i["module"]) for i in info] if info else []
        if not names:
            net = model.net
            names = probe_stages(net, trunk_candidates(net), model.input_size)
        model.stage_names = [f"net.{name}" for name in names]
    return resolve_modules(model, model.stage_names)


def named_weights(params: dict[str, Any]) -> NamedWeights:
    arch = _known_arch(params["arch"])
    tag = tag_of(arch, params["weights"])
    label = f"{arch}.{tag}"

    def load(model: nn.Module, head: set[str]) -> LoadReport:
        return load_timm(model, label, head)

    return NamedWeights(label, preprocessing_of(arch, tag), load)


def load_timm(model: HubClassifier, label: str, head: set[str]) -> LoadReport:
    """timm's ``load_pretrained`` into ``model.net``: the Hugging Face cache or a download;
    one message naming the cache and how to fill it when neither works. ``head``: the
    classifier's keys (they start afresh when the class count differs from the weights')."""
    from timm.models import load_pretrained

    net = model.net
    in_chans = next(m.in_channels for m in net.modules() if isinstance(m, nn.Conv2d))
    cfg = dict(net.pretrained_cfg)
    try:
        load_pretrained(net, pretrained_cfg=cfg, num_classes=net.num_classes, in_chans=in_chans)
    except RuntimeError as err:
        if "state_dict" in str(err) or "size mismatch" in str(err):
            lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()][:4]
            raise ConfigError(
                f"model.weights=timm {label} does not fit the configured model: "
                f"{' '.join(lines)[:400]}"
            ) from None
        raise _offline(label, err) from None
    except Exception as err:  # offline with an empty cache (LocalEntryNotFoundError, OSError)
        raise _offline(label, err) from None
    fresh = sorted(head) if net.num_classes != cfg.get("num_classes") else []
    conv = [f"net.{c}.weight" for c in _as_tuple(cfg.get("first_conv"))] if in_chans != 3 else []
    loaded = len(model.state_dict()) - len(fresh)
    return LoadReport(f"timm {label}", loaded, reinitialised=fresh, adapted=conv)


def _as_tuple(value: Any) -> tuple[str, ...]:
    if not value:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def _offline(label: str, err: Exception) -> ConfigError:
    from huggingface_hub import constants

    repo = label if "/" in label else f"timm/{label}"
    cache = constants.HF_HUB_CACHE
    return ConfigError(
        f"model.weights: timm {label} are not in the Hugging Face cache ({cache}) and could "
        f"not be downloaded ({type(err).__name__}: {str(err)[:160]}). On a machine with "
        f"internet run `HF_HOME=<dir> python -c \"import timm; timm.create_model('{label}', "
        f'pretrained=True)"` (or `hf download {repo}`), then copy <dir>/hub/models--'
        f"{repo.replace('/', '--')} into {cache}/ or set HF_HOME=<dir> here."
    )

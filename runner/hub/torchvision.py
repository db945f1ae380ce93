"""``model=torchvision model.arch=<name>``: any classification model of torchvision.models.

The network is torchvision's own builder (``torchvision.models.get_model``) with
``num_classes`` of the data, so its classifier is the library's for that class count; a
grey (1-channel) dataset gets a 1-channel first convolution (pretrained RGB weights summed
over the channels when they are loaded). Auxiliary Inception heads are left out
(``aux_logits=False``): the loss sees one output.

Input size (``model.input_size``; 0 = auto): the weights' crop size when the run follows the
weights' preprocessing (``model.preprocessing=weights``), otherwise the data's own size,
raised to the smallest size the architecture takes (the weights' ``min_size``: 63 px for
AlexNet, 75 for Inception-v3, 224 for Swin and MaxViT); a ViT takes a fixed size — a
multiple of its patch without weights, the weights' size with them. A batch of another size
is resized on the device (:class:`runner.hub.modules.HubClassifier`).

Weights: ``model.weights=DEFAULT | IMAGENET1K_V1 | …`` (the arch's weights enum, or a full
name such as ``ResNet50_Weights.IMAGENET1K_V2``), through torchvision's own
``WeightsEnum.get_state_dict`` — the file is cached under ``$TORCH_HOME/hub/checkpoints``
(``~/.cache/torch`` by default) and downloaded only when it is not there.
"""

from __future__ import annotations

import difflib
import logging
import math
import re
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from torch import nn

from runner.errors import ConfigError
from runner.hub.modules import (
    HubClassifier,
    data_side,
    probe_stages,
    replace_input_conv,
    resolve_modules,
    trunk_candidates,
)
from runner.hub.weights import (
    LoadReport,
    NamedWeights,
    WeightsPreprocessing,
    fit_state_dict,
    is_path,
    is_unset,
)

log = logging.getLogger(__name__)

AUX_HEADS = ("aux1.", "aux2.", "AuxLogits.")  # in the weights, not in the model (aux_logits off)
FIXED_SIZE = {"maxvit_t": 224}  # partitions of 7 at /32: the weights' size and nothing else
PROBE_SIZE = 224  # px of the image that finds the feature stages


@lru_cache(maxsize=1)
def classification_models() -> tuple[str, ...]:
    """Every classification model of ``torchvision.models`` (``list_models``)."""
    import torchvision.models
    from torchvision.models import list_models

    return tuple(list_models(module=torchvision.models))


def check(params: dict[str, Any]) -> None:
    """Refuse an unknown ``model.arch`` (naming close matches) or weights name, before any work."""
    arch = _known_arch(params["arch"])
    weights_enum(arch, params.get("weights"))


def _known_arch(arch: str) -> str:
    names = classification_models()
    if arch in names:
        return arch
    close = difflib.get_close_matches(str(arch), names, n=4, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ConfigError(
        f"unknown torchvision architecture model.arch={arch!r}{hint} "
        f"({len(names)} classification models: runner --list-models torchvision)"
    )


def weights_enum(arch: str, name: Any) -> Any:
    """The torchvision weights ``name`` of ``arch`` (a member of its weights enum), or None
    when ``model.weights`` is unset or a path. Metadata only: nothing is downloaded."""
    if is_unset(name) or is_path(name):
        return None
    from torchvision.models import get_model_weights, get_weight

    enum = get_model_weights(arch)
    text = str(name)
    if "." in text:
        try:
            found = get_weight(text)
        except (ValueError, KeyError, AttributeError):
            found = None
        if found is not None and type(found) is enum:
            return found
        if found is not None:
            raise ConfigError(
                f"model.weights={text} are {type(found).__name__}, not {arch}'s ({enum.__name__})"
            )
    elif text.upper() in enum.__members__:
        return enum[text.upper()]
    raise ConfigError(
        f"model.weights={text}: {arch} has the weights {', '.join(enum.__members__)} "
        f"(DEFAULT = {enum.DEFAULT.name}), or give a run directory or weights file"
    )


def preprocessing_of(weights: Any) -> WeightsPreprocessing:
    """The evaluation transform of torchvision ``weights`` (its ``transforms()``)."""
    t = weights.transforms()
    return WeightsPreprocessing(
        source=f"torchvision {type(weights).__name__}.{weights.name}",
        mean=tuple(float(v) for v in t.mean),
        std=tuple(float(v) for v in t.std),
        crop_size=int(t.crop_size[0]),
        resize_size=int(t.resize_size[0]),
        interpolation=str(t.interpolation.value),
    )


# ------------------------------------------------------------------ building


def resolve_input_size(
    arch: str, weights: Any, preprocessing: str, requested: int, data_size: int
) -> int:
    """The side of the images the network takes (see the module docstring)."""
    from torchvision.models import get_model_weights

    patch = _vit_patch(arch)
    minimum = int(get_model_weights(arch).DEFAULT.meta["min_size"][0])
    if patch and weights is not None:
        fixed = int(weights.meta["min_size"][0])  # its position embeddings' grid
    else:
        fixed = FIXED_SIZE.get(arch, 0)
    if requested:
        if fixed and requested != fixed:
            raise ConfigError(f"model.input_size={requested}: {arch} takes {fixed} px only here")
        if patch and requested % patch:
            raise ConfigError(f"model.input_size={requested}: {arch} needs a multiple of {patch}")
        if requested < minimum and not patch:
            raise ConfigError(f"model.input_size={requested}: {arch} needs at least {minimum} px")
        return requested
    if fixed:
        return fixed
    if weights is not None and preprocessing == "weights":
        return preprocessing_of(weights).crop_size
    if patch:
        return max(patch, math.ceil(data_size / patch) * patch)
    return max(data_size, minimum)


def _vit_patch(arch: str) -> int:
    match = re.fullmatch(r"vit_\w+_(\d+)", arch)
    return int(match.group(1)) if match else 0


def structural_kwargs(arch: str, weights: Any, size: int, in_channels: int) -> dict[str, Any]:
    """Constructor arguments that shape the network beyond ``num_classes``."""
    if _vit_patch(arch):
        return {"image_size": size}
    if arch in ("googlenet", "inception_v3"):
        # the ported Google weights expect inputs in [-1, 1]: transform_input maps the
        # ImageNet-normalised batch there (what torchvision does when it loads them)
        return {
            "aux_logits": False,
            "transform_input": weights is not None and in_channels == 3,
            "init_weights": weights is None,
        }
    return {}


def build(
    arch: str,
    num_classes: int,
    in_channels: int = 3,
    image_size: Any = (224, 224),
    weights: Any = None,
    preprocessing: str = "weights",
    input_size: int = 0,
) -> HubClassifier:
    """torchvision's ``arch`` for ``num_classes`` classes and ``in_channels`` channels, taking
    images of ``image_size`` (the data's), with its own initialisation."""
    import torchvision.models

    arch = _known_arch(arch)
    found = weights_enum(arch, weights)
    data_size, square = data_side(image_size)
    size = resolve_input_size(arch, found, str(preprocessing), int(input_size), data_size)
    kwargs = structural_kwargs(arch, found, size, in_channels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # googlenet/inception init notices
        warnings.simplefilter("ignore", UserWarning)
        net = torchvision.models.get_model(arch, weights=None, num_classes=num_classes, **kwargs)
    if in_channels != 3:
        replace_input_conv(net, in_channels)
    resize = size != data_size or not square
    if resize:
        log.info(
            "%s takes %d px: batches of %s px are resized on the device", arch, size, data_size
        )
    return HubClassifier(net, size, resize)


def stages(model: HubClassifier) -> list[tuple[str, nn.Module]]:
    """The feature stages: the last block at each resolution of the network's trunk (one
    forward pass of a 224-pixel image finds them, so they do not depend on the data's size;
    ViT: the patch embedding and each encoder layer)."""
    if model.stage_names is None:
        net = model.net
        candidates = trunk_candidates(net)
        try:
            found = probe_stages(net, candidates, max(PROBE_SIZE, model.input_size))
        except Exception:  # noqa: BLE001 - a fixed-size network (ViT) takes its own size only
            found = probe_stages(net, candidates, model.input_size)
        model.stage_names = [f"net.{name}" for name in found]
    return resolve_modules(model, model.stage_names)


# ------------------------------------------------------------------ weights


def named_weights(params: dict[str, Any]) -> NamedWeights:
    arch = _known_arch(params["arch"])
    return _named(weights_enum(arch, params["weights"]), ignore=AUX_HEADS)


def resnet_weights(params: dict[str, Any]) -> NamedWeights:
    """torchvision's ``resnet<depth>`` weights for the runner's ResNet family (they fit its
    plain ReLU/Mish variants with ``stem=imagenet`` and ``width=64``; others are refused
    with the mismatching keys when loaded)."""
    arch = f"resnet{params['depth']}"
    if arch not in classification_models():
        raise ConfigError(f"model.weights: torchvision has no {arch} weights")
    return _named(weights_enum(arch, params["weights"]))


def _named(weights: Any, ignore: tuple[str, ...] = ()) -> NamedWeights:
    label = f"{type(weights).__name__}.{weights.name}"

    def load(model: nn.Module, head: set[str]) -> LoadReport:
        state = fetch(weights)
        return fit_state_dict(model, state, f"torchvision {label}", head, ignore)

    return NamedWeights(label, preprocessing_of(weights), load)


def cache_file(weights: Any) -> Path:
    """Where torchvision keeps ``weights``: ``$TORCH_HOME/hub/checkpoints/<file of its url>``."""
    from torch.hub import get_dir

    return Path(get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name


def fetch(weights: Any) -> dict[str, Any]:
    """The state dict of ``weights`` through torchvision's cached loader, or one message that
    names the cache file and how to fill it when it is neither cached nor downloadable."""
    label = f"{type(weights).__name__}.{weights.name}"
    path = cache_file(weights)
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except Exception as err:  # no network (URLError, OSError), a bad cached file ...
        reason = f"{type(err).__name__}: {str(err)[:160]}"
        if path.exists():
            raise ConfigError(
                f"model.weights: {path} (torchvision {label}) cannot be read ({reason}); delete "
                "it to download it again"
            ) from None
        raise ConfigError(
            f"model.weights: torchvision {label} are not in the cache ({path}) and could not "
            f"be downloaded ({reason}). On a machine with internet run "
            f'`TORCH_HOME=<dir> python -c "import torchvision; torchvision.models.get_weight('
            f"'{label}').get_state_dict()\"` (or download {weights.url}), then copy "
            f"<dir>/hub/checkpoints/{path.name} to {path.parent}/ or set TORCH_HOME=<dir> here."
        ) from None

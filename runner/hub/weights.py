"""``model.weights``: where a model's starting weights come from, and loading them.

The value is one of:

- unset (``null``): the architecture's own initialisation;
- a name the model family knows (:class:`NamedWeights`): a torchvision weights name
  (``DEFAULT``, ``IMAGENET1K_V1`` …, fetched through torchvision's own cached loader under
  ``$TORCH_HOME/hub/checkpoints``) or a timm pretrained tag (timm's loader, the Hugging Face
  cache); the runner's ResNet family knows torchvision's ResNet weights;
- a path: a runner run directory (its best checkpoint), a runner checkpoint, or a plain
  state-dict file (``.pt``/``.pth``, ``.safetensors``) — weights only, read by
  :func:`runner.checkpoint.read_weights`; nothing in it is instantiated.

Loading fits the weights to the configured model: the classifier keys whose shape follows
``num_classes`` start afresh when the class count differs, the first convolution's RGB
weights are summed for grey input (timm's ``adapt_input_conv``), and anything else that does
not fit is refused, naming the first mismatching keys.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from runner.errors import ConfigError

log = logging.getLogger(__name__)

UNSET = (None, "", "none", "null")
WEIGHT_FILE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors")
SHOWN_KEYS = 3  # mismatching keys named in an error


@dataclass(frozen=True)
class WeightsPreprocessing:
    """How the weights' own training fed images: ``(x / 255 - mean) / std`` per channel, at
    ``crop_size`` pixels (the evaluation transform resized the shorter side to
    ``resize_size`` first). ``source`` names the weights."""

    source: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_size: int
    resize_size: int
    interpolation: str = "bilinear"

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "mean": list(self.mean),
            "std": list(self.std),
            "crop_size": self.crop_size,
            "resize_size": self.resize_size,
            "interpolation": self.interpolation,
        }


@dataclass
class LoadReport:
    """What loading did: ``loaded`` tensors taken from ``source``; ``reinitialised`` keys (the
    classifier, for another class count) and ``adapted`` keys (the input convolution, for
    another channel count)."""

    source: str
    loaded: int
    reinitialised: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)

    def describe(self) -> str:
        parts = [f"{self.loaded} tensors from {self.source}"]
        if self.reinitialised:
            parts.append(f"new classifier: {', '.join(self.reinitialised)}")
        if self.adapted:
            parts.append(f"input convolution summed over RGB: {', '.join(self.adapted)}")
        return "; ".join(parts)


@dataclass(frozen=True)
class NamedWeights:
    """Pretrained weights a model family knows by name: a label, the weights' preprocessing
    (metadata only, nothing downloaded) and ``load(model, head) -> LoadReport`` (fetches
    them through the library's own cached loader; ``head``: :func:`head_keys`)."""

    label: str
    preprocessing: WeightsPreprocessing
    load: Callable[[nn.Module, set[str]], LoadReport]


# ------------------------------------------------------------------ the setting


def is_unset(value: Any) -> bool:
    return value is None or str(value).strip().lower() in UNSET


def is_path(value: Any) -> bool:
    """A path (a run directory or a weights file) rather than a name the family knows."""
    text = str(value)
    if "/" in text or text.startswith(("~", ".")) or text.endswith(WEIGHT_FILE_SUFFIXES):
        return True
    return Path(text).exists()  # a run directory named without a slash


def weights_path(value: Any) -> Path:
    path = Path(str(value)).expanduser()
    if not path.exists():
        raise ConfigError(
            f"model.weights={value}: no such run directory or weights file. Give a run "
            "directory, a checkpoint/state-dict file (.pt, .pth, .safetensors) or a weights "
            "name of the model family (runner --list-models shows them)."
        )
    return path


def named_weights(model_cfg: Mapping[str, Any]) -> NamedWeights | None:
    """The family's weights of that name (metadata only), or None when ``model.weights`` is
    unset or a path; a name the family does not know is a :class:`ConfigError`."""
    from runner import zoo

    value = model_cfg.get("weights")
    if is_unset(value) or is_path(value):
        return None
    entry, params = zoo.model_params(model_cfg)
    if entry.named_weights is None:
        raise ConfigError(
            f"model.weights={value}: the {entry.family} family has no named weights; give a "
            "run directory or a weights file"
        )
    return entry.named_weights(params)


def weights_preprocessing(model_cfg: Mapping[str, Any]) -> WeightsPreprocessing | None:
    """The preprocessing the weights of ``model.weights`` were trained with: a name's
    metadata, or the stored preprocessing of a runner run/checkpoint (None for plain files
    and unset weights)."""
    value = model_cfg.get("weights")
    if is_unset(value):
        return None
    named = named_weights(model_cfg)
    if named is not None:
        return named.preprocessing
    from runner.checkpoint import read_weights

    path = weights_path(value)
    _, stored, label = read_weights(path)
    if stored is None or stored.kind != "image":
        return None
    size = int(stored.image_size[0])
    return WeightsPreprocessing(label, tuple(stored.mean), tuple(stored.std), size, size)


# ------------------------------------------------------------------ loading


def load_pretrained(
    model: nn.Module, model_cfg: Mapping[str, Any], data_kwargs: Mapping[str, Any]
) -> LoadReport | None:
    """Load ``model.weights`` into ``model`` (built from ``model_cfg`` for ``data_kwargs``);
    None when the setting is unset."""
    value = model_cfg.get("weights")
    if is_unset(value):
        return None
    named = named_weights(model_cfg)
    if named is not None:
        report = named.load(model, head_keys(model_cfg, data_kwargs))
    else:
        from runner.checkpoint import read_weights

        state, _, label = read_weights(weights_path(value))
        report = fit_state_dict(model, state, label, head_keys(model_cfg, data_kwargs))
    log.info("model.weights: %s", report.describe())
    return report


def head_keys(model_cfg: Mapping[str, Any], data_kwargs: Mapping[str, Any]) -> set[str]:
    """The state-dict keys whose shape follows ``num_classes`` (the classifier): the model is
    built twice on the meta device (no memory, no initialisation cost), with one class more
    the second time, and the keys whose shapes differ are returned."""
    from runner import zoo

    n = int(data_kwargs["num_classes"])

    def shapes(device: str, classes: int) -> dict[str, torch.Size]:
        with torch.device(device):
            model = zoo.build_model(
                model_cfg, {**data_kwargs, "num_classes": classes}, announce=False
            )
        return {k: v.shape for k, v in model.state_dict().items()}

    try:
        a, b = shapes("meta", n), shapes("meta", n + 1)
    except (NotImplementedError, RuntimeError):  # a constructor that reads tensor values
        a, b = shapes("cpu", n), shapes("cpu", n + 1)
    return {k for k in a if k in b and a[k] != b[k]}


def fit_state_dict(
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    source: str,
    head: Iterable[str] = (),
    ignore: tuple[str, ...] = (),
) -> LoadReport:
    """Load ``state`` into ``model``, fitted as the module docstring says.

    head: keys that start afresh when their shape differs (the classifier). ignore: key
    prefixes of ``state`` the model does not have on purpose (torchvision's auxiliary
    Inception heads). Anything else missing, unexpected or of another shape is a
    :class:`ConfigError` naming the first such keys.
    """
    own = model.state_dict()
    state = align_prefix(dict(state), own)
    head = set(head)
    first_conv = next((k for k, v in own.items() if v.ndim == 4 and k.endswith("weight")), None)
    taken: dict[str, torch.Tensor] = {}
    report = LoadReport(source, 0)
    mismatched, missing = [], []
    for key, target in own.items():
        src = state.get(key)
        if src is None:
            if key in head:
                report.reinitialised.append(key)
            elif not key.endswith("num_batches_tracked"):
                missing.append(key)
            continue
        if src.shape == target.shape:
            taken[key] = src
        elif key in head:
            report.reinitialised.append(key)
        elif key == first_conv and _differs_in_channels(src, target):
            taken[key] = adapt_input_conv(src, int(target.shape[1]))
            report.adapted.append(key)
        else:
            mismatched.append(f"{key} (weights {list(src.shape)}, model {list(target.shape)})")
    unexpected = [k for k in state if k not in own and not k.startswith(ignore)]
    if mismatched or missing or unexpected:
        problems = [
            f"{what}: {', '.join(keys[:SHOWN_KEYS])}" + (" …" if len(keys) > SHOWN_KEYS else "")
            for what, keys in (
                ("shapes differ", mismatched),
                ("missing from the weights", missing),
                ("not in the model", unexpected),
            )
            if keys
        ]
        raise ConfigError(
            f"model.weights={source} does not fit the configured model "
            f"({len(mismatched)} keys of another shape, {len(missing)} missing, "
            f"{len(unexpected)} unexpected) — {'; '.join(problems)}. Use the architecture "
            "the weights were trained with (the same model=… and model.* settings)."
        )
    model.load_state_dict(taken, strict=False)
    report.loaded = len(taken)
    return report


def align_prefix(state: dict[str, torch.Tensor], own: Mapping[str, Any]) -> dict[str, Any]:
    """``state`` with its keys spelt as ``own``'s: DistributedDataParallel's ``module.``
    removed, the hub wrapper's ``net.`` added or removed."""
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    wrapped = bool(own) and all(k.startswith("net.") for k in own)
    in_state = bool(state) and all(k.startswith("net.") for k in state)
    if wrapped and not in_state:
        return {f"net.{k}": v for k, v in state.items()}
    if in_state and not wrapped:
        return {k[len("net.") :]: v for k, v in state.items()}
    return state


def _differs_in_channels(src: torch.Tensor, target: torch.Tensor) -> bool:
    return (
        src.ndim == 4
        and src.shape[0] == target.shape[0]
        and src.shape[2:] == target.shape[2:]
        and src.shape[1] == 3
    )


def adapt_input_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """RGB convolution weights for ``in_channels`` inputs, as timm does: summed over RGB for
    one channel (a grey image then gives the response of the same image in colour);
    otherwise RGB repeated and scaled by 3 / in_channels."""
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = math.ceil(in_channels / 3)
    return weight.repeat(1, repeats, 1, 1)[:, :in_channels] * (3 / in_channels)

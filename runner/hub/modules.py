"""What the hub families share: the input adapter around a library's network, the input
convolution for other channel counts, and finding a network's feature stages.

A torchvision or timm network is wrapped in :class:`HubClassifier` (its weights under
``net.``), which resizes a batch on the device when the architecture needs another input
size than the data has (``F.interpolate``, bilinear) — so predict and export, which feed
the run's own image size, get the same resize inside the model.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

# Root children of a network where its classifier begins (feature stages end before them).
HEAD_NAMES = frozenset(
    {"avgpool", "classifier", "fc", "heads", "head", "dropout", "pool", "norm", "permute"}
    | {"flatten", "global_pool", "fc_norm", "head_drop", "pre_logits"}
)
# Containers whose children are the network's blocks (torchvision's ``features``, ...).
TRUNKS = frozenset({"features", "layers", "trunk_output", "blocks", "encoder", "stages"})
INNER_SKIPPED = frozenset({"dropout", "ln", "norm"})  # inside a trunk: not a block


class HubClassifier(nn.Module):
    """A library network ``net`` that takes ``input_size`` × ``input_size`` images.

    resize: the data has another size, so every batch is resized (bilinear) first — the
    architectures with a minimum or a fixed input size (ViT, MaxViT, Swin, Inception) on
    small images such as 28×28 MNIST, or the weights' size for images of a fixed size.
    stage_names: the feature stages of ``net`` (``net.``-prefixed module names), found on
    first use and kept (deep copies keep them too).
    """

    def __init__(self, net: nn.Module, input_size: int, resize: bool) -> None:
        super().__init__()
        self.net = net
        self.input_size, self.resize = int(input_size), bool(resize)
        self.stage_names: list[str] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.resize:
            size = (self.input_size, self.input_size)
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return self.net(x)


def data_side(image_size: int | tuple[int, ...] | list[int]) -> tuple[int, bool]:
    """The longer side of the data's images and whether they are square."""
    if isinstance(image_size, int):
        return image_size, True
    sides = [int(s) for s in image_size]
    return max(sides), len(set(sides)) == 1


def replace_input_conv(net: nn.Module, in_channels: int) -> str:
    """Give ``net``'s first convolution ``in_channels`` inputs (a fresh layer of the same
    geometry); returns its name. The pretrained weights are adapted when they are loaded
    (:func:`runner.hub.weights.adapt_input_conv`)."""
    for name, module in net.named_modules():
        if isinstance(module, nn.Conv2d) and module.in_channels == 3 and module.groups == 1:
            conv = nn.Conv2d(
                in_channels,
                module.out_channels,
                module.kernel_size,
                stride=module.stride,
                padding=module.padding,
                dilation=module.dilation,
                bias=module.bias is not None,
                padding_mode=module.padding_mode,
            )
            parent_name, _, child = name.rpartition(".")
            parent = net.get_submodule(parent_name) if parent_name else net
            setattr(parent, child, conv)
            return name
    raise ValueError("found no 3-channel input convolution to adapt to other channel counts")


def trunk_candidates(net: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """The network's blocks, input to output: its children up to the classifier, with the
    children of trunk containers (``features``, ``layers``, ``encoder.layers`` ...)."""
    found: list[tuple[str, nn.Module]] = []
    for name, child in net.named_children():
        full = f"{prefix}{name}"
        if not prefix and name in HEAD_NAMES:
            break
        if prefix and name in INNER_SKIPPED and not isinstance(child, nn.Sequential):
            continue
        if name in TRUNKS and len(list(child.children())):
            found += trunk_candidates(child, f"{full}.")
        else:
            found.append((full, child))
    return found


@torch.no_grad()
def probe_stages(net: nn.Module, candidates: list[tuple[str, nn.Module]], size: int) -> list[str]:
    """Stage ends among ``candidates``: the last block at each spatial resolution (as timm's
    ``feature_info``), found by one forward pass of a ``size`` × ``size`` image; blocks with
    token outputs (ViT) are one stage each; groups without parameters are dropped."""
    shapes: dict[str, tuple[int, ...]] = {}
    handles = []
    for name, module in candidates:

        def hook(_m, _i, out, name=name):
            if isinstance(out, torch.Tensor):
                shapes[name] = tuple(out.shape)

        handles.append(module.register_forward_hook(hook))
    was_training = net.training
    param = next(net.parameters())
    channels = _input_channels(net)
    try:
        net.eval()
        net(torch.zeros(1, channels, size, size, device=param.device, dtype=param.dtype))
    finally:
        net.train(was_training)
        for h in handles:
            h.remove()
    groups: list[list[tuple[str, nn.Module]]] = []
    last_key: object = None
    for name, module in candidates:
        shape = shapes.get(name)
        key = shape[-2:] if shape is not None and len(shape) == 4 else object()
        if groups and key == last_key:
            groups[-1].append((name, module))
        else:
            groups.append([(name, module)])
        last_key = key
    return [g[-1][0] for g in groups if any(_has_params(m) for _, m in g)]


def _has_params(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def _input_channels(net: nn.Module) -> int:
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            return module.in_channels
    return 3


def resolve_modules(net: nn.Module, names: Iterable[str]) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of each name (``stages.0`` or timm's ``stages_0`` spelling)."""
    out = []
    for name in names:
        for spelling in (name, name.replace("_", ".")):
            try:
                out.append((name, net.get_submodule(spelling)))
                break
            except AttributeError:
                continue
    return out

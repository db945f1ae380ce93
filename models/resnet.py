"""One parameterised ResNet family: Plain, ResNet, SE-ResNet and Mish-ResNet (SEEDS.md S2/S3).

Depth is data (``depth=18`` → BasicBlock ×[2, 2, 2, 2]); the variants are values:
``shortcut=False`` is the "plain" net of He et al. (2016) — the same conv stacks
with no identity and no projection path; ``attention="se"`` puts a
squeeze-and-excitation module in every block (after the last BN, before the
add); ``activation`` replaces ReLU everywhere the net applies one, stem
included; ``stem`` picks the CIFAR (3×3 stride-1 conv, no max-pool) or ImageNet
(7×7 stride-2 conv + 3×3 max-pool) entry.

With ``attention="none"`` every parameter and buffer name and shape equals
torchvision's ``resnet18/34/50/101/152`` (``conv1``, ``bn1``, ``layer1.0.conv1``,
…, ``layer2.0.downsample.0``, ``fc``), so torchvision state dicts load with
``strict=True``. Activations hold no parameters, so they are separate modules
per use (``act1``, ``act2``, …) — forward hooks on them see one application each.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn

from runner.models.layers import (
    ACTIVATIONS,
    ATTENTIONS,
    INITS,
    get_activation,
    get_attention,
    init_weights,
)

STEMS = ("auto", "cifar", "imagenet")
# px: stem "auto" picks cifar when min(H, W) is smaller than this. The CIFAR stem keeps the
# full resolution into the first stage, which then costs 16x the ImageNet stem's (stride
# 2 + max-pool) at every size; below 64 px its first stage sees no more than the 56x56
# map of a 224-px ImageNet ResNet, so a small image never costs more than that standard
# model (ResNet-18: 1.1 GFLOPs at 32 px), while 64 px would already cost 4.4 GFLOPs
# (imagenet stem: 0.3; at 224 px: 3.6).
CIFAR_STEM_BELOW = 64


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """3×3 convolution, padding 1, no bias (a BatchNorm follows)."""
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """1×1 convolution, no bias (a BatchNorm follows)."""
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class ResidualBlock(nn.Module):
    """What every block shares: ``branch`` → (attention) → (+ shortcut) → activation.

    Subclasses set ``expansion`` (output channels = ``planes * expansion``) and
    ``last_bn`` (the name of the branch's last BatchNorm, zeroed by
    ``zero_init_residual``), build ``branch`` and ``act_out`` (the activation after
    the add), then call ``_add_shortcut_and_attention``. The shortcut is the
    identity, or a 1×1 conv + BN projection (``downsample``) when the shape
    changes; with ``shortcut=False`` neither exists and the block is a plain
    conv stack.
    """

    expansion: ClassVar[int] = 1
    last_bn: ClassVar[str] = ""

    def _add_shortcut_and_attention(
        self,
        in_channels: int,
        planes: int,
        stride: int,
        shortcut: bool,
        attention: str,
        se_reduction: int,
    ) -> None:
        """Called last by subclasses, so module order follows torchvision's."""
        out_channels = planes * self.expansion
        self.shortcut = shortcut
        self.downsample: nn.Module | None = None
        if shortcut and (stride != 1 or in_channels != out_channels):
            self.downsample = nn.Sequential(
                conv1x1(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels)
            )
        self.se = get_attention(attention, out_channels, reduction=se_reduction)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branch(x)
        if self.se is not None:
            out = self.se(out)
        if self.shortcut:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.act_out(out)


class BasicBlock(ResidualBlock):
    """Two 3×3 convs (ResNet-18/34): conv-BN-act-conv-BN."""

    expansion: ClassVar[int] = 1
    last_bn: ClassVar[str] = "bn2"

    def __init__(
        self,
        in_channels: int,
        planes: int,
        stride: int = 1,
        shortcut: bool = True,
        activation: str = "relu",
        attention: str = "none",
        se_reduction: int = 16,
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.act1 = get_activation(activation)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.act_out = get_activation(activation)
        self._add_shortcut_and_attention(
            in_channels, planes, stride, shortcut, attention, se_reduction
        )

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))


class Bottleneck(ResidualBlock):
    """1×1 reduce → 3×3 (stride here, as torchvision "v1.5") → 1×1 expand ×4 (ResNet-50+)."""

    expansion: ClassVar[int] = 4
    last_bn: ClassVar[str] = "bn3"

    def __init__(
        self,
        in_channels: int,
        planes: int,
        stride: int = 1,
        shortcut: bool = True,
        activation: str = "relu",
        attention: str = "none",
        se_reduction: int = 16,
    ) -> None:
        super().__init__()
        self.conv1 = conv1x1(in_channels, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.act1 = get_activation(activation)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.act2 = get_activation(activation)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.act_out = get_activation(activation)
        self._add_shortcut_and_attention(
            in_channels, planes, stride, shortcut, attention, se_reduction
        )

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.act2(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))


# depth → (block, blocks per stage); torchvision's table.
DEPTHS: dict[int, tuple[type[ResidualBlock], tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}


def _min_side(image_size: int | Sequence[int]) -> int:
    return int(image_size) if isinstance(image_size, int) else min(int(s) for s in image_size)


def resolve_stem(stem: str, image_size: int | Sequence[int]) -> str:
    """``cifar`` | ``imagenet``; ``auto`` is cifar when the smaller image side is below
    :data:`CIFAR_STEM_BELOW` (64 px), else imagenet."""
    if stem not in STEMS:
        raise ValueError(f"unknown stem {stem!r}; valid: {', '.join(STEMS)}")
    if stem != "auto":
        return stem
    return "cifar" if _min_side(image_size) < CIFAR_STEM_BELOW else "imagenet"


class ResNet(nn.Module):
    """ResNet / Plain / SE-ResNet / Mish-ResNet in torchvision's layout.

    Args:
        num_classes: output logits of ``fc``.
        in_channels: input image channels (1 grey, 3 colour).
        image_size: input side in px, int or (H, W); only read by ``stem="auto"``.
        depth: 18 | 34 (BasicBlock) | 50 | 101 | 152 (Bottleneck).
        shortcut: True = residual net; False = plain net (no identity, no projection).
        attention: none | se (squeeze-and-excitation in every block, after the last BN).
        se_reduction: SE channel reduction ratio (hidden = max(8, channels // ratio)).
        activation: relu | leaky_relu | mish | gelu | silu (any name of
            :func:`runner.models.layers.get_activation`), used everywhere, stem included.
        stem: auto | cifar (3×3 stride-1 conv, no max-pool) | imagenet (7×7 stride-2
            conv + 3×3 stride-2 max-pool); auto = cifar below 64 px (MNIST, CIFAR),
            else imagenet (see :data:`CIFAR_STEM_BELOW`).
        zero_init_residual: start each residual branch's last BN at weight 0, so
            every block begins as the identity (residual nets only).
        width: channels of the first stage; stages have width × (1, 2, 4, 8) × expansion.
        init: default (torchvision's: kaiming-normal fan-out convs, BN 1/0, PyTorch's
            Linear) | kaiming | xavier | orthogonal (see :func:`runner.models.layers.init_weights`).
    """

    def __init__(
        self,
        num_classes: int = 1000,
        in_channels: int = 3,
        image_size: int | Sequence[int] = 224,
        depth: int = 18,
        shortcut: bool = True,
        attention: str = "none",
        se_reduction: int = 16,
        activation: str = "relu",
        stem: str = "auto",
        zero_init_residual: bool = False,
        width: int = 64,
        init: str = "default",
    ) -> None:
        super().__init__()
        _check_args(
            depth, activation, attention, init, se_reduction, width, num_classes, in_channels
        )
        if zero_init_residual and not shortcut:
            raise ValueError(
                "zero_init_residual=true needs shortcut=true: a plain net whose blocks start "
                "at zero passes no signal"
            )
        block, layers = DEPTHS[depth]
        self.depth, self.shortcut, self.stem = depth, shortcut, resolve_stem(stem, image_size)
        if self.stem == "cifar":
            self.conv1 = conv3x3(in_channels, width)
            self.maxpool: nn.Module = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(width)
        self.act1 = get_activation(activation)

        block_kwargs = dict(
            shortcut=shortcut,
            activation=activation,
            attention=attention,
            se_reduction=se_reduction,
        )
        channels = width
        stages = []
        for i, blocks in enumerate(layers):
            planes, stride = width * 2**i, 1 if i == 0 else 2
            stage = []
            for j in range(blocks):
                stage.append(block(channels, planes, stride if j == 0 else 1, **block_kwargs))
                channels = planes * block.expansion
            stages.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(channels, num_classes)
        self._init(init, activation, zero_init_residual)

    def _init(self, scheme: str, activation: str, zero_init_residual: bool) -> None:
        if scheme == "default":  # torchvision's ResNet init, so it trains like torchvision
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)
        else:
            init_weights(self, scheme, activation)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, ResidualBlock):
                    nn.init.zeros_(getattr(m, m.last_bn).weight)

    def feature_stages(self) -> list[tuple[str, nn.Module]]:
        """The modules whose outputs are the feature stages, input to output: the stem's
        activation, then each of ``layer1``..``layer4``."""
        return [("act1", self.act1)] + [
            (f"layer{i}", getattr(self, f"layer{i}")) for i in range(1, 5)
        ]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's feature map, (N, C, H', W'), before pooling."""
        x = self.maxpool(self.act1(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(self.forward_features(x)), 1))


def _check_args(
    depth: int,
    activation: str,
    attention: str,
    init: str,
    se_reduction: int,
    width: int,
    num_classes: int,
    in_channels: int,
) -> None:
    if depth not in DEPTHS:
        raise ValueError(f"unknown ResNet depth {depth!r}; valid: {', '.join(map(str, DEPTHS))}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; valid: {', '.join(ACTIVATIONS)}")
    if attention not in ATTENTIONS:
        raise ValueError(f"unknown attention {attention!r}; valid: {', '.join(ATTENTIONS)}")
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; valid: {', '.join(INITS)}")
    for key, value in (
        ("se_reduction", se_reduction),
        ("width", width),
        ("num_classes", num_classes),
        ("in_channels", in_channels),
    ):
        if int(value) < 1:
            raise ValueError(f"{key} must be a positive integer, got {value!r}")

"""The small CNN of SEEDS.md S3/S4.

``len(filters)`` blocks of conv(k×k) → BatchNorm (optional) → activation →
pool(2), then flatten → hidden fully-connected layers (+ activation +
dropout) → a linear classifier. Works for any input size and channel count:
the flattened width is computed from ``image_size`` at construction.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from runner.models.layers import get_activation, init_weights

POOLING = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}


def _size(value: int | Sequence[int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


class ConvBlock(nn.Sequential):
    """conv → (BatchNorm) → activation → pool(2)."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int,
        padding: str,
        pooling: str,
        batch_norm: bool,
        activation: str,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, padding=padding, bias=not batch_norm)
        if batch_norm:
            self.bn = nn.BatchNorm2d(out_ch)
        self.act = get_activation(activation)
        self.pool = POOLING[pooling](2)


class CustomCNN(nn.Module):
    """Configurable small CNN.

    Args:
        num_classes: output logits.
        in_channels: input channels (1 grey, 3 colour).
        image_size: input height/width (int or (H, W)); sets the flattened width.
        filters: output channels of each conv block; its length is the block count.
        kernel_size: conv kernel side (3 | 5 | 7 …).
        padding: ``same`` (keeps size) | ``valid`` (no padding).
        pooling: ``max`` | ``avg`` (2×2, stride 2) after each conv.
        batch_norm: BatchNorm after each conv (conv bias dropped when on).
        activation: see :func:`runner.models.layers.get_activation`.
        fc_neurons: hidden fully-connected widths before the classifier.
        dropout: dropout probability after each hidden fc layer, in [0, 1).
        init: weight initialisation, see :func:`runner.models.layers.init_weights`.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        image_size: int | Sequence[int] = 32,
        filters: Sequence[int] = (32, 64, 128),
        kernel_size: int = 3,
        padding: str = "same",
        pooling: str = "max",
        batch_norm: bool = True,
        activation: str = "relu",
        fc_neurons: Sequence[int] = (512,),
        dropout: float = 0.5,
        init: str = "default",
    ) -> None:
        super().__init__()
        if pooling not in POOLING:
            raise ValueError(f"unknown pooling {pooling!r}; valid: {', '.join(POOLING)}")
        if padding not in ("same", "valid"):
            raise ValueError(f"unknown padding {padding!r}; valid: same, valid")
        if not filters:
            raise ValueError("filters must list at least one conv block, e.g. [32, 64]")
        h, w = _size(image_size)
        blocks, ch = [], in_channels
        for out_ch in filters:
            blocks.append(
                ConvBlock(ch, out_ch, kernel_size, padding, pooling, batch_norm, activation)
            )
            ch = out_ch
            if padding == "valid":
                h, w = h - kernel_size + 1, w - kernel_size + 1
            h, w = h // 2, w // 2
            if h < 1 or w < 1:
                raise ValueError(
                    f"a {_size(image_size)} input is too small for {len(filters)} conv blocks "
                    f"with kernel {kernel_size} and {padding} padding: use fewer blocks, "
                    "padding=same or larger images"
                )
        self.features = nn.Sequential(*blocks)
        self.flatten = nn.Flatten()
        head: list[nn.Module] = []
        width = ch * h * w
        for hidden in fc_neurons:
            head += [nn.Linear(width, hidden), get_activation(activation), nn.Dropout(dropout)]
            width = hidden
        self.head = nn.Sequential(*head)
        self.classifier = nn.Linear(width, num_classes)
        init_weights(self, init, activation)

    def feature_stages(self) -> list[tuple[str, nn.Module]]:
        """Each conv block's activation (its feature map before pooling), input to output."""
        return [(f"features.{i}.act", block.act) for i, block in enumerate(self.features)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.head(self.flatten(self.features(x))))

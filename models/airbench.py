"""A fast CIFAR-10 network in the style of Keller Jordan's airbench94 (2024).

A 2×2 patch-whitening convolution (weights computed from the training data and frozen,
:func:`whitening_weights`), then three groups of [3×3 conv → max-pool 2 → BatchNorm → GELU →
3×3 conv → BatchNorm → GELU] of widths 64, 256, 256, a 3×3 max-pool and a linear head
without bias whose logits are divided by the feature width. BatchNorm layers keep their
weight at 1 (only the bias trains), with running-statistics momentum 0.4 (torch's
convention) and eps 1e-12: few, large steps need statistics that keep up. Each 3×3 conv
starts as a partial identity (Dirac init of its first ``in_channels`` filters).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class FrozenScaleBatchNorm(nn.BatchNorm2d):
    """BatchNorm with its weight fixed at 1 (only the shift trains)."""

    def __init__(self, channels: int, momentum: float = 0.4, eps: float = 1e-12) -> None:
        super().__init__(channels, eps=eps, momentum=momentum)
        self.weight.requires_grad_(False)


def conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    """3×3 'same' convolution without bias, its first filters a Dirac (identity) kernel."""
    conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
    with torch.no_grad():
        nn.init.dirac_(conv.weight[: min(in_channels, out_channels)])
    return conv


class ConvGroup(nn.Module):
    """conv → max-pool 2 → BN → GELU → conv → BN → GELU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = FrozenScaleBatchNorm(out_channels)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.norm2 = FrozenScaleBatchNorm(out_channels)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.norm1(self.pool(self.conv1(x))))
        return self.act(self.norm2(self.conv2(x)))


class AirbenchNet(nn.Module):
    """The network; ``widths`` of the three groups, ``whiten_kernel`` the patch side.

    Call :meth:`init_whitening` with ``whiten_samples`` normalised training images before
    training (the model registry's data-init hook does it when the run's model is built);
    ``whiten_eps`` is added to each eigenvalue before its inverse square root.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        image_size: int | Sequence[int] = 32,
        widths: Sequence[int] = (64, 256, 256),
        whiten_kernel: int = 2,
        whiten_samples: int = 5000,
        whiten_eps: float = 5e-4,
    ) -> None:
        super().__init__()
        if len(widths) != 3 or min(widths) < 1:
            raise ValueError(f"widths must list three positive channel counts, got {widths}")
        side = min(image_size) if isinstance(image_size, Sequence) else image_size
        if side - whiten_kernel + 1 < 8:  # three 2x max-pools need 8 pixels after the stem
            raise ValueError(
                f"images of {side} px are too small for airbench: its stem and three 2x "
                f"pools need at least {7 + whiten_kernel} px"
            )
        if whiten_kernel < 1 or whiten_samples < 1 or whiten_eps <= 0:
            raise ValueError(
                "whiten_kernel and whiten_samples must be >= 1 and whiten_eps > 0, got "
                f"{whiten_kernel}, {whiten_samples}, {whiten_eps}"
            )
        # how the first layer is set from data (read by whoever calls init_whitening)
        self.whiten_samples, self.whiten_eps = int(whiten_samples), float(whiten_eps)
        whiten_width = 2 * in_channels * whiten_kernel**2
        self.whiten = nn.Conv2d(in_channels, whiten_width, whiten_kernel, bias=True)
        self.whiten.weight.requires_grad_(False)
        self.act = nn.GELU()
        self.group1 = ConvGroup(whiten_width, widths[0])
        self.group2 = ConvGroup(widths[0], widths[1])
        self.group3 = ConvGroup(widths[1], widths[2])
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.head = nn.Linear(widths[2], num_classes, bias=False)
        with torch.no_grad():
            self.head.weight.div_(self.head.weight.std())

    def init_whitening(self, images: torch.Tensor, eps: float | None = None) -> None:
        """Set the frozen first layer from ``images`` (normalised, ``(N, C, H, W)``; the
        first ``whiten_samples`` training images); ``eps`` defaults to ``whiten_eps``."""
        eps = self.whiten_eps if eps is None else eps
        weights = whitening_weights(images, self.whiten.kernel_size[0], eps)
        with torch.no_grad():
            self.whiten.weight.copy_(weights.to(self.whiten.weight))

    def feature_stages(self) -> list[tuple[str, nn.Module]]:
        """The whitening layer's activation, then each conv group, input to output."""
        return [
            ("act", self.act),
            ("group1", self.group1),
            ("group2", self.group2),
            ("group3", self.group3),
        ]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.whiten(x))
        x = self.group3(self.group2(self.group1(x)))
        x = torch.flatten(self.pool(x), 1)
        return self.head(x) / x.size(-1)


def whitening_weights(images: torch.Tensor, kernel: int, eps: float = 5e-4) -> torch.Tensor:
    """Filters that whiten ``kernel``×``kernel`` patches of ``images``: the eigenvectors of
    the patch covariance scaled by 1/sqrt(eigenvalue + eps), each with its negation
    (``2 · C · kernel²`` filters)."""
    c = images.shape[1]
    patches = images.float().unfold(2, kernel, 1).unfold(3, kernel, 1)
    flat = patches.transpose(1, 3).reshape(-1, c * kernel * kernel)
    covariance = flat.T @ flat / len(flat)
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
    scaled = eigenvectors.T.reshape(-1, c, kernel, kernel) / torch.sqrt(
        eigenvalues.clamp(min=0).view(-1, 1, 1, 1) + eps
    )
    return torch.cat((scaled, -scaled))

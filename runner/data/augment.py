"""Batched training augmentation on the training device.

Every function takes a float batch ``(B, C, H, W)`` and a ``torch.Generator`` on the
batch's device and draws its random parameters per sample, so one call augments a
whole batch without any per-image Python work.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


def random_crop(x: torch.Tensor, padding: int, g: torch.Generator) -> torch.Tensor:
    """RandomCrop(size=(H, W), padding=padding) with zero padding, per-sample offsets."""
    if padding <= 0:
        return x
    b, _, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (b,), device=x.device, generator=g)
    dx = torch.randint(0, 2 * padding + 1, (b,), device=x.device, generator=g)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    chan = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return padded[batch, chan, rows, cols]


def random_hflip(x: torch.Tensor, g: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """RandomHorizontalFlip(p) per sample."""
    flip = torch.rand(x.shape[0], device=x.device, generator=g) < p
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def apply(x: torch.Tensor, augment: Any, g: torch.Generator) -> torch.Tensor:
    """Apply the enabled augmentations of an ``AugmentConf`` node to a [0, 1] float batch."""
    if augment is None:
        return x
    if augment.crop_padding:
        x = random_crop(x, int(augment.crop_padding), g)
    if augment.hflip:
        x = random_hflip(x, g)
    return x


def is_enabled(augment: Any) -> bool:
    """Whether any augmentation is switched on."""
    if augment is None:
        return False
    import dataclasses

    values = dataclasses.asdict(augment) if dataclasses.is_dataclass(augment) else dict(augment)
    return any(bool(v) for v in values.values())

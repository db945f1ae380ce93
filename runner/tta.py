"""Test-time augmentation: one definition used by validation, test and runner-predict.

Modes (``trainer.tta``): ``none``; ``flip`` — the mean of the image's and its left-right
mirror's logits; ``flip_translate`` — half the flip logits plus a quarter each of the flip
logits of the image shifted one pixel up-left and one pixel down-right (reflect padding),
airbench94's six views.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

MODES = ("none", "flip", "flip_translate")
DESCRIPTIONS = {
    "none": "none",
    "flip": "average the logits of the image and its left-right mirror (the run was evaluated so)",
    "flip_translate": "1/2 x the mean logits of the image and its mirror + 1/4 x the same for "
    "the image shifted 1 pixel up-left and 1 pixel down-right (reflect padding), as the run "
    "was evaluated (runner.tta)",
}


def describe_tta(mode: str) -> str:
    """What ``mode`` does, in words (``runner-export``'s preprocessing.json)."""
    return DESCRIPTIONS.get(mode, mode)


def _flip(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    return (model(x).float() + model(x.flip(-1)).float()) / 2


def translations(x: torch.Tensor) -> list[torch.Tensor]:
    """``x`` (N, C, H, W) shifted one pixel up-left and one down-right, reflect-padded."""
    h, w = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    return [padded[..., :h, :w], padded[..., 2 : h + 2, 2 : w + 2]]


def tta_logits(
    model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, mode: str
) -> torch.Tensor:
    """Float logits of ``model`` on the image batch ``x`` (N, C, H, W) with ``mode``."""
    if mode == "none":
        return model(x).float()
    if mode == "flip":
        return _flip(model, x)
    if mode == "flip_translate":
        translated = torch.stack([_flip(model, s) for s in translations(x)]).mean(0)
        return 0.5 * _flip(model, x) + 0.5 * translated
    raise ValueError(f"unknown test-time augmentation {mode!r}; valid: {', '.join(MODES)}")

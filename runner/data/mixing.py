"""Batch mixing — mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019) — on the
training device, after the loader's augmentation.

Each batch is mixed with itself rolled by one (torchvision's ``v2.MixUp``/``CutMix``
pairing; the batch is already shuffled): image ``i`` is blended with image ``i - 1``
(mixup) or gets a box of it pasted in (CutMix), and its target becomes ``lam`` of its own
label and ``1 - lam`` of the partner's. One ``lam ~ Beta(alpha, alpha)`` per batch, as
torchvision and timm's default batch mode do; for CutMix ``lam`` is then corrected to the
box's real area after clipping at the border. With both alphas set, each batch picks
CutMix with probability ``switch_prob``, else mixup; ``prob`` is the chance that a batch is
mixed at all. The loss of a mixed batch is ``lam * loss(logits, y) + (1 - lam) *
loss(logits, y_partner)`` with the run's own criterion (label smoothing and class weights
included); accuracy is counted on the hard labels ``y``.

The random draws are scalars per batch, made on the CPU from a generator seeded by
(seed, epoch, batch), so a resumed run mixes exactly as an uninterrupted one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class Mixed:
    """A mixed batch's targets: ``lam`` of ``y`` and ``1 - lam`` of ``y_partner``, and
    which method made it (mixup | cutmix)."""

    y: torch.Tensor
    y_partner: torch.Tensor
    lam: float
    method: str

    def loss(self, criterion: Any, logits: torch.Tensor) -> torch.Tensor:
        return self.lam * criterion(logits, self.y) + (1.0 - self.lam) * criterion(
            logits, self.y_partner
        )

    def soft_targets(self, num_classes: int) -> torch.Tensor:
        """The label weights as a ``(B, num_classes)`` distribution."""
        one_hot = torch.nn.functional.one_hot
        own = one_hot(self.y, num_classes).float()
        return self.lam * own + (1.0 - self.lam) * one_hot(self.y_partner, num_classes).float()


def mixup_with(x: torch.Tensor, lam: float) -> torch.Tensor:
    """``lam * x + (1 - lam) * x.roll(1, 0)``."""
    return x.mul(lam).add_(x.roll(1, 0), alpha=1.0 - lam)


def cutmix_box(lam: float, height: int, width: int, cy: float, cx: float) -> tuple[int, ...]:
    """``(top, bottom, left, right)`` of a box of area ``1 - lam`` centred at the fractions
    ``(cy, cx)`` of the image, clipped at its border (CutMix's ``rand_bbox``)."""
    ratio = math.sqrt(1.0 - lam)
    bh, bw = int(height * ratio), int(width * ratio)
    y, x = int(cy * height), int(cx * width)
    top, bottom = max(y - bh // 2, 0), min(y + bh // 2, height)
    left, right = max(x - bw // 2, 0), min(x + bw // 2, width)
    return top, bottom, left, right


def cutmix_with(x: torch.Tensor, box: tuple[int, ...]) -> torch.Tensor:
    """``x`` with ``box`` (top, bottom, left, right) taken from ``x.roll(1, 0)``."""
    top, bottom, left, right = box
    out = x.clone()
    out[..., top:bottom, left:right] = x.roll(1, 0)[..., top:bottom, left:right]
    return out


class BatchMixer:
    """Mixes training batches: ``mix(x, y, step) -> (x, Mixed | None)``.

    mixup_alpha / cutmix_alpha: Beta parameters (0 = that method off). switch_prob: the
    chance of CutMix when both are on. prob: the chance that a batch is mixed. seed: base
    of the per-step generator.
    """

    def __init__(
        self,
        mixup_alpha: float,
        cutmix_alpha: float,
        switch_prob: float = 0.5,
        prob: float = 1.0,
        seed: int = 0,
    ) -> None:
        if mixup_alpha <= 0 and cutmix_alpha <= 0:
            raise ValueError("BatchMixer needs mixup_alpha > 0 or cutmix_alpha > 0")
        self.mixup_alpha, self.cutmix_alpha = float(mixup_alpha), float(cutmix_alpha)
        self.switch_prob, self.prob, self.seed = float(switch_prob), float(prob), int(seed)

    def __repr__(self) -> str:
        return (
            f"BatchMixer(mixup_alpha={self.mixup_alpha}, cutmix_alpha={self.cutmix_alpha}, "
            f"switch_prob={self.switch_prob}, prob={self.prob})"
        )

    def draw(self, key: tuple[int, ...]) -> tuple[str, float, float, float]:
        """(method, lam, cy, cx) of the batch ``key`` (epoch, batch); method none = no
        mixing."""
        rng = np.random.default_rng([self.seed, *key])
        if rng.random() >= self.prob:
            return "none", 1.0, 0.0, 0.0
        use_cutmix = self.cutmix_alpha > 0 and (
            self.mixup_alpha <= 0 or rng.random() < self.switch_prob
        )
        alpha = self.cutmix_alpha if use_cutmix else self.mixup_alpha
        lam = float(rng.beta(alpha, alpha))
        return ("cutmix" if use_cutmix else "mixup"), lam, float(rng.random()), float(rng.random())

    def mix(
        self, x: torch.Tensor, y: torch.Tensor, key: tuple[int, ...]
    ) -> tuple[torch.Tensor, Mixed | None]:
        """The mixed batch of batch ``key`` (epoch, batch) and its targets (``None``: this
        batch is not mixed)."""
        method, lam, cy, cx = self.draw(key)
        if method == "none" or len(y) < 2:
            return x, None
        if method == "mixup":
            return mixup_with(x, lam), Mixed(y, y.roll(1, 0), lam, method)
        h, w = x.shape[-2:]
        box = cutmix_box(lam, h, w, cy, cx)
        area = (box[1] - box[0]) * (box[3] - box[2])
        return cutmix_with(x, box), Mixed(y, y.roll(1, 0), 1.0 - area / (h * w), method)


def build_mixer(trainer: Any, kind: str, seed: int) -> BatchMixer | None:
    """The mixer of ``trainer.mixup_alpha``/``cutmix_alpha`` (images only), or None."""
    mixup, cutmix = float(trainer.mixup_alpha), float(trainer.cutmix_alpha)
    if mixup <= 0 and cutmix <= 0:
        return None
    if kind != "image":
        from runner.errors import ConfigError

        raise ConfigError(
            f"trainer.mixup_alpha / trainer.cutmix_alpha mix images; this data is {kind}"
        )
    return BatchMixer(mixup, cutmix, float(trainer.mix_switch_prob), float(trainer.mix_prob), seed)

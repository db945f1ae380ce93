"""The one object every dataset builder returns.

A :class:`DataBundle` holds the whole dataset in memory as tensors — images
as ``uint8`` ``(N, C, H, W)``, text as ``int64`` token ids ``(N, L)`` — with
its classes, normalisation and train/val/test splits. The training loop
moves it to the training device once and batches/augments it there
(:mod:`runner.data.loader`), so no per-image Python work happens per epoch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class Split:
    """One split: inputs ``x`` and integer labels ``y`` (``int64``, shape ``(N,)``)."""

    x: torch.Tensor
    y: torch.Tensor
    names: list[str] | None = None  # source file of each sample, where there is one

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise ValueError(f"split has {len(self.x)} inputs but {len(self.y)} labels")

    def __len__(self) -> int:
        return len(self.y)

    def class_counts(self, num_classes: int) -> list[int]:
        return torch.bincount(self.y, minlength=num_classes).tolist()


@dataclass
class DataBundle:
    """A dataset ready for training.

    kind: ``image`` (x uint8 N,C,H,W) or ``text`` (x int64 N,L token ids).
    mean/std: per-channel normalisation applied on the device after augmentation
    (images only; in units of [0, 1] pixel values).
    extra_model_kwargs: further keyword arguments for the model builder (e.g.
    ``vocab_size`` for text models).
    notes: sentences on how the data was prepared that a reader of the results needs
    (a split by groups, duplicates across splits); the run's report lists them.
    """

    name: str
    classes: list[str]
    train: Split
    val: Split
    test: Split
    kind: str = "image"
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    augment: Any = None  # an AugmentConf-like object, or None
    extra_model_kwargs: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, Any] = field(default_factory=dict)  # e.g. a vocabulary to save
    notes: list[str] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def channels(self) -> int:
        return int(self.train.x.shape[1]) if self.kind == "image" else 0

    @property
    def image_size(self) -> tuple[int, int]:
        return (int(self.train.x.shape[2]), int(self.train.x.shape[3]))

    def model_kwargs(self) -> dict[str, Any]:
        """Keyword arguments the model builder passes on (filtered by the model's signature)."""
        kwargs: dict[str, Any] = {"num_classes": self.num_classes}
        if self.kind == "image":
            kwargs.update(in_channels=self.channels, image_size=self.image_size)
        kwargs.update(self.extra_model_kwargs)
        return kwargs

    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample, without the batch dimension."""
        return tuple(self.train.x.shape[1:])

    def split_counts(self) -> dict[str, list[int]]:
        return {
            name: split.class_counts(self.num_classes)
            for name, split in (("train", self.train), ("val", self.val), ("test", self.test))
        }

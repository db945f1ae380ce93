"""Batches from an in-memory split, on the training device.

The split's uint8 tensor moves to the device once; each epoch draws a
permutation from a generator seeded by (seed, epoch) — so resuming at an epoch
boundary replays exactly the same batches — then converts, augments and
normalises whole batches there.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import torch

from runner.data import augment as aug
from runner.data.base import DataBundle, Split


@dataclass(frozen=True)
class LoaderOptions:
    """How a :class:`BatchLoader` batches a split.

    batch_size: samples per batch. device: where batches are built. train: shuffle and
    augment (training split) or not (evaluation). seed: base seed of the per-epoch
    shuffling/augmentation generators. channels_last: image batches in channels_last
    memory format. limit_batches: stop after this many batches (0 = all).
    """

    batch_size: int
    device: torch.device = torch.device("cpu")
    train: bool = False
    seed: int = 0
    channels_last: bool = False
    limit_batches: int = 0

    def for_eval(self, batch_size: int | None = None) -> LoaderOptions:
        """The same device and memory format for an evaluation pass (no shuffle, no
        augmentation, every batch)."""
        size = self.batch_size if batch_size is None else batch_size
        return replace(self, batch_size=size, train=False, limit_batches=0)


class BatchLoader:
    """Iterate ``(inputs, labels)`` batches of one split (moved to ``options.device`` here,
    once); ``data`` gives its kind, mean/std and augmentation."""

    def __init__(self, split: Split, data: DataBundle, options: LoaderOptions) -> None:
        device = options.device
        self.options = options
        # a StreamingSplit (runner.data.imagefolder) stays on disk and decodes the batches
        # it is asked for; every other split moves to the device once
        self.streaming = getattr(split, "streaming", False)
        self.split = split
        self.x = None if self.streaming else split.x.to(device, non_blocking=True)
        self.y = split.y.to("cpu" if self.streaming else device, non_blocking=True)
        self.batch_size = options.batch_size
        self.device = device
        self.kind = data.kind
        self.train = options.train
        self.seed = options.seed
        self.augment = data.augment if options.train and aug.is_enabled(data.augment) else None
        # alternating flips: one random mirror per image for the run, negated every other
        # epoch; drawn from the seed alone, so a resumed run flips the same way
        self._flip_base = None
        if self.augment is not None and aug.settings(self.augment).get("alternating_flip"):
            g = torch.Generator().manual_seed(options.seed * 100_003 + 99_991)
            self._flip_base = (torch.rand(len(split.y), generator=g) < 0.5).to(device)
        self.channels_last = options.channels_last and data.kind == "image"
        self.limit_batches = options.limit_batches
        # under torchrun a training loader yields this rank's shard of each epoch, in
        # batches of batch_size // world_size (the global batch stays batch_size)
        from runner.distributed import shard

        self.rank, self.world = shard() if options.train else (0, 1)
        if self.world > 1:
            self.batch_size = max(1, options.batch_size // self.world)
        if data.kind == "image":
            std = torch.tensor(data.std or (1.0,) * data.channels, device=device)
            mean = torch.tensor(data.mean or (0.0,) * data.channels, device=device)
            # x_norm = (x / 255 - mean) / std = x * scale + shift
            self.scale = (1.0 / (255.0 * std)).view(1, -1, 1, 1)
            self.shift = (-mean / std).view(1, -1, 1, 1)
            self._mean, self._std = mean.view(1, -1, 1, 1), std.view(1, -1, 1, 1)

    def __len__(self) -> int:
        n = -(-(len(self.y) // self.world) // self.batch_size)  # world > 1: one rank's shard
        return min(n, self.limit_batches) if self.limit_batches else n

    @property
    def num_samples(self) -> int:
        return min(len(self.y), len(self) * self.batch_size)

    def _generator(self, epoch: int) -> torch.Generator:
        g = torch.Generator(device=self.device)
        g.manual_seed(self.seed * 100_003 + epoch)
        return g

    def prepare(
        self, x: torch.Tensor, g: torch.Generator | None = None, flip: torch.Tensor | None = None
    ) -> torch.Tensor:
        """uint8 images → normalised float (augmented when training; ``flip``: the images
        alternating flips mirror in this batch); text passes through."""
        if self.kind != "image":
            return x
        if self.augment is not None and g is not None:
            x = aug.apply_policy(x, self.augment, g)  # uint8 in, uint8 out
            x = aug.apply(x.float().div_(255.0), self.augment, g, flip)
            x = aug.apply_erasing((x - self._mean) / self._std, self.augment, g)
        else:
            x = torch.addcmul(self.shift, x.float(), self.scale)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def epoch(self, epoch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches of one epoch (training: shuffled by a generator fixed by seed and epoch)."""
        g = self._generator(epoch) if self.train else None
        n = len(self.y)
        order = torch.randperm(n, device=self.device, generator=g) if self.train else None
        if self.world > 1:  # same permutation on every rank, a strided shard each
            from runner.distributed import shard_order

            order = shard_order(order, self.rank, self.world)
            n = len(order)
            g = self._generator(epoch * 65_537 + 7_919 * (self.rank + 1))  # own augmentation
        flips = None
        if self._flip_base is not None and g is not None:
            flips = aug.alternating_flips(self._flip_base, epoch)
            flips = flips[order] if order is not None else flips  # in batch order
        if self.streaming:
            batches = self.split.batches(self.batch_size, order=order)
            for i, (x, y) in zip(range(len(self)), batches):
                x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
                yield self.prepare(x, g, _part(flips, self._batch(i, n))), y
            return
        for i in range(len(self)):
            sl = self._batch(i, n)
            idx = order[sl] if order is not None else sl
            yield self.prepare(self.x[idx], g, _part(flips, sl)), self.y[idx]

    def _batch(self, i: int, n: int) -> slice:
        return slice(i * self.batch_size, min(n, (i + 1) * self.batch_size))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.epoch(0)


def _part(mask: torch.Tensor | None, sl: slice) -> torch.Tensor | None:
    return None if mask is None else mask[sl]

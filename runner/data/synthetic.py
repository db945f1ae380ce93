"""Generated images for smoke runs: learnable class patterns plus noise, any shape."""

from __future__ import annotations

from typing import Any

import torch

from runner.data.base import DataBundle
from runner.data.prepare import BundleOptions, finish_bundle, make_splits


def load_synthetic(
    *,
    seed: int = 42,
    num_samples: int = 512,
    image_size: int = 32,
    channels: int = 3,
    num_classes: int = 4,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    normalize: str = "dataset",
    subset: float = 0.0,
    augment: Any = None,
    name: str = "synthetic",
    **_: Any,
) -> DataBundle:
    """Each class has a fixed random low-frequency template; samples add noise to it.

    ``normalize: dataset`` uses mean 0.5 and std 0.25 per channel (the generator's range).
    """
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(num_classes, channels, 4, 4, generator=g)
    templates = torch.nn.functional.interpolate(
        coarse, size=(image_size, image_size), mode="bilinear"
    )
    y = torch.arange(num_samples) % num_classes
    noise = torch.randn(num_samples, channels, image_size, image_size, generator=g) * 0.15
    x = ((templates[y] + noise).clamp(0, 1) * 255).round().to(torch.uint8)
    classes = [f"class_{i}" for i in range(num_classes)]
    splits = make_splits(x, y, val_fraction, test_fraction, seed, classes=classes)
    options = BundleOptions(normalize, subset, seed, augment, check_duplicates=False)
    stats = ((0.5,) * channels, (0.25,) * channels)
    return finish_bundle(name, classes, splits, options, stats=stats)

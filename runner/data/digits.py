"""scikit-learn's bundled 8×8 handwritten digits (1 797 images, 10 classes, no download)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import torch

from runner.data.base import DataBundle
from runner.data.prepare import BundleOptions, finish_bundle, make_splits

# Per-pixel statistics of the whole digits set, in [0, 1] units.
DIGITS_MEAN, DIGITS_STD = (0.3063,), (0.3780,)
CLASSES = [str(d) for d in range(10)]


def _read_digits() -> tuple[np.ndarray, np.ndarray]:
    """(pixels 0–16 as float, labels) from the file scikit-learn ships the set in.

    Reads ``sklearn/datasets/data/digits.csv.gz`` as ``sklearn.datasets.load_digits``
    does, but finds it without importing scikit-learn (≈ 0.8 s of start-up, which the
    runner's 3 s budget to the first training step cannot spare); falls back to
    ``load_digits`` if a scikit-learn release moves the file.
    """
    spec = importlib.util.find_spec("sklearn")
    if spec is not None and spec.submodule_search_locations:
        for root in spec.submodule_search_locations:
            path = Path(root) / "datasets" / "data" / "digits.csv.gz"
            if path.is_file():
                data = np.loadtxt(path, delimiter=",")
                return data[:, :-1], data[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits as sk_digits

    raw = sk_digits()
    return raw.data, raw.target.astype(np.int64)


def load_digits(
    *,
    seed: int = 42,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    normalize: str = "dataset",
    subset: float = 0.0,
    augment: Any = None,
    name: str = "digits",
    **_: Any,
) -> DataBundle:
    """The digits set as 1×8×8 uint8 images (0–16 grey levels scaled to 0–255).

    Train/val/test are stratified fractions drawn with ``seed``; ``normalize: dataset``
    uses the statistics of the whole set (:data:`DIGITS_MEAN`, :data:`DIGITS_STD`).
    """
    pixels, y = _read_digits()
    images = np.round(pixels.reshape(-1, 8, 8) * (255.0 / 16.0)).astype(np.uint8)
    x = torch.from_numpy(images).unsqueeze(1)
    splits = make_splits(x, y, val_fraction, test_fraction, seed, classes=CLASSES)
    options = BundleOptions(normalize, subset, seed, augment, check_duplicates=False)
    return finish_bundle(name, CLASSES, splits, options, stats=(DIGITS_MEAN, DIGITS_STD))

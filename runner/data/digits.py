"""scikit-learn's bundled 8×8 handwritten digits (1 797 images, 10 classes, no download)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import torch

from runner.data.base import DataBundle, Split
from runner.data.stratify import split_stratified

# Per-pixel statistics of the whole digits set, in [0, 1] units.
DIGITS_MEAN, DIGITS_STD = (0.3063,), (0.3780,)


def stratified_split(
    y: np.ndarray, val_fraction: float, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of a stratified train/val/test split; fractions of the whole, fixed by ``seed``.

    The same images as scikit-learn's ``train_test_split(stratify=…, random_state=seed)``
    applied twice (test first, then validation from the rest); see
    :mod:`runner.data.stratify` for why it does not import scikit-learn.
    """
    idx = np.arange(len(y))
    rest, test = (idx, idx[:0])
    if test_fraction > 0:
        keep, held = split_stratified(y, test_fraction, seed)
        rest, test = idx[keep], idx[held]
    train, val = (rest, rest[:0])
    if val_fraction > 0:
        share = val_fraction / (1.0 - test_fraction)
        keep, held = split_stratified(y[rest], share, seed)
        train, val = rest[keep], rest[held]
    return np.sort(train), np.sort(val), np.sort(test)


def subset_per_class(y: np.ndarray, subset: float, seed: int) -> np.ndarray:
    """Indices keeping ``subset`` of each class: a fraction if <= 1, else a count per class."""
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        n = int(round(subset * len(members))) if subset <= 1 else int(subset)
        keep.append(rng.permutation(members)[: max(1, min(n, len(members)))])
    return np.sort(np.concatenate(keep))


def normalisation(normalize: str, dataset_stats: tuple[tuple, tuple], channels: int):
    """(mean, std) for ``normalize``: dataset | half | imagenet | none."""
    choices = {
        "dataset": dataset_stats,
        "half": ((0.5,) * channels, (0.5,) * channels),
        "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        "none": ((0.0,) * channels, (1.0,) * channels),
    }
    if normalize not in choices:
        raise ValueError(f"unknown normalize {normalize!r}; valid: {', '.join(choices)}")
    mean, std = choices[normalize]
    if len(mean) != channels:  # e.g. imagenet stats on grey images
        mean, std = (float(np.mean(mean)),) * channels, (float(np.mean(std)),) * channels
    return tuple(mean), tuple(std)


def make_splits(
    x: torch.Tensor,
    y: np.ndarray,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    subset: float = 0.0,
) -> tuple[Split, Split, Split]:
    """Stratified train/val/test :class:`Split`s of in-memory data."""
    tr, va, te = stratified_split(y, val_fraction, test_fraction, seed)
    if subset:
        tr = tr[subset_per_class(y[tr], subset, seed)]
    yt = torch.as_tensor(y, dtype=torch.long)
    return tuple(Split(x[i], yt[i]) for i in (tr, va, te))  # type: ignore[return-value]


def _read_digits() -> tuple[np.ndarray, np.ndarray]:
    """(pixels 0–16 as float, labels) from the file scikit-learn ships the set in.

    Reads ``sklearn/datasets/data/digits.csv.gz`` as ``sklearn.datasets.load_digits``
    does, but finds it without importing scikit-learn (≈ 0.8 s of start-up, issue 8);
    falls back to ``load_digits`` if a scikit-learn release moves the file.
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
    **_: Any,
) -> DataBundle:
    """The digits set as 1×8×8 uint8 images (0–16 grey levels scaled to 0–255)."""
    pixels, y = _read_digits()
    images = np.round(pixels.reshape(-1, 8, 8) * (255.0 / 16.0)).astype(np.uint8)
    x = torch.from_numpy(images).unsqueeze(1)
    train, val, test = make_splits(x, y, val_fraction, test_fraction, seed, subset)
    mean, std = normalisation(normalize, (DIGITS_MEAN, DIGITS_STD), 1)
    return DataBundle(
        name="digits",
        classes=[str(d) for d in range(10)],
        train=train,
        val=val,
        test=test,
        mean=mean,
        std=std,
        augment=augment,
    )

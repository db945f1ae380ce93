"""CIFAR-10 from its python-pickle batches, without torchvision's MD5 check.

Layout (what ``torchvision.datasets.CIFAR10(root, download=True)`` writes)::

    <root>/cifar-10-batches-py/
        data_batch_1 ... data_batch_5   training images, 10 000 each
        test_batch                      the official 10 000 test images
        batches.meta                    class names (``label_names``)

Each batch is a pickled dict with ``data`` (uint8 ``(N, 3072)``, rows are
R, G, B planes of 32 × 32) and ``labels`` (N ints). Files in this format
written by tests or converted by users load too: only shapes are checked.
"""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from runner.data.base import DataBundle, Split
from runner.data.prepare import BundleOptions, finish_bundle, make_splits
from runner.errors import ConfigError, DataError

log = logging.getLogger(__name__)

FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def read_batch(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """One pickled batch as uint8 images ``(N, 3, 32, 32)`` and int64 labels ``(N,)``."""
    try:
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
        data = np.asarray(entry["data"], dtype=np.uint8)
        labels = np.asarray(entry.get("labels", entry.get("fine_labels")), dtype=np.int64)
    except Exception as err:  # unpickling errors come in many types
        raise DataError(
            f"{path} is not a CIFAR-10 python batch ({type(err).__name__}: {err})"
        ) from None
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise DataError(
            f"{path}: expected 'data' of shape (N, 3072) and N labels, "
            f"got data {data.shape} and {len(labels)} labels"
        )
    x = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())
    return x, torch.from_numpy(labels)


def read_classes(folder: Path) -> list[str]:
    """Class names from ``batches.meta`` (the standard names when it is absent)."""
    meta = folder / META
    if not meta.is_file():
        return list(CLASSES)
    with open(meta, "rb") as f:
        names = pickle.load(f, encoding="latin1").get("label_names")
    return [str(n) for n in names] if names else list(CLASSES)


def missing_error(folder: Path, absent: list[str]) -> DataError:
    return DataError(
        f"CIFAR-10 not found: {folder} lacks {', '.join(absent)}. Expected the python "
        f"version's folder {FOLDER}/ with data_batch_1..5, test_batch and batches.meta under "
        f"dataset.root ({folder.parent}). Get it with dataset.download=true (torchvision's "
        f"downloader, 163 MB), or unpack cifar-10-python.tar.gz from "
        f"https://www.cs.toronto.edu/~kriz/cifar.html into the root, or set dataset.root / "
        f"$RUNNER_DATA / dataset.path to where the folder already is."
    )


def fetch(root: Path) -> None:
    """Fetch and unpack the official archive with torchvision's downloader."""
    from torchvision.datasets import CIFAR10

    log.info("downloading CIFAR-10 into %s", root)
    root.mkdir(parents=True, exist_ok=True)
    CIFAR10(str(root), train=True, download=True)


def load_cifar10(
    *,
    root: str = "data",
    path: str = "",
    download: bool = False,
    val_size: int = 5000,
    val_fraction: float = 0.1,
    test_fraction: float = 0.0,
    normalize: str = "half",
    subset: float = 0.0,
    augment: Any = None,
    check_duplicates: bool = True,
    seed: int = 42,
    name: str = "cifar10",
    **_: Any,
) -> DataBundle:
    """CIFAR-10: train minus a stratified validation part, and the official test batch.

    Args:
        val_size: validation images drawn from the training batches (S3: 5 000 of
            50 000); 0 = ``val_fraction`` of them instead.
        normalize: half (mean = std = 0.5) | dataset (train-split statistics) |
            imagenet | none.
        download: fetch the official archive into ``root`` first when files are missing.
    """
    if test_fraction:
        raise ConfigError(
            "dataset.test_fraction must be 0 for CIFAR-10: the official test_batch is the test "
            "split"
        )
    folder = Path(os.path.expanduser(path)) if path else Path(FOLDER)
    folder = folder if folder.is_absolute() else Path(root) / folder
    needed = [*TRAIN_BATCHES, TEST_BATCH]
    absent = [f for f in needed if not (folder / f).is_file()]
    if absent and download:
        fetch(Path(root))
        folder = Path(root) / FOLDER
        absent = [f for f in needed if not (folder / f).is_file()]
    if absent:
        raise missing_error(folder, absent)

    parts = [read_batch(folder / f) for f in TRAIN_BATCHES]
    x = torch.cat([p[0] for p in parts])
    y = torch.cat([p[1] for p in parts])
    x_test, y_test = read_batch(folder / TEST_BATCH)
    classes = read_classes(folder)
    _check_labels(y, y_test, classes, folder)

    fraction = val_size / len(y) if val_size else val_fraction
    if not 0 <= fraction < 1:
        raise ConfigError(f"dataset.val_size={val_size} must be below the {len(y)} training images")
    names = [f"train#{i}" for i in range(len(y))]
    train, val, _ = make_splits(x, y, fraction, 0.0, seed, classes=classes, names=names)
    test = Split(x_test, y_test, [f"test#{i}" for i in range(len(y_test))])
    log.info("CIFAR-10: %d train, %d val, %d test", len(train), len(val), len(test))
    options = BundleOptions(normalize, subset, seed, augment, check_duplicates)
    return finish_bundle(name, classes, (train, val, test), options)


def _check_labels(y: torch.Tensor, y_test: torch.Tensor, classes: list[str], folder: Path) -> None:
    top = int(max(y.max(), y_test.max())) if len(y) else -1
    if top >= len(classes) or int(min(y.min(), y_test.min())) < 0:
        raise DataError(
            f"{folder}: labels range {int(min(y.min(), y_test.min()))}..{top} but there are "
            f"{len(classes)} classes ({', '.join(classes)})"
        )

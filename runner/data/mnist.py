"""MNIST and Fashion-MNIST from their IDX files (gzipped or not).

Layout (what ``torchvision.datasets.MNIST(root, download=True)`` writes)::

    <root>/MNIST/raw/                 (<root>/FashionMNIST/raw/ for Fashion-MNIST)
        train-images-idx3-ubyte[.gz]  60 000 × 28 × 28
        train-labels-idx1-ubyte[.gz]
        t10k-images-idx3-ubyte[.gz]   10 000 × 28 × 28, the official test split
        t10k-labels-idx1-ubyte[.gz]

Splits: test = the official t10k files; validation = a stratified
``val_fraction`` of the training file. With ``use_test_as_train: true`` only the
t10k files are read and divided into train/val/test by ``val_fraction`` and
``test_fraction`` — for machines that hold only the test split.

Pixel types other than unsigned bytes follow :mod:`runner.data.pixels`: float
images (IDX types 0x0D, 0x0E) whose values all lie in [0, 1] are multiplied by
255, floats in [0, 255] are rounded, and integers must lie in 0..255 — anything
else is refused naming the file. Labels must be class ids 0..9.
"""

from __future__ import annotations

import gzip
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from runner.data.base import DataBundle, Split
from runner.data.pixels import to_uint8
from runner.data.prepare import BundleOptions, finish_bundle, label_ids, make_splits
from runner.errors import ConfigError, DataError

log = logging.getLogger(__name__)

IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (``.gz`` or raw) as a numpy array of its stored shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:
        raise DataError(f"cannot read {path}: {err}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES:
        raise DataError(f"{path} is not an IDX file (bad magic number {raw[:4].hex()})")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(IDX_DTYPES[raw[2]])
    offset = 4 + 4 * ndim
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - offset != expected:
        raise DataError(
            f"{path}: header says shape {shape} ({expected} bytes) but {len(raw) - offset} "
            "bytes follow (truncated or not an IDX file)"
        )
    return np.frombuffer(raw, dtype=dtype, offset=offset).reshape(shape)


def _find(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def read_pair(
    folder: Path, prefix: str, num_classes: int = 10
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``(N, 1, 28, 28)`` uint8 and labels ``(N,)`` int64 of ``train`` or ``t10k``."""
    images_file = _find(folder, f"{prefix}-images-idx3-ubyte")
    labels_file = _find(folder, f"{prefix}-labels-idx1-ubyte")
    images = read_idx(images_file)  # type: ignore[arg-type]
    labels = read_idx(labels_file)  # type: ignore[arg-type]
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(
            f"{folder}: {prefix} images {images.shape} and labels {labels.shape} do not match"
        )
    x = torch.from_numpy(to_uint8(images, str(images_file)).copy()).unsqueeze(1)
    return x, torch.from_numpy(label_ids(labels, num_classes, str(labels_file)))


@dataclass(frozen=True)
class IdxDataset:
    """A dataset stored as IDX files: its config name, its name in messages, the folder
    torchvision's downloader writes (``<root>/<folder>/raw/``) and its class names."""

    name: str
    title: str
    folder: str
    classes: tuple[str, ...]


MNIST = IdxDataset("mnist", "MNIST", "MNIST", tuple(str(d) for d in range(10)))
FASHION_MNIST = IdxDataset(
    "fashion_mnist", "Fashion-MNIST", "FashionMNIST",
    ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
     "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
)  # fmt: skip


def missing_error(dataset: IdxDataset, folder: Path, absent: list[str]) -> DataError:
    return DataError(
        f"{dataset.title} not found: {folder} lacks {', '.join(absent)} (raw or .gz). Expected "
        f"the IDX files train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte "
        f"and t10k-labels-idx1-ubyte in <root>/{dataset.folder}/raw/ (or in dataset.path). Get "
        f"them with dataset.download=true (torchvision's downloader), copy them there, or set "
        f"dataset.root / $RUNNER_DATA / dataset.path. With only the t10k files, set "
        f"dataset.use_test_as_train=true and dataset.test_fraction>0."
    )


def find_files(
    dataset: IdxDataset, root: str, path: str, download: bool, prefixes: list[str]
) -> Path:
    """The folder holding the ``prefixes``' IDX files, downloaded first if asked and absent."""
    folder = Path(os.path.expanduser(path)) if path else Path(dataset.folder) / "raw"
    folder = folder if folder.is_absolute() else Path(root) / folder

    def absent() -> list[str]:
        stems = [
            f"{p}-{k}-idx{d}-ubyte" for p in prefixes for k, d in (("images", 3), ("labels", 1))
        ]
        return [s for s in stems if _find(folder, s) is None]

    if absent() and download:
        _fetch(dataset.folder, Path(root))
        folder = Path(root) / dataset.folder / "raw"
    if absent():
        raise missing_error(dataset, folder, absent())
    return folder


def _fetch(tv_name: str, root: Path) -> None:
    from torchvision import datasets

    log.info("downloading %s into %s", tv_name, root / tv_name / "raw")
    getattr(datasets, tv_name)(str(root), train=True, download=True)


def _names(prefix: str, n: int) -> list[str]:
    return [f"{prefix}#{i}" for i in range(n)]


def idx_loader(dataset: IdxDataset) -> Callable[..., DataBundle]:
    """The loader of ``dataset``: keyword arguments = the keys of ``conf/dataset/mnist.yaml``."""

    def load(
        *,
        root: str = "data",
        path: str = "",
        download: bool = False,
        val_fraction: float = 0.1,
        test_fraction: float = 0.0,
        use_test_as_train: bool = False,
        normalize: str = "dataset",
        subset: float = 0.0,
        augment: Any = None,
        check_duplicates: bool = True,
        seed: int = 42,
        name: str = dataset.name,
        **_: Any,
    ) -> DataBundle:
        if use_test_as_train and not test_fraction > 0:
            raise ConfigError(
                "dataset.use_test_as_train=true divides the t10k file into train/val/test: "
                "set dataset.test_fraction > 0 (e.g. 0.2)"
            )
        if not use_test_as_train and test_fraction:
            raise ConfigError(
                f"dataset.test_fraction must be 0 for {dataset.title}: the official t10k files "
                "are the test split (or set dataset.use_test_as_train=true)"
            )
        prefixes = ["t10k"] if use_test_as_train else ["train", "t10k"]
        folder = find_files(dataset, root, path, download, prefixes)
        classes = dataset.classes
        if use_test_as_train:
            x, y = read_pair(folder, "t10k", len(classes))
            names = _names("t10k", len(y))
            splits = make_splits(
                x, y, val_fraction, test_fraction, seed, classes=classes, names=names
            )
        else:
            x, y = read_pair(folder, "train", len(classes))
            names = _names("train", len(y))
            train, val, _ = make_splits(x, y, val_fraction, 0.0, seed, classes=classes, names=names)
            x_test, y_test = read_pair(folder, "t10k", len(classes))
            splits = (train, val, Split(x_test, y_test, _names("t10k", len(y_test))))
        log.info("%s: %d train, %d val, %d test", dataset.title, *map(len, splits))
        options = BundleOptions(normalize, subset, seed, augment, check_duplicates)
        return finish_bundle(name, classes, splits, options)

    load.__name__ = load.__qualname__ = f"load_{dataset.name}"
    load.__doc__ = (
        f"{dataset.title} as uint8 ``(N, 1, 28, 28)``; see the module docstring for splits.\n\n"
        f'    path: folder of the IDX files; absolute, relative to ``root``, or ``""`` =\n'
        f"        ``<root>/{dataset.folder}/raw``.\n"
        "    normalize: dataset (train-split statistics) | half | imagenet | none.\n"
    )
    return load


load_mnist = idx_loader(MNIST)
load_fashion_mnist = idx_loader(FASHION_MNIST)

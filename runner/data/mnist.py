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
"""

from __future__ import annotations

import gzip
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from runner.data.base import DataBundle, Split
from runner.data.splits import finish_bundle, stratified
from runner.errors import ConfigError, DataError

log = logging.getLogger(__name__)

MNIST_CLASSES = [str(d) for d in range(10)]
FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
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


def read_pair(folder: Path, prefix: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``(N, 1, 28, 28)`` uint8 and labels ``(N,)`` int64 of ``train`` or ``t10k``."""
    images = read_idx(_find(folder, f"{prefix}-images-idx3-ubyte"))  # type: ignore[arg-type]
    labels = read_idx(_find(folder, f"{prefix}-labels-idx1-ubyte"))  # type: ignore[arg-type]
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(
            f"{folder}: {prefix} images {images.shape} and labels {labels.shape} do not match"
        )
    x = torch.from_numpy(images.astype(np.uint8)).unsqueeze(1)
    return x, torch.from_numpy(labels.astype(np.int64))


def missing_error(title: str, folder: Path, absent: list[str], tv_name: str) -> DataError:
    return DataError(
        f"{title} not found: {folder} lacks {', '.join(absent)} (raw or .gz). Expected the IDX "
        f"files train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
        f"t10k-labels-idx1-ubyte in <root>/{tv_name}/raw/ (or in dataset.path). Get them with "
        f"dataset.download=true (torchvision's downloader), copy them there, or set "
        f"dataset.root / $RUNNER_DATA / dataset.path. With only the t10k files, set "
        f"dataset.use_test_as_train=true and dataset.test_fraction>0."
    )


def _load(
    *,
    title: str,
    tv_name: str,
    classes: list[str],
    root: str,
    path: str,
    download: bool,
    val_fraction: float,
    test_fraction: float,
    use_test_as_train: bool,
    normalize: str,
    subset: float,
    augment: Any,
    check_duplicates: bool,
    seed: int,
    name: str,
) -> DataBundle:
    folder = Path(os.path.expanduser(path)) if path else Path(tv_name) / "raw"
    folder = folder if folder.is_absolute() else Path(root) / folder
    prefixes = ["t10k"] if use_test_as_train else ["train", "t10k"]
    if use_test_as_train and not test_fraction > 0:
        raise ConfigError(
            "dataset.use_test_as_train=true divides the t10k file into train/val/test: "
            "set dataset.test_fraction > 0 (e.g. 0.2)"
        )
    if not use_test_as_train and test_fraction:
        raise ConfigError(
            f"dataset.test_fraction must be 0 for {title}: the official t10k files are the test "
            "split (or set dataset.use_test_as_train=true)"
        )

    def absent() -> list[str]:
        stems = [
            f"{p}-{k}-idx{d}-ubyte" for p in prefixes for k, d in (("images", 3), ("labels", 1))
        ]
        return [s for s in stems if _find(folder, s) is None]

    if absent() and download:
        _fetch(tv_name, Path(root))
        folder = Path(root) / tv_name / "raw"
    if absent():
        raise missing_error(title, folder, absent(), tv_name)

    if use_test_as_train:
        x, y = read_pair(folder, "t10k")
        tr, va, te = stratified(y.numpy(), val_fraction, test_fraction, seed)
        splits = [(x, y, i, "t10k") for i in (tr, va, te)]
    else:
        x, y = read_pair(folder, "train")
        x_test, y_test = read_pair(folder, "t10k")
        tr, va, _ = stratified(y.numpy(), val_fraction, 0.0, seed)
        splits = [(x, y, tr, "train"), (x, y, va, "train")]
        splits.append((x_test, y_test, np.arange(len(y_test)), "t10k"))
    train, val, test = (
        Split(xs[torch.as_tensor(i)], ys[torch.as_tensor(i)], [f"{src}#{j}" for j in i])
        for xs, ys, i, src in splits
    )
    log.info("%s: %d train, %d val, %d test", title, len(train), len(val), len(test))
    return finish_bundle(
        name=name,
        classes=classes,
        train=train,
        val=val,
        test=test,
        normalize=normalize,
        subset=subset,
        seed=seed,
        augment=augment,
        check_duplicates=check_duplicates,
    )


def _fetch(tv_name: str, root: Path) -> None:
    from torchvision import datasets

    log.info("downloading %s into %s", tv_name, root / tv_name / "raw")
    getattr(datasets, tv_name)(str(root), train=True, download=True)


def load_mnist(
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
    name: str = "mnist",
    **_: Any,
) -> DataBundle:
    """MNIST digits as uint8 ``(N, 1, 28, 28)``; see the module docstring for splits.

    Args:
        path: folder of the IDX files; absolute, relative to ``root``, or ``""`` =
            ``<root>/MNIST/raw``.
        normalize: dataset (train-split statistics) | half | imagenet | none.
    """
    return _load(title="MNIST", tv_name="MNIST", classes=MNIST_CLASSES, **_args(locals()))


def load_fashion_mnist(
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
    name: str = "fashion_mnist",
    **_: Any,
) -> DataBundle:
    """Fashion-MNIST (10 clothing classes), files at ``<root>/FashionMNIST/raw/``."""
    return _load(
        title="Fashion-MNIST", tv_name="FashionMNIST", classes=FASHION_CLASSES, **_args(locals())
    )


def _args(local: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in local.items() if k != "_"}

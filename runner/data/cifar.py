"""CIFAR-10 from its python-pickle batches, without torchvision's MD5 check.

Layout (what ``torchvision.datasets.CIFAR10(root, download=True)`` writes)::

    <root>/cifar-10-batches-py/
        data_batch_1 ... data_batch_5   training images, 10 000 each
        test_batch                      the official 10 000 test images
        batches.meta                    class names (``label_names``)

Each batch is a pickled dict with ``data`` (uint8 ``(N, 3072)``, rows are
R, G, B planes of 32 × 32) and ``labels`` (N ints). Files in this format
written by tests or converted by users load too: there is no MD5 check.

Batches are pickles, and a pickle can name any function to call while it is read.
They are therefore read with a restricted unpickler that admits only what the
format holds — dicts, lists, strings, bytes, numbers and numpy arrays (with the
numpy helpers that rebuild them) — and refuses a file naming anything else (such
as ``os.system`` or ``builtins.open``) before calling it. Pixel values must fit
uint8 (:mod:`runner.data.pixels`: integers in 0..255, floats in [0, 1] or
[0, 255]); labels must be class ids of ``batches.meta``.
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
from runner.data.pixels import to_uint8
from runner.data.prepare import BundleOptions, finish_bundle, label_ids, make_splits
from runner.errors import ConfigError, DataError

log = logging.getLogger(__name__)

FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


class UnsafeBatch(pickle.UnpicklingError):
    """A batch pickle names something outside what the CIFAR format holds."""


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """The callables a CIFAR batch pickle may name: numpy's array, dtype and scalar
    rebuilders (under the module names numpy 1 and 2 write) and the ``bytes`` decoder
    of protocol-2 pickles."""
    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy < 2
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for module in ("numpy.core", "numpy._core"):
        allowed[(f"{module}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{module}.multiarray", "scalar")] = multiarray.scalar
        allowed[(f"{module}.numeric", "_frombuffer")] = numeric._frombuffer
    return allowed


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """What protocol-2 pickles call to rebuild ``bytes`` (only with latin-1, as they do)."""
    if encoding.replace("-", "").lower() != "latin1" or not isinstance(text, str):
        raise UnsafeBatch(f"_codecs.encode with {encoding!r}")
    return text.encode("latin-1")


class BatchUnpickler(pickle.Unpickler):
    """Unpickles only plain data and numpy arrays; anything else raises :class:`UnsafeBatch`."""

    allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        found = self.allowed.get((module, name))
        if found is None:
            raise UnsafeBatch(f"{module}.{name}")
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeBatch(f"persistent id {pid!r}")


def load_pickle(path: Path) -> dict[str, Any]:
    """A batch or meta file as a dict with ``str`` keys, through :class:`BatchUnpickler`."""
    try:
        with open(path, "rb") as f:
            entry = BatchUnpickler(f, encoding="latin1").load()
    except UnsafeBatch as err:
        raise DataError(
            f"{path} is refused: its pickle names {err}, which a CIFAR-10 batch never holds "
            "(only dicts, lists, strings, numbers and numpy arrays). It may have been crafted "
            "to run code when loaded; nothing in it was run. Replace it with the original file."
        ) from None
    except Exception as err:  # unpickling errors come in many types
        raise DataError(
            f"{path} is not a CIFAR-10 python batch ({type(err).__name__}: {err})"
        ) from None
    if not isinstance(entry, dict):
        raise DataError(
            f"{path} is not a CIFAR-10 python batch: it holds a {type(entry).__name__}, "
            "not a dict with 'data' and 'labels'"
        )
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in entry.items()}


def read_batch(path: Path, num_classes: int = len(CLASSES)) -> tuple[torch.Tensor, torch.Tensor]:
    """One pickled batch as uint8 images ``(N, 3, 32, 32)`` and int64 labels ``(N,)``."""
    entry = load_pickle(path)
    label_key = next((k for k in ("labels", "fine_labels") if k in entry), None)
    absent = [k for k, there in (("data", "data" in entry), ("labels", label_key)) if not there]
    if absent:
        raise DataError(
            f"{path}: this batch has no {' and '.join(map(repr, absent))}; its keys are "
            f"{', '.join(map(repr, entry)) or 'none'}. A CIFAR-10 batch is a dict with 'data' "
            "(N × 3072 uint8) and 'labels' (N class ids)."
        )
    try:
        data, labels = np.asarray(entry["data"]), np.asarray(entry[label_key])
    except Exception as err:  # ragged lists and the like
        raise DataError(f"{path}: 'data' or {label_key!r} is not an array ({err})") from None
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels.shape != (len(data),):
        raise DataError(
            f"{path}: expected 'data' of shape (N, 3072) and N labels, "
            f"got data {data.shape} and labels {labels.shape}"
        )
    data = to_uint8(data, f"{path} ('data')")
    y = label_ids(labels, num_classes, f"{path} ({label_key!r})")
    x = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())
    return x, torch.from_numpy(y)


def read_classes(folder: Path) -> list[str]:
    """Class names from ``batches.meta`` (the standard names when it is absent)."""
    meta = folder / META
    if not meta.is_file():
        return list(CLASSES)
    names = load_pickle(meta).get("label_names")
    if names is not None and not isinstance(names, (list, tuple)):
        raise DataError(f"{meta}: 'label_names' is a {type(names).__name__}, not a list")
    classes = [n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names or ()]
    return classes or list(CLASSES)


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

    classes = read_classes(folder)
    parts = [read_batch(folder / f, len(classes)) for f in TRAIN_BATCHES]
    x = torch.cat([p[0] for p in parts])
    y = torch.cat([p[1] for p in parts])
    x_test, y_test = read_batch(folder / TEST_BATCH, len(classes))

    fraction = val_size / len(y) if val_size else val_fraction
    if not 0 <= fraction < 1:
        raise ConfigError(f"dataset.val_size={val_size} must be below the {len(y)} training images")
    names = [f"train#{i}" for i in range(len(y))]
    train, val, _ = make_splits(x, y, fraction, 0.0, seed, classes=classes, names=names)
    test = Split(x_test, y_test, [f"test#{i}" for i in range(len(y_test))])
    log.info("CIFAR-10: %d train, %d val, %d test", len(train), len(val), len(test))
    options = BundleOptions(normalize, subset, seed, augment, check_duplicates)
    return finish_bundle(name, classes, (train, val, test), options)

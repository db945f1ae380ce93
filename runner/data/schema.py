"""Schemas of the file-based datasets (picked up by :func:`runner.schema.register_all`).

Every key here is passed to the builder named in ``_target_`` together with
``seed`` (``trainer.seed``). Keys shared by all datasets (``root``,
``download``, ``val_fraction``, ``test_fraction``, ``normalize``, ``subset``,
``augment``) are documented on :class:`runner.schema.DatasetConf`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runner.schema import AugmentConf, DatasetConf


@dataclass
class CIFAR10Conf(DatasetConf):
    """CIFAR-10 python batches at ``<root>/cifar-10-batches-py/``; test = official test_batch."""

    _target_: str = "runner.data.cifar.load_cifar10"
    name: str = "cifar10"
    path: str = (
        ""  # the batches folder: absolute, relative to root, "" = <root>/cifar-10-batches-py
    )
    val_size: int = 5000  # images of the 50 000 held out for validation; 0 = use val_fraction
    val_fraction: float = 0.1  # used only when val_size is 0
    test_fraction: float = 0.0  # must stay 0: the official test_batch is the test split
    normalize: str = "half"  # half (S3) | dataset | imagenet | none
    check_duplicates: bool = True  # warn about identical images across splits


@dataclass
class MNISTConf(DatasetConf):
    """MNIST IDX files (``.gz`` or not) at ``<root>/MNIST/raw/`` (or ``path``)."""

    _target_: str = "runner.data.mnist.load_mnist"
    name: str = "mnist"
    path: str = (
        ""  # folder holding the IDX files: absolute, relative to root, "" = <root>/MNIST/raw
    )
    val_fraction: float = 0.1  # of the training file, stratified
    test_fraction: float = 0.0  # only with use_test_as_train (else the official test file)
    # true: only the official *test* file is used (e.g. when the train images are absent)
    # and divided into train/val/test by val_fraction and test_fraction (test_fraction > 0)
    use_test_as_train: bool = False
    check_duplicates: bool = True


@dataclass
class FashionMNISTConf(MNISTConf):
    _target_: str = "runner.data.mnist.load_fashion_mnist"
    name: str = "fashion_mnist"  # files at <root>/FashionMNIST/raw/ (path "" default)


@dataclass
class ImageFolderConf(DatasetConf):
    """Any folder of class sub-folders (see :mod:`runner.data.imagefolder`)."""

    _target_: str = "runner.data.imagefolder.load_image_folder"
    name: str = "imagefolder"
    path: str = ""  # absolute, relative to root, or "" = <root>/<name>
    image_size: int = 64  # pixels; shorter side resized to it, then centre crop
    channels: int = 3  # 3 (RGB) | 1 (grey); every image is converted
    val_fraction: float = 0.15  # ignored when a val/ split folder exists
    test_fraction: float = 0.15  # ignored when a test/ split folder exists
    group_regex: str = ""  # regex on file names; capture group 1 (or the match) = group
    group_csv: str = ""  # CSV listing files and groups (absolute or relative to the folder)
    group_column: str = ""  # the CSV column that holds the group
    group_file_column: str = ""  # the CSV column that holds the file; "" = auto-detect
    skip_corrupt: bool = False  # false: unreadable images are an error naming them
    cache: bool = True  # decode once into <root>/.cache/ and reuse
    check_duplicates: bool = True  # warn about identical images across splits
    streaming: Any = "auto"  # auto | true | false: decode batches from disk each epoch
    streaming_threshold_mb: float = 2048.0  # auto streams above this decoded size (MiB)
    num_workers: int = -1  # decoding threads / streaming DataLoader workers; -1 = CPUs (<= 8)


@dataclass
class FishConf(ImageFolderConf):
    """FishCam crops (Kratzert & Mader 2017) grouped by individual fish."""

    name: str = "fish"
    path: str = "fish_egu2017"
    image_size: int = 128
    group_regex: str = r"^(.+)_frame\d+"  # <video>_<camera>_fishN (or _nofishN)


@dataclass
class FoodConf(ImageFolderConf):
    """Indonesian food photos with train/ val/ test/ folders (S2 recipe)."""

    name: str = "food"
    path: str = "food_id"
    image_size: int = 224
    val_fraction: float = 0.2  # used only if the folder has no val/
    test_fraction: float = 0.0
    normalize: str = "imagenet"
    augment: AugmentConf = field(default_factory=lambda: AugmentConf(hflip=True))


SCHEMAS: dict[str, dict[str, type]] = {
    "dataset": {
        "cifar10": CIFAR10Conf,
        "mnist": MNISTConf,
        "fashion_mnist": FashionMNISTConf,
        "imagefolder": ImageFolderConf,
        "fish": FishConf,
        "food": FoodConf,
    }
}

"""Schemas of the ``dataset`` group (``conf/dataset/``): types only, values in the YAML.

``format`` names the dataset's entry in the dataset registry (:mod:`runner.data.registry`),
whose loader gets every other key plus ``seed`` (``trainer.seed``); ``name`` labels the
run. Keys every dataset shares live in ``conf/common/dataset.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from runner.schema.base import choice

Normalize = choice("Normalize", ("dataset", "half", "imagenet", "none"))
Policy = choice(
    "Policy",
    ("none", "randaugment", "trivialaugment", "autoaugment_imagenet", "autoaugment_cifar10",
     "autoaugment_svhn"),
)  # fmt: skip


@dataclass
class AugmentConf:
    """Training-time augmentation, applied in batches on the training device."""

    crop_padding: int = MISSING
    hflip: bool = MISSING
    random_resized_crop: bool = MISSING
    rotation: float = MISSING
    color_jitter: float = MISSING
    cutout: int = MISSING
    policy: Policy = MISSING
    policy_ops: int = MISSING
    policy_magnitude: int = MISSING
    random_erasing: float = MISSING
    translate: int = MISSING
    alternating_flip: bool = MISSING


@dataclass
class DatasetConf:
    format: str = MISSING  # the dataset registry's entry (runner.data.registry)
    name: str = MISSING
    root: str = MISSING
    download: bool = MISSING
    val_fraction: float = MISSING
    test_fraction: float = MISSING
    normalize: Normalize = MISSING
    subset: float = MISSING
    folds: int = MISSING
    fold: int = MISSING
    augment: AugmentConf = field(default_factory=AugmentConf)


@dataclass
class SyntheticConf(DatasetConf):
    num_samples: int = MISSING
    image_size: int = MISSING
    channels: int = MISSING
    num_classes: int = MISSING


@dataclass
class CIFAR10Conf(DatasetConf):
    path: str = MISSING
    val_size: int = MISSING
    check_duplicates: bool = MISSING


@dataclass
class MNISTConf(DatasetConf):
    path: str = MISSING
    use_test_as_train: bool = MISSING
    check_duplicates: bool = MISSING


@dataclass
class ImageFolderConf(DatasetConf):
    path: str = MISSING
    image_size: int = MISSING
    channels: int = MISSING
    group_regex: str = MISSING
    group_csv: str = MISSING
    group_column: str = MISSING
    group_file_column: str = MISSING
    skip_corrupt: bool = MISSING
    cache: bool = MISSING
    cache_dir: str = MISSING
    check_duplicates: bool = MISSING
    streaming: Any = MISSING  # auto | true | false
    streaming_threshold_mb: float = MISSING
    num_workers: int = MISSING


@dataclass
class TextCSVConf(DatasetConf):
    path: str = MISSING
    text_column: str = MISSING
    label_column: str = MISSING
    vocab_size: int = MISSING
    min_freq: int = MISSING
    lowercase: bool = MISSING
    max_length: int = MISSING


SCHEMAS = {
    "dataset": {
        "digits": DatasetConf,
        "synthetic": SyntheticConf,
        "cifar10": CIFAR10Conf,
        "mnist": MNISTConf,
        "imagefolder": ImageFolderConf,
        "text_csv": TextCSVConf,
    }
}

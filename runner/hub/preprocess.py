"""Feeding a pretrained model what its weights saw: ``model.preprocessing=weights``.

With named weights (torchvision, timm) or a runner run as ``model.weights``, the run takes
the weights' normalisation (mean/std) instead of ``dataset.normalize``, and datasets that
decode at a configured size (``dataset.image_size``: image folders, synthetic) are decoded
at the weights' crop size; fixed-size sources (MNIST, CIFAR-10, digits) keep theirs, and the
hub families resize them on the device to the size the network takes. The values used go
into the run's config (so the checkpoint, predict and export reuse them), into
``preprocessing.json`` in the run directory and into the checkpoint's preprocessing.
``model.preprocessing=dataset`` keeps the dataset's own.

The runner's image-folder decoder resizes the shorter side straight to the crop size and
centre-crops it (the weights' evaluation transform resized to ``resize_size`` first, which
``preprocessing.json`` records).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from omegaconf import DictConfig

from runner.data.base import DataBundle
from runner.hub.weights import WeightsPreprocessing, weights_preprocessing

log = logging.getLogger(__name__)


def follow_weights(cfg: DictConfig) -> WeightsPreprocessing | None:
    """The weights' preprocessing when the run follows it (else None); sets
    ``dataset.image_size`` to the weights' crop size where the dataset has that key."""
    model = cfg.model
    if str(model.get("preprocessing", "dataset")) != "weights":
        return None
    found = weights_preprocessing(model)
    if found is None:
        return None
    dataset = cfg.dataset
    if "image_size" in dataset and int(dataset.image_size) != found.crop_size:
        log.info(
            "model.preprocessing=weights: dataset.image_size %s -> %d (%s); "
            "model.preprocessing=dataset keeps the dataset's",
            dataset.image_size,
            found.crop_size,
            found.source,
        )
        dataset.image_size = found.crop_size
    return found


def apply(found: WeightsPreprocessing, data: DataBundle) -> DataBundle:
    """``data`` normalised with the weights' mean/std (their average for grey images), the
    record added as ``preprocessing.json``."""
    from runner.rundir import WEIGHTS_PREPROCESSING

    if data.kind != "image":
        return data
    channels = data.channels
    mean, std = found.mean, found.std
    if len(mean) != channels:  # RGB statistics for grey images: their average
        mean = (sum(mean) / len(mean),) * channels
        std = (sum(std) / len(std),) * channels
    log.info("normalisation of %s: mean %s, std %s", found.source, mean, std)
    record: dict[str, Any] = {
        **found.as_dict(),
        "applied": {
            "mean": list(mean),
            "std": list(std),
            "image_size": list(data.image_size),
            "dataset_normalize_replaced": True,
        },
    }
    artifacts = {**data.artifacts, WEIGHTS_PREPROCESSING: record}
    return replace(data, mean=tuple(mean), std=tuple(std), artifacts=artifacts)

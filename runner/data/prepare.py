"""What every dataset loader does between reading its data and returning a bundle.

- :func:`stratified_split` — the one train/val/test split by class; a split it
  cannot draw is a :class:`~runner.errors.DataError` that names the class counts;
- :func:`make_splits` — that split applied to in-memory tensors;
- :func:`label_ids` — stored labels checked to be class ids (a clear error otherwise);
- :func:`subset_per_class` — a stratified part of the training split;
- :func:`normalisation` and :func:`channel_stats` — the mean/std the loader
  normalises with;
- :func:`finish_bundle` with :class:`BundleOptions` — subset, duplicate check and
  normalisation, the steps every image loader shares after splitting;
- :func:`fold_bundle` — k-fold cross-validation (``dataset.folds``/``dataset.fold``) on
  any loaded bundle: train + validation pooled and re-split by fold.

Group-aware splitting and the duplicate check itself are leakage guards and live in
:mod:`runner.data.splits`; the sampling algorithm behind the stratified split is
:mod:`runner.data.stratify`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from runner.data.base import DataBundle, Split
from runner.data.stratify import split_stratified
from runner.errors import ConfigError, DataError

Stats = tuple[tuple[float, ...], tuple[float, ...]]

IMAGENET_STATS: Stats = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))

# ------------------------------------------------------------------ splitting


def stratified_split(
    y: np.ndarray,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    *,
    classes: Sequence[str] | None = None,
    noun: str = "images",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted indices of a stratified train/val/test split, fixed by ``seed``.

    Fractions are of the whole; 0 leaves that split empty. The split holds the same
    images as scikit-learn's ``train_test_split(stratify=…, random_state=seed)`` applied
    twice — test first, then validation from the rest (:mod:`runner.data.stratify`).

    Every split that is drawn needs at least one image of every class, and every class
    two images; otherwise a :class:`DataError` names the class counts (by name when
    ``classes`` maps label ids to names; ``noun`` is what the samples are called).
    Fractions outside [0, 1) or summing to 1 or more are a :class:`ConfigError`.
    """
    y = np.asarray(y)
    fractions_ok = 0 <= val_fraction < 1 and 0 <= test_fraction < 1
    if not fractions_ok or val_fraction + test_fraction >= 1:
        raise ConfigError(
            f"dataset.val_fraction={val_fraction} and dataset.test_fraction={test_fraction} "
            "must each be in [0, 1) and leave a training share (sum below 1)"
        )
    if len(y) == 0 and (val_fraction or test_fraction):
        raise DataError(f"no {noun} to split into train/val/test")

    def draw(part: np.ndarray, fraction: float, split: str) -> tuple[np.ndarray, np.ndarray]:
        """``part`` (indices into ``y``) divided into the rest and ``split``."""
        if fraction <= 0:
            return part, part[:0]
        try:
            keep, held = split_stratified(y[part], fraction, seed)
        except ValueError as err:
            reason = f"{split}: {err}"
            raise _split_error(y, val_fraction, test_fraction, reason, classes, noun) from None
        return part[keep], part[held]

    rest, test = draw(np.arange(len(y)), test_fraction, "test")
    train, val = draw(rest, val_fraction / (1.0 - test_fraction), "val")
    return np.sort(train), np.sort(val), np.sort(test)


def _split_error(
    y: np.ndarray,
    val_fraction: float,
    test_fraction: float,
    reason: str,
    classes: Sequence[str] | None,
    noun: str,
) -> DataError:
    labels, counts = np.unique(y, return_counts=True)
    names = [str(classes[int(c)]) if classes is not None else str(c) for c in labels]
    fewest = np.argsort(counts, kind="stable")
    shown = ", ".join(f"{names[i]}: {counts[i]}" for i in fewest[:10])
    more = f", and {len(labels) - 10} more" if len(labels) > 10 else ""
    return DataError(
        f"cannot split {len(y)} {noun} of {len(labels)} classes (smallest class: "
        f"{counts.min()} {noun}; {noun} per class, fewest first: {shown}{more}) into "
        f"val_fraction={val_fraction} and test_fraction={test_fraction} with every class in "
        f"every split (drawing {reason}). Use more {noun}, larger fractions, or 0 for a split "
        "you do not need."
    )


def make_splits(
    x: torch.Tensor,
    y: torch.Tensor | np.ndarray,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    *,
    classes: Sequence[str] | None = None,
    names: Sequence[str] | None = None,
) -> tuple[Split, Split, Split]:
    """Train/val/test :class:`Split` s of in-memory data by :func:`stratified_split`.

    ``names``: the source of each sample (kept with it), or None.
    """
    labels = torch.as_tensor(np.asarray(y), dtype=torch.long)
    parts = stratified_split(labels.numpy(), val_fraction, test_fraction, seed, classes=classes)

    def split(i: np.ndarray) -> Split:
        chosen = None if names is None else [names[j] for j in i]
        return Split(x[torch.as_tensor(i)], labels[i], chosen)

    train, val, test = (split(i) for i in parts)
    return train, val, test


def label_ids(values: np.ndarray, num_classes: int, source: str) -> np.ndarray:
    """Stored labels as int64 class ids, or a :class:`DataError` naming ``source``.

    Labels must be whole numbers in ``0 .. num_classes - 1``; the error gives the range
    found, how many labels lie outside and the first of them.
    """
    values = np.asarray(values)
    if values.dtype.kind not in "iuf" or (
        values.dtype.kind == "f" and not (np.isfinite(values).all() and (values % 1 == 0).all())
    ):
        raise DataError(
            f"{source}: labels must be whole numbers (class ids 0..{num_classes - 1}), got "
            f"values of type {values.dtype}"
        )
    y = values.astype(np.int64)
    bad = np.flatnonzero((y < 0) | (y >= num_classes))
    if len(bad):
        raise DataError(
            f"{source}: labels range {y.min()}..{y.max()} but there are {num_classes} classes "
            f"(ids 0..{num_classes - 1}); {len(bad)} label(s) outside, the first at position "
            f"{bad[0]} ({y[bad[0]]}). Fix the labels or the class list."
        )
    return y


def subset_per_class(y: np.ndarray, subset: float, seed: int) -> np.ndarray:
    """Sorted indices keeping ``subset`` of each class: a fraction if <= 1, else a count
    per class (at least one image of each class stays)."""
    if subset < 0:
        raise ConfigError(f"dataset.subset must be >= 0 (0 = all), got {subset}")
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        n = int(round(subset * len(members))) if subset <= 1 else int(subset)
        keep.append(rng.permutation(members)[: max(1, min(n, len(members)))])
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.int64)


# ------------------------------------------------------------------ normalisation


def normalisation(normalize: str, dataset_stats: Stats, channels: int) -> Stats:
    """(mean, std) per channel for ``normalize``, in [0, 1] pixel units.

    ``normalize``: dataset (``dataset_stats``) | half (0.5, 0.5) | imagenet (ImageNet's
    RGB statistics; their averages for grey images) | none (0, 1).
    """
    choices = {
        "dataset": dataset_stats,
        "half": ((0.5,) * channels, (0.5,) * channels),
        "imagenet": IMAGENET_STATS,
        "none": ((0.0,) * channels, (1.0,) * channels),
    }
    if normalize not in choices:
        raise ConfigError(f"unknown dataset.normalize {normalize!r}; valid: {', '.join(choices)}")
    mean, std = choices[normalize]
    if len(mean) != channels:  # e.g. imagenet stats on grey images
        mean, std = (float(np.mean(mean)),) * channels, (float(np.mean(std)),) * channels
    return tuple(mean), tuple(std)


def channel_stats(x: torch.Tensor, chunk: int = 2048) -> Stats:
    """Per-channel mean and std of uint8 images ``(N, C, H, W)``, in [0, 1] units.

    Accumulated in float64 over chunks of ``chunk`` images, so memory stays small.
    """
    if len(x) == 0:
        raise DataError("cannot compute dataset statistics of an empty training split")
    c = x.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    squares = torch.zeros(c, dtype=torch.float64)
    for start in range(0, len(x), chunk):
        part = x[start : start + chunk].to(torch.float32).div_(255.0).transpose(0, 1).reshape(c, -1)
        total += part.sum(1).double()
        squares += part.square().sum(1).double()
    n = x[0].numel() // c * len(x)
    mean = total / n
    std = (squares / n - mean.square()).clamp_min(0).sqrt().clamp_min(1e-6)
    return tuple(round(v, 4) for v in mean.tolist()), tuple(round(v, 4) for v in std.tolist())


# ------------------------------------------------------------------ assembly


@dataclass(frozen=True)
class BundleOptions:
    """The dataset keys an image loader applies once its splits are drawn.

    normalize: dataset (statistics of the train split, unless the loader knows them) |
    half | imagenet | none. subset: keep this part of each training class — a fraction
    if <= 1, else a count per class; 0 = all. seed: the subset's draw. augment: the
    ``dataset.augment`` settings the loader applies to training batches.
    check_duplicates: look for identical images across splits.
    """

    normalize: str = "dataset"
    subset: float = 0.0
    seed: int = 42
    augment: Any = None
    check_duplicates: bool = True


def finish_bundle(
    name: str,
    classes: Sequence[str],
    splits: tuple[Split, Split, Split],
    options: BundleOptions,
    *,
    stats: Stats | None = None,
    artifacts: dict[str, Any] | None = None,
    notes: Sequence[str] = (),
) -> DataBundle:
    """The image :class:`DataBundle` of train/val/test ``splits``, after the shared steps.

    ``options.subset`` keeps a stratified part of *train* only. With
    ``options.check_duplicates`` the cross-split duplicate pairs are put in
    ``artifacts["duplicates.csv"]`` (a DataFrame with
    :data:`runner.data.splits.DUPLICATE_COLUMNS`, empty when there are none); the run
    writes each artifact under its key's file name. ``stats``: the dataset's (mean, std)
    when known, else ``normalize: dataset`` measures the train split. ``notes``: the
    loader's sentences for the report (:attr:`DataBundle.notes`); duplicates add one.
    """
    train, val, test = splits
    notes = list(notes)
    if options.subset:
        keep = torch.as_tensor(subset_per_class(train.y.numpy(), options.subset, options.seed))
        names = [train.names[i] for i in keep.tolist()] if train.names is not None else None
        train = Split(train.x[keep], train.y[keep], names)
    artifacts = dict(artifacts or {})
    if options.check_duplicates:
        import pandas as pd

        from runner.data.splits import DUPLICATE_COLUMNS, find_cross_split_duplicates

        pairs = find_cross_split_duplicates(
            {k: (s.x, s.names) for k, s in (("train", train), ("val", val), ("test", test))}
        )
        artifacts["duplicates.csv"] = pd.DataFrame(pairs, columns=list(DUPLICATE_COLUMNS))
        if pairs:
            notes.append(
                f"{len(pairs)} identical image(s) appear in two splits (duplicates.csv): they "
                "inflate validation/test accuracy"
            )
    channels = int(train.x.shape[1])
    if options.normalize == "dataset" and stats is None:
        stats = channel_stats(train.x)
    mean, std = normalisation(options.normalize, stats or ((0.0,), (1.0,)), channels)
    return DataBundle(
        name=name,
        classes=list(classes),
        train=train,
        val=val,
        test=test,
        kind="image",
        mean=mean,
        std=std,
        augment=options.augment,
        artifacts=artifacts,
        notes=notes,
    )


# ------------------------------------------------------------------ k-fold


def fold_bundle(data: DataBundle, params: dict[str, Any], seed: int) -> DataBundle:
    """``data`` with train + validation pooled and re-split into fold ``params["fold"]``
    of ``params["folds"]`` (:func:`runner.data.splits.kfold_indices`); the test split stays.

    Groups come from the dataset's ``group_regex`` / ``group_csv`` when it has them (the
    frames of one fish stay in one fold). With ``normalize: dataset`` the image statistics
    are measured again on the fold's training part; a duplicate check runs again on the
    new splits. Streaming folders are refused (their images are not in memory).
    """
    from runner.data.splits import kfold_indices

    folds, fold = int(params["folds"]), int(params["fold"])
    if getattr(data.train, "streaming", False):
        raise ConfigError("dataset.folds needs the images in memory: set dataset.streaming=false")
    x = torch.cat([data.train.x, data.val.x])
    y = torch.cat([data.train.y, data.val.y])
    names = None
    if data.train.names is not None and data.val.names is not None:
        names = [*data.train.names, *data.val.names]
    groups = fold_groups(names, params)
    train_idx, val_idx = kfold_indices(y.numpy(), folds, fold, seed, groups)

    def take(idx: np.ndarray) -> Split:
        chosen = None if names is None else [names[i] for i in idx]
        return Split(x[torch.as_tensor(idx)], y[torch.as_tensor(idx)], chosen)

    train, val = take(train_idx), take(val_idx)
    mean, std = data.mean, data.std
    if data.kind == "image" and params.get("normalize") == "dataset":
        mean, std = channel_stats(train.x)
    artifacts = dict(data.artifacts)
    if "duplicates.csv" in artifacts:
        import pandas as pd

        from runner.data.splits import DUPLICATE_COLUMNS, find_cross_split_duplicates

        pairs = find_cross_split_duplicates(
            {k: (s.x, s.names) for k, s in (("train", train), ("val", val), ("test", data.test))}
        )
        artifacts["duplicates.csv"] = pd.DataFrame(pairs, columns=list(DUPLICATE_COLUMNS))
    return replace(data, train=train, val=val, mean=mean, std=std, artifacts=artifacts)


def fold_groups(names: Sequence[str] | None, params: dict[str, Any]) -> list[str] | None:
    """Each sample's group from the dataset's ``group_regex`` or ``group_csv`` (image
    folders), or None when the dataset has no groups."""
    regex, csv = params.get("group_regex") or "", params.get("group_csv") or ""
    if not (regex or csv) or names is None:
        return None
    from runner.data.splits import groups_from_csv, groups_from_regex

    if regex:
        return groups_from_regex(names, regex)
    from pathlib import Path

    from runner.data.imagefolder import resolve_folder

    folder = resolve_folder(params["root"], params.get("path", ""), params["name"])
    path = Path(csv) if Path(csv).is_absolute() else folder / csv
    return groups_from_csv(names, path, params["group_column"], params.get("group_file_column", ""))

"""Leakage guards: group-aware splitting and a cross-split duplicate check.

Stratified splitting by image lives in :func:`runner.data.prepare.stratified_split`;
this module adds what that one cannot see:

- **groups** — several images of one thing (frames of one fish, photos of one
  patient) must land in the same split, or validation measures recall of the
  thing rather than generalisation. :func:`groups_from_regex` and
  :func:`groups_from_csv` name each file's group; :func:`group_split` assigns
  whole groups to train/val/test, stratified by class.
- **exact duplicates** — the same image in two splits inflates validation/test
  accuracy. :func:`find_cross_split_duplicates` hashes decoded pixels and
  returns every cross-split pair (the run writes them to its directory).
"""

from __future__ import annotations

import hashlib
import re
import warnings
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from runner.errors import ConfigError, DataError

# ------------------------------------------------------------------ groups


def groups_from_regex(names: Sequence[str], pattern: str) -> list[str]:
    """Group of each file from a regular expression searched in its *file name*.

    The group is the first capture group if the pattern has one, else the whole
    match. A file the pattern does not match is its own group (with a warning
    giving the count and an example), so nothing is dropped silently.

    Example (fish frames ``..._fish3_frame12.png``): ``(.+_fish\\d+)_frame`` groups
    the frames of one fish; ``^(\\d{8}_\\d{6})`` groups by video.
    """
    try:
        regex = re.compile(pattern)
    except re.error as err:
        raise ConfigError(f"dataset.group_regex {pattern!r} is not a valid regex: {err}") from None
    groups, unmatched = [], []
    for name in names:
        base = PurePosixPath(name).name
        m = regex.search(base)
        if m is None:
            unmatched.append(name)
            groups.append(f"<file>{name}")
        else:
            groups.append(m.group(1) if regex.groups else m.group(0))
    if unmatched:
        warnings.warn(
            f"dataset.group_regex {pattern!r} matched no group in {len(unmatched)} of "
            f"{len(names)} file names (e.g. {unmatched[0]!r}); each such file is its own group",
            stacklevel=2,
        )
    return groups


def groups_from_csv(
    names: Sequence[str], csv_path: Path, group_column: str, file_column: str = ""
) -> list[str]:
    """Group of each file from a CSV that lists files and their group.

    Args:
        names: the files, as paths relative to the dataset folder (``class/file.png``).
        csv_path: a CSV (delimiter sniffed: ``,`` ``;`` tab ...).
        group_column: the column that holds the group (e.g. ``video_name``).
        file_column: the column that holds the file, as a path relative to the dataset
            folder or a bare file name; ``""`` = the first column whose values end in an
            image extension.

    Files the CSV does not list are their own group (with a warning).
    """
    import pandas as pd

    if not csv_path.is_file():
        raise DataError(f"dataset.group_csv: no file at {csv_path}")
    table = pd.read_csv(csv_path, sep=None, engine="python", dtype=str)
    if group_column not in table.columns:
        raise ConfigError(
            f"dataset.group_column {group_column!r} is not a column of {csv_path}; "
            f"columns: {', '.join(map(str, table.columns))}"
        )
    file_column = file_column or _guess_file_column(table, csv_path)
    if file_column not in table.columns:
        raise ConfigError(
            f"dataset.group_file_column {file_column!r} is not a column of {csv_path}; "
            f"columns: {', '.join(map(str, table.columns))}"
        )
    by_path: dict[str, str] = {}
    by_base: dict[str, str] = {}
    for file, group in zip(table[file_column], table[group_column]):
        key = str(file).replace("\\", "/").lstrip("./")
        by_path[key] = str(group)
        by_base[PurePosixPath(key).name] = str(group)
    groups, missing = [], []
    for name in names:
        group = by_path.get(name) or by_base.get(PurePosixPath(name).name)
        if group is None:
            missing.append(name)
            group = f"<file>{name}"
        groups.append(group)
    if missing:
        warnings.warn(
            f"{csv_path.name} lists no group for {len(missing)} of {len(names)} files "
            f"(e.g. {missing[0]!r}); each such file is its own group",
            stacklevel=2,
        )
    return groups


def _guess_file_column(table, csv_path: Path) -> str:
    from torchvision.datasets.folder import IMG_EXTENSIONS

    for column in table.columns:
        values = table[column].dropna().astype(str).str.lower()
        if len(values) and values.str.endswith(IMG_EXTENSIONS).mean() > 0.9:
            return str(column)
    raise ConfigError(
        f"no column of {csv_path} holds image file names; set dataset.group_file_column "
        f"to one of: {', '.join(map(str, table.columns))}"
    )


def group_split(
    y: np.ndarray, groups: Sequence[str], val_fraction: float, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of a train/val/test split that keeps every group in one split.

    Stratified by class: a group belongs to its majority class; within each class
    the groups are shuffled (``seed``) and each goes to test, else validation, if
    that split is still empty or the group brings it closer to ``test_fraction`` /
    ``val_fraction`` of the class's images; the rest go to train. Train always keeps
    at least one group of each class; a class with too few groups for val/test gets
    a warning.
    """
    y = np.asarray(y)
    groups_arr = np.asarray(groups, dtype=object)
    rng = np.random.default_rng(seed)
    members: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(groups_arr):
        members[g].append(i)
    by_class: dict[int, list[str]] = defaultdict(list)
    for g, idx in members.items():
        by_class[int(np.bincount(y[idx]).argmax())].append(g)
    parts: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    short: list[int] = []
    for c in sorted(by_class):
        class_groups = sorted(by_class[c])
        order = [class_groups[i] for i in rng.permutation(len(class_groups))]
        total = sum(len(members[g]) for g in order)
        taken = {"test": 0, "val": 0}
        for k, g in enumerate(order):
            size, dest = len(members[g]), "train"
            for split, frac in (("test", test_fraction), ("val", val_fraction)):
                target = frac * total
                # take the group if the split is still empty or it brings the count closer
                closer = abs(taken[split] + size - target) < abs(taken[split] - target)
                if k < len(order) - 1 and frac > 0 and (not taken[split] or closer):
                    dest = split
                    break
            if dest != "train":
                taken[dest] += size
            parts[dest].extend(members[g])
        if (test_fraction > 0 and not taken["test"]) or (val_fraction > 0 and not taken["val"]):
            short.append(c)
    if short:
        warnings.warn(
            f"classes {short} have too few groups to give every split one; their val/test "
            "splits are empty or small",
            stacklevel=2,
        )
    return tuple(np.sort(np.asarray(parts[s], dtype=np.int64)) for s in ("train", "val", "test"))


def check_group_disjoint(groups: Sequence[str], splits: Mapping[str, np.ndarray]) -> None:
    """Raise :class:`DataError` if a group appears in two splits (a guard, not a split)."""
    seen: dict[str, str] = {}
    g = np.asarray(groups, dtype=object)
    for split, idx in splits.items():
        for group in set(g[idx].tolist()):
            if group in seen and seen[group] != split:
                raise DataError(f"group {group!r} is in both {seen[group]} and {split}")
            seen[group] = split


# ------------------------------------------------------------------ duplicates

DUPLICATE_COLUMNS = ("hash", "split_a", "name_a", "split_b", "name_b")


def image_hashes(x: torch.Tensor) -> list[str]:
    """A 128-bit BLAKE2 hash of each image's decoded pixels (uint8 ``(N, ...)``)."""
    arr = x.detach().cpu().contiguous().numpy()
    return [hashlib.blake2b(arr[i].tobytes(), digest_size=16).hexdigest() for i in range(len(arr))]


def find_cross_split_duplicates(
    splits: Mapping[str, tuple[torch.Tensor, Sequence[str] | None]],
) -> list[dict[str, str]]:
    """Every pair of identical images (same decoded pixels) that sit in different splits.

    Args:
        splits: ``{split_name: (uint8 images (N, C, H, W), file names or None)}``.

    Returns:
        One dict per pair: ``hash``, ``split_a``, ``name_a``, ``split_b``, ``name_b``
        (names are file paths where known, else ``#<index>``). Also warns with a
        count and the first pairs, since such pairs inflate val/test accuracy.
    """
    first: dict[str, tuple[str, str]] = {}
    pairs: list[dict[str, str]] = []
    for split, (x, names) in splits.items():
        if len(x) == 0:
            continue
        seen_here: dict[str, str] = {}
        for i, h in enumerate(image_hashes(x)):
            name = names[i] if names is not None else f"#{i}"
            if h in first and first[h][0] != split:
                pairs.append(
                    {"hash": h, "split_a": first[h][0], "name_a": first[h][1]}
                    | {"split_b": split, "name_b": name}
                )
            seen_here.setdefault(h, name)
        for h, name in seen_here.items():
            first.setdefault(h, (split, name))
    if pairs:
        shown = "; ".join(
            f"{p['split_a']}:{p['name_a']} = {p['split_b']}:{p['name_b']}" for p in pairs[:5]
        )
        more = f" (and {len(pairs) - 5} more)" if len(pairs) > 5 else ""
        warnings.warn(
            f"{len(pairs)} identical image(s) appear in two splits, which inflates "
            f"validation/test accuracy: {shown}{more}",
            stacklevel=2,
        )
    return pairs


# ------------------------------------------------------------------ k-fold


def kfold_indices(
    y: np.ndarray, folds: int, fold: int, seed: int, groups: Sequence[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, validation) indices of fold ``fold`` of ``folds``.

    Stratified by class (scikit-learn's ``StratifiedKFold(shuffle=True,
    random_state=seed)``); with ``groups``, whole groups stay in one fold
    (``StratifiedGroupKFold``). Across ``fold = 0 .. folds-1`` every sample is in the
    validation split exactly once. scikit-learn is imported here, only when k-fold is on.
    """
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    if not 0 <= fold < folds:
        raise ConfigError(f"dataset.fold={fold} must be in 0..{folds - 1} (dataset.folds={folds})")
    y = np.asarray(y)
    splitter = (
        StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        if groups is not None
        else StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    )
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The least populated class")
            parts = list(splitter.split(np.zeros(len(y)), y, groups))
    except ValueError as err:
        raise DataError(
            f"cannot split {len(y)} samples into {folds} folds: {err}. Use fewer folds."
        ) from None
    train, val = parts[fold]
    return np.sort(train), np.sort(val)

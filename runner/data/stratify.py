"""scikit-learn's stratified ``train_test_split``, without importing scikit-learn.

The sampling step behind :func:`runner.data.prepare.stratified_split`, which is what
loaders call (it turns this module's ``ValueError`` into a ``DataError`` naming the class
counts). Why this exists: ``import sklearn`` costs ≈ 0.8 s, and the runner must reach its
first training step within 3 s of ``import torch``. Every run splits its data
before training, so the split cannot wait for a lazy import. This module follows
``StratifiedShuffleSplit`` (scikit-learn 1.x, BSD-3) step by step with the same
``numpy.random.RandomState`` stream, so a seed gives *exactly* the images that
``train_test_split(idx, test_size=f, stratify=y, random_state=seed)`` gives —
``tests/test_perf_options.py`` checks that against scikit-learn itself. Only the float
``test_size`` form the runner uses is supported.
"""

from __future__ import annotations

import math

import numpy as np


def _approximate_mode(counts: np.ndarray, n_draws: int, rng: np.random.RandomState) -> np.ndarray:
    """Images per class when drawing ``n_draws`` in proportion to ``counts``.

    Floors the proportional share, then hands the remainder to the classes with the
    largest fractional parts, breaking ties at random (scikit-learn's rule).
    """
    continuous = counts / counts.sum() * n_draws
    floored = np.floor(continuous)
    need = int(n_draws - floored.sum())
    if need > 0:
        remainder = continuous - floored
        for value in np.sort(np.unique(remainder))[::-1]:
            (inds,) = np.where(remainder == value)
            add_now = min(len(inds), need)
            floored[rng.choice(inds, size=add_now, replace=False)] += 1
            need -= add_now
            if need == 0:
                break
    return floored.astype(int)


def split_stratified(y: np.ndarray, test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``(kept, held_out)`` into ``y``: ``test_size`` of them (rounded up) held
    out, every class in proportion. Raises ``ValueError`` as scikit-learn does when a class
    has one member or a side would get fewer samples than there are classes."""
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size={test_size} should be in the (0, 1) range")
    n = len(y)
    n_test = math.ceil(test_size * n)
    n_train = n - n_test
    classes, y_idx, counts = np.unique(y, return_inverse=True, return_counts=True)
    if counts.min() < 2:
        few = classes[counts < 2].tolist()
        raise ValueError(f"classes with only 1 member cannot be stratified: {few}")
    for side, size in (("kept", n_train), ("held-out", n_test)):
        if size < len(classes):
            raise ValueError(
                f"the {side} part would get {size} samples, fewer than the {len(classes)} classes"
            )
    by_class = np.split(np.argsort(y_idx, kind="stable"), np.cumsum(counts)[:-1])
    rng = np.random.RandomState(seed)
    n_i = _approximate_mode(counts, n_train, rng)
    t_i = _approximate_mode(counts - n_i, n_test, rng)
    train: list[int] = []
    test: list[int] = []
    for members, k_train, k_test, count in zip(by_class, n_i, t_i, counts):
        shuffled = members.take(rng.permutation(count), mode="clip")
        train.extend(shuffled[:k_train])
        test.extend(shuffled[k_train : k_train + k_test])
    return rng.permutation(train), rng.permutation(test)

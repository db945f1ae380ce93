"""The metrics every part of the runner shares: macro-F1 and which way is better.

One definition each, so the loop, the callbacks, the diagnostics and the sweep tables
always agree on what "macro-F1" and "improved" mean.
"""

from __future__ import annotations

import math

import torch


def lower_is_better(metric: str) -> bool:
    """Losses are minimised; accuracies, F1 and AUC maximised."""
    return "loss" in str(metric)


def resolve_mode(metric: str, mode: str = "auto") -> str:
    """``min`` | ``max`` for ``metric``; ``auto`` picks min for losses, max otherwise."""
    if str(mode) != "auto":
        return str(mode)
    return "min" if lower_is_better(metric) else "max"


def improved(
    value: float | None, reference: float | None, mode: str, min_delta: float = 0.0
) -> bool:
    """Whether ``value`` beats ``reference`` by more than ``min_delta`` (NaN never does; any
    finite value beats no reference)."""
    if value is None or math.isnan(value):
        return False
    if reference is None:
        return True
    return value < reference - min_delta if mode == "min" else value > reference + min_delta


def confusion_counts(pred: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``(num_classes, num_classes)`` counts, rows = true class, columns = predicted."""
    flat = y.long() * num_classes + pred.long()
    return torch.bincount(flat, minlength=num_classes**2).view(num_classes, num_classes)


def macro_f1(pred: torch.Tensor, y: torch.Tensor, num_classes: int) -> float:
    """Macro-averaged F1 over the classes present in ``y`` or ``pred`` (scikit-learn's
    ``f1_score(average="macro", zero_division=0)``); NaN for no samples."""
    if len(y) == 0:
        return math.nan
    cm = confusion_counts(pred, y, num_classes).double()
    tp = cm.diag()
    denom = cm.sum(1) + cm.sum(0)
    present = denom > 0
    f1 = torch.where(present, 2 * tp / denom.clamp(min=1), torch.zeros_like(tp))
    return f1[present].mean().item()

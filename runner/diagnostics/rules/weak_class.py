"""weak_class: per class, one decision from the same numbers (test split) — never predicted,
cannot be told apart (one-vs-rest AUC far below the others), or separable but predicted too
rarely / too often (F1 far below the others). Not judged when the whole model is at chance
(the fit rule's chance_level says so)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from omegaconf import MISSING

from runner.diagnostics import advice as adv
from runner.diagnostics.advice import Change, advise
from runner.diagnostics.finding import AVERAGE_ROWS, diagnosis, pct
from runner.diagnostics.registry import RunContext, register_rule

SEE = ["eval/confusion_matrix.png", "eval/classification_report.csv", "eval/misclassified.png"]


@dataclass
class WeakClassConf:
    enabled: bool = MISSING
    auc_gap: float = MISSING
    f1_gap: float = MISSING
    min_support: int = MISSING
    min_median_f1: float = MISSING
    rare_ratio: float = MISSING


def weak_class(context: RunContext, c: WeakClassConf) -> list[dict[str, Any]]:
    """Each class with at least ``c.min_support`` test samples: never predicted → warning
    (never_predicted); when the other classes' median F1 is at least ``c.min_median_f1``:
    AUC ``c.auc_gap`` below their median AUC with a lower F1 → warning; F1 ``c.f1_gap``
    below their median → note, "too rarely" or "too often" from how often it was predicted
    compared with its support."""
    report = context.report
    if report is None or (context.chance is not None and context.chance.at_chance):
        return []
    table = report[~report["class"].isin(AVERAGE_ROWS)].reset_index(drop=True)
    if len(table) < 3:
        return []
    predicted = _predicted(context, table)
    out = []
    for i, row in table.iterrows():
        if row["support"] < c.min_support:
            continue
        others = table.drop(index=i)
        auc_med = float(np.nanmedian(others["auc"])) if others["auc"].notna().any() else math.nan
        f1_med = float(np.nanmedian(others["f1"]))
        numbers = {
            "auc": row["auc"],
            "median_auc_others": auc_med,
            "f1": row["f1"],
            "median_f1_others": f1_med,
            "recall": row["recall"],
            "precision": row["precision"],
            "support": int(row["support"]),
            "predicted": int(predicted[i]),
        }
        if predicted[i] == 0:
            out.append(_never_predicted(context, i, numbers, c))
            continue
        if f1_med < c.min_median_f1:  # the others are not learned either: nothing stands out
            continue
        weak_f1 = row["f1"] < f1_med - c.f1_gap
        weak_auc = not math.isnan(row["auc"]) and row["auc"] < auc_med - c.auc_gap
        if weak_auc and row["f1"] < f1_med:
            out.append(_inseparable(context, i, numbers))
        elif weak_f1:
            out.append(_threshold(context, i, numbers, c))
    return out


def _predicted(context: RunContext, table: Any) -> np.ndarray:
    """How often each class was predicted on the test split (confusion columns), else from
    precision and recall."""
    if context.confusion is not None:
        return np.asarray(context.confusion).sum(0).astype(np.int64)
    tp = table["recall"].to_numpy(float) * table["support"].to_numpy(float)
    precision = table["precision"].to_numpy(float)
    return np.where(precision > 0, np.round(tp / np.maximum(precision, 1e-12)), 0).astype(np.int64)


def _absorbed_by(context: RunContext, i: int) -> str:
    """The class that took most of class ``i``'s test images, in words."""
    if context.confusion is None:
        return ""
    row = np.asarray(context.confusion)[i].copy()
    row[i] = 0
    if not row.sum():
        return ""
    j = int(row.argmax())
    total = int(np.asarray(context.confusion)[i].sum())
    return f" (most went to {context.classes[j]!r}: {int(row[j])} of {total})"


def _rare_in_training(context: RunContext, i: int, c: WeakClassConf) -> str:
    counts = context.class_counts.get("train") or []
    if len(counts) <= i:
        return ""
    median = float(np.median(counts))
    if counts[i] * c.rare_ratio > median:
        return ""
    return f"only {counts[i]} training images vs a median {median:.0f}"


def _never_predicted(context: RunContext, i: int, n: dict[str, Any], c: WeakClassConf) -> dict:
    name = context.classes[i]
    message = (
        f"Class {name!r} was never predicted: none of its {n['support']} test images was "
        f"classified as {name!r}{_absorbed_by(context, i)}."
    )
    if not math.isnan(n["auc"]):
        message += f" Its one-vs-rest AUC is {n['auc']:.3f}: its scores " + (
            "still rank it, but another class always scores higher."
            if n["auc"] >= 0.7
            else "barely rank it."
        )
    s = context.settings
    weights = s.get("trainer.class_weights")
    rare = _rare_in_training(context, i, c)
    items: list[Change | str | None] = []
    if _zero_weight(weights, i):
        message += (
            f" Most likely cause: `trainer.class_weights` gives it a weight of "
            f"{adv.fmt(float(weights[i]))}, so the loss never asks for it."
        )
        items.append(Change("trainer.class_weights", "balanced", "or null"))
    if rare:
        message += f" It has {rare}."
        items.append(
            Change("trainer.class_weights", "balanced", "weights each class by 1 / its count")
        )
    items += [
        "train longer",
        f"check {name!r}'s images and labels against the class that absorbs them",
    ]
    text, fix = advise(s, items)
    return diagnosis("never_predicted", "warning", message, n, text, fix=fix, see=SEE)


def _zero_weight(weights: Any, i: int) -> bool:
    """Whether a list of class weights gives class ``i`` at most 1 % of the largest."""
    if not isinstance(weights, list) or i >= len(weights):
        return False
    return float(weights[i]) <= 0.01 * max(float(w) for w in weights)


def _inseparable(context: RunContext, i: int, n: dict[str, Any]) -> dict:
    name = context.classes[i]
    message = (
        f"Class {name!r} is much weaker than the others: one-vs-rest AUC {n['auc']:.3f} vs a "
        f"median {n['median_auc_others']:.3f} for the other classes, F1 {n['f1']:.3f} vs "
        f"{n['median_f1_others']:.3f} (recall {pct(n['recall'])}, {n['support']} test images)"
        f"{_absorbed_by(context, i)}: the model cannot tell it apart."
    )
    advice = (
        f"Read {name!r}'s row of the confusion matrix and eval/misclassified.png: which classes "
        "absorb it? Check its labels and images for mistakes or look-alikes of another class; "
        "collect more examples. Class weights or targeted augmentation help only once the class "
        "is learnable."
    )
    return diagnosis("weak_class", "warning", message, n, advice, see=SEE)


def _threshold(context: RunContext, i: int, n: dict[str, Any], c: WeakClassConf) -> dict:
    name = context.classes[i]
    how = "too rarely" if n["predicted"] < n["support"] else "too often"
    message = (
        f"Class {name!r} is predicted {how}: {n['predicted']} prediction"
        f"{'s' if n['predicted'] != 1 else ''} for {n['support']} test "
        f"images (precision {pct(n['precision'])}, recall {pct(n['recall'])}); F1 {n['f1']:.3f} vs "
        f"a median {n['median_f1_others']:.3f} for the other classes"
        + (
            f", while its one-vs-rest AUC {n['auc']:.3f} is close to theirs"
            if not math.isnan(n["auc"])
            else ""
        )
        + "."
    )
    rare = _rare_in_training(context, i, c) if how == "too rarely" else ""
    items: list[Change | str | None] = []
    if rare:
        message += f" It has {rare}."
        items.append(
            Change("trainer.class_weights", "balanced", "weights each class by 1 / its count")
        )
    items += ["train longer", "see the confusion matrix for the class it is confused with"]
    text, fix = advise(context.settings, items)
    return diagnosis("weak_class", "info", message, n, text, fix=fix, see=SEE)


register_rule(
    "weak_class",
    weak_class,
    WeakClassConf,
    description="never_predicted / a class far weaker than the others (test split)",
)

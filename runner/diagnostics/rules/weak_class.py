"""weak_class: classes whose one-vs-rest AUC or F1 on the test split is far below the
other classes' median."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from omegaconf import MISSING

from runner.diagnostics.finding import AVERAGE_ROWS, diagnosis, pct
from runner.diagnostics.registry import RunContext, register_rule


@dataclass
class WeakClassConf:
    enabled: bool = MISSING
    auc_gap: float = MISSING
    f1_gap: float = MISSING
    min_support: int = MISSING


def weak_class(context: RunContext, c: WeakClassConf) -> list[dict[str, Any]]:
    """A weak AUC → warning (the model cannot tell the class apart); only a weak F1 → info
    (separable, but predicted too rarely or too often)."""
    report = context.report
    if report is None:
        return []
    table = report[~report["class"].isin(AVERAGE_ROWS)].reset_index(drop=True)
    if len(table) < 3:
        return []
    out = []
    for i, row in table.iterrows():
        if row["support"] < c.min_support:
            continue
        others = table.drop(index=i)
        auc_med = float(np.nanmedian(others["auc"])) if others["auc"].notna().any() else math.nan
        f1_med = float(np.nanmedian(others["f1"]))
        weak_auc = not math.isnan(row["auc"]) and row["auc"] < auc_med - c.auc_gap
        weak_f1 = row["f1"] < f1_med - c.f1_gap
        if not (weak_auc or weak_f1):
            continue
        numbers = (
            f"one-vs-rest AUC {row['auc']:.3f} vs a median {auc_med:.3f} for the other classes; "
            f"F1 {row['f1']:.3f} vs {f1_med:.3f} (recall {pct(row['recall'])}, "
            f"{int(row['support'])} test samples)"
        )
        if weak_auc:  # the model cannot tell this class from the rest
            severity = "warning"
            message = f"Class {row['class']!r} is much weaker than the others: {numbers}."
            advice = (
                f"Read {row['class']!r}'s row of the confusion matrix and eval/misclassified.png:"
                " which classes absorb it? Check its labels and images for mistakes or "
                "look-alikes of another class; collect more examples. Class weights "
                "(trainer.class_weights=balanced) or targeted augmentation help only when the "
                "class is learnable."
            )
        else:  # separable (AUC fine) but rarely chosen: a threshold / training-time matter
            severity = "info"
            how = "too rarely" if row["recall"] < row["precision"] else "too often"
            message = f"Class {row['class']!r} is ranked well but predicted {how}: {numbers}."
            advice = (
                "Its scores separate it from the rest, so the model is close: train longer, or "
                "balance the classes (trainer.class_weights=balanced); see the confusion matrix "
                "for the class it is confused with."
            )
        evidence = {
            "auc": row["auc"],
            "median_auc_others": auc_med,
            "f1": row["f1"],
            "median_f1_others": f1_med,
            "recall": row["recall"],
            "support": int(row["support"]),
        }
        out.append(diagnosis("weak_class", severity, message, evidence, advice))
    return out


register_rule(
    "weak_class",
    weak_class,
    WeakClassConf,
    description="a class with a far lower AUC or F1 than the others",
)

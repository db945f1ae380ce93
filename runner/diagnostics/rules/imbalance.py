"""imbalance: training classes of very different sizes, with their counts — and whether the
loss compensates (``trainer.class_weights``) and the rare classes' test recall lags."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from omegaconf import MISSING

from runner.diagnostics.advice import Change, advise
from runner.diagnostics.finding import AVERAGE_ROWS, diagnosis, pct
from runner.diagnostics.registry import RunContext, register_rule


@dataclass
class ImbalanceConf:
    enabled: bool = MISSING
    ratio: float = MISSING
    recall_gap: float = MISSING


def imbalance(context: RunContext, c: ImbalanceConf) -> list[dict[str, Any]]:
    """Largest / smallest training class at least ``c.ratio``: a warning when the rarest
    class's test recall is ``c.recall_gap`` or more below the most frequent class's (or
    there is no test split to tell), else a note; the advice depends on whether
    ``trainer.class_weights`` already compensates."""
    counts = np.asarray(context.class_counts.get("train") or [], dtype=np.int64)
    if counts.size < 2:
        return []
    names = context.classes
    big, small = int(counts.argmax()), int(counts.argmin())
    ratio = counts[big] / max(counts[small], 1)
    if counts[small] and ratio < c.ratio:
        return []
    listed = ", ".join(f"{names[i]} {counts[i]}" for i in np.argsort(-counts))
    message = (
        f"Imbalanced training classes: {names[big]!r} has {counts[big]} images, {names[small]!r} "
        f"{counts[small]} ({ratio:.1f}×); all: {listed}."
    )
    recall = _recalls(context)
    gap = recall[big] - recall[small] if recall is not None else float("nan")
    if recall is not None:
        message += (
            f" Test recall of {names[small]!r} {pct(recall[small])} vs {names[big]!r} "
            f"{pct(recall[big])}."
        )
    s = context.settings
    weights = s.get("trainer.class_weights")
    lagging = not (gap < c.recall_gap)  # NaN (no test split) counts as lagging
    if weights in (None, "null"):
        message += " The loss weights every image alike, so the frequent classes dominate it."
    else:
        message += f" `trainer.class_weights={weights}` compensates in the loss."
    severity = "warning" if lagging else "info"
    items: list[Change | str | None] = [
        Change("trainer.class_weights", "balanced", "weights each class by 1 / its count"),
        f"collect more {names[small]!r} images" if severity == "warning" else None,
        "watch macro-F1 (trainer.monitor=val_macro_f1) rather than accuracy",
    ]
    text, fix = advise(s, items)
    evidence = {"largest": int(counts[big]), "smallest": int(counts[small]), "ratio": ratio}
    evidence.update(recall_rarest=recall[small] if recall is not None else None, recall_gap=gap)
    see = ["class_counts.csv", "eval/classification_report.csv", "eval/confusion_matrix.png"]
    return [diagnosis("imbalance", severity, message, evidence, text, fix=fix, see=see)]


def _recalls(context: RunContext) -> np.ndarray | None:
    report = context.report
    if report is None:
        return None
    table = report[~report["class"].isin(AVERAGE_ROWS)]
    return table["recall"].to_numpy(dtype=float)


register_rule(
    "imbalance",
    imbalance,
    ImbalanceConf,
    description="training classes of very different sizes",
)

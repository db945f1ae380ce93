"""What the rules read: the run's tables, its summary and its config as plain data.

:class:`RunContext` holds the tables written to the run directory plus the data facts the
rules need (class counts per split, cross-split duplicates, the test confusion counts) and
offers the numbers several rules share, computed once: :attr:`RunContext.settings` (the
config, read by dotted key) and :attr:`RunContext.chance` (the evaluated accuracy against
always guessing the majority class).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from runner.diagnostics.finding import AVERAGE_ROWS

if TYPE_CHECKING:
    import pandas as pd

CHANCE_Z = (
    2.0  # an accuracy within this many binomial standard errors of the majority rate is chance
)


@dataclass(frozen=True)
class Chance:
    """The evaluated accuracy against the majority-class rate of the same split.

    split: test | val. accuracy: the model's (test, else the best epoch's validation).
    majority: share of the most frequent class in that split (what always guessing it
    scores). margin: ``CHANCE_Z`` binomial standard errors of that rate for ``n`` samples.
    """

    split: str
    accuracy: float
    majority: float
    majority_class: str
    n: int
    margin: float

    @property
    def at_chance(self) -> bool:
        return self.accuracy <= self.majority + self.margin


@dataclass
class RunContext:
    """Everything a run-level rule may read; tables are those written to the run directory.

    history: ``metrics.csv`` rows (epoch, train_loss, train_acc, val_loss, val_acc, lr, ...).
    summary: the run's summary so far (status, stop_reason, epochs_run, monitor, precision,
        classes, test_acc, ...; see ``summary.json``).
    report: the per-class test table (``eval/classification_report.csv``: class, precision,
        recall, f1, support, auc, plus "macro avg" / "weighted avg" rows); None = no test.
    confusion: the test confusion counts (rows true, columns predicted); None = no test.
    gradients / steps / activations: ``diagnostics/gradients.csv``, ``steps.csv``,
        ``activations.csv`` (:class:`runner.diagnostics.recorder.TrainingRecorder`).
    num_classes: 0 = from ``summary["classes"]``, else from the report.
    config: the run's config as plain data (resolved), ``{}`` when unknown.
    class_counts: images per class and split, ``{"train": [...], "val": [...], "test": [...]}``
        (``class_counts.csv``); ``{}`` when unknown.
    duplicates: identical inputs across splits (``duplicates.csv``: a, b, ...); None = not
        checked.
    trainable_params: parameters that receive gradients (0 = unknown).
    input_shape: one sample's shape, ``(C, H, W)`` for images, ``(L,)`` for text; ``()``
        unknown.
    """

    history: pd.DataFrame = field(default_factory=lambda: _frame())
    summary: dict[str, Any] = field(default_factory=dict)
    report: pd.DataFrame | None = None
    confusion: np.ndarray | None = None
    gradients: pd.DataFrame | None = None
    steps: pd.DataFrame | None = None
    activations: pd.DataFrame | None = None
    num_classes: int = 0
    config: dict[str, Any] = field(default_factory=dict)
    class_counts: dict[str, list[int]] = field(default_factory=dict)
    duplicates: pd.DataFrame | None = None
    trainable_params: int = 0
    input_shape: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not self.num_classes:
            classes = self.summary.get("classes") or []
            if classes:
                self.num_classes = len(classes)
            elif self.report is not None:
                self.num_classes = int((~self.report["class"].isin(AVERAGE_ROWS)).sum())

    @property
    def classes(self) -> list[str]:
        """Class names (from the summary, else the report, else their indices)."""
        if self.summary.get("classes"):
            return [str(c) for c in self.summary["classes"]]
        if self.report is not None:
            return [str(c) for c in self.report["class"] if c not in AVERAGE_ROWS]
        return [str(i) for i in range(self.num_classes)]

    @cached_property
    def settings(self) -> Any:
        """The config read by dotted key (:class:`runner.diagnostics.advice.Settings`)."""
        from runner.diagnostics.advice import Settings

        return Settings(self.config)

    @cached_property
    def chance(self) -> Chance | None:
        """The evaluated accuracy against the majority-class rate; None when no split was
        evaluated or its class counts are unknown."""
        for split, key in (("test", "test_acc"), ("val", "best_val_acc")):
            counts = self.class_counts.get(split) or []
            accuracy = self.summary.get(key)
            n = int(sum(counts))
            if accuracy is None or not n or math.isnan(float(accuracy)):
                continue
            top = int(np.argmax(counts))
            rate = counts[top] / n
            margin = CHANCE_Z * math.sqrt(max(rate * (1 - rate), 1e-12) / n)
            names = self.classes
            name = names[top] if top < len(names) else str(top)
            return Chance(split, float(accuracy), rate, name, n, margin)
        return None


@dataclass
class SweepContext:
    """What a sweep-level rule reads: one dict per run, ``{"model": name, "summary":
    summary.json dict, "metrics": metrics.csv DataFrame, "job": number, "overrides": [...]}``
    (the last two where known)."""

    runs: list[dict[str, Any]]


def _frame() -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame()

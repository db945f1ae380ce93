"""Test-split evaluation: per-class report, confusion matrix, ROC curves and AUC.

The numbers are scikit-learn's definitions — ``precision_recall_fscore_support``
(``zero_division=0``), ``roc_curve`` and ``roc_auc_score`` (one-vs-rest) — computed here with
NumPy from the confusion counts and the sorted scores, because importing ``sklearn.metrics``
costs about 1.2 s after every run on 2 cores, more than the rest of the evaluation
(``tests/test_evaluate.py`` checks every number against scikit-learn). Accuracy and macro-F1
come from :mod:`runner.metrics`, the definitions the loop uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class Evaluation:
    """Numbers of one split; tables as DataFrames ready for CSV."""

    accuracy: float
    macro_f1: float
    loss: float
    report: pd.DataFrame  # per class + macro avg + weighted avg: precision recall f1 support auc
    confusion: pd.DataFrame  # rows true, columns predicted, counts
    top_k: dict[str, float]


def per_class_scores(confusion: np.ndarray) -> tuple[np.ndarray, ...]:
    """Precision, recall, F1 and support per class from ``(K, K)`` counts (rows true,
    columns predicted); 0 where a ratio has no denominator (scikit-learn's
    ``zero_division=0``)."""
    cm = np.asarray(confusion, dtype=np.float64)
    tp, predicted, support = np.diag(cm), cm.sum(0), cm.sum(1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    both = predicted + support
    f1 = np.divide(2 * tp, both, out=np.zeros_like(tp), where=both > 0)
    return precision, recall, f1, support.astype(np.int64)


def classification_table(
    confusion: np.ndarray,
    proba: np.ndarray | None,
    y_true: np.ndarray,
    classes: list[str],
    macro_f1: float | None = None,
) -> pd.DataFrame:
    """Per-class precision, recall, f1, support and one-vs-rest ROC AUC, plus macro and
    weighted rows. ``macro_f1``: the macro row's f1 (:func:`runner.metrics.macro_f1`, so it
    equals the run's ``test_macro_f1``); None = the mean of the per-class F1."""
    import pandas as pd

    p, r, f, s = per_class_scores(confusion)
    auc = per_class_auc(y_true, proba, len(classes)) if proba is not None else [math.nan] * len(p)
    auc = np.asarray(auc, dtype=np.float64)
    table = pd.DataFrame(
        {"class": classes, "precision": p, "recall": r, "f1": f, "support": s, "auc": auc}
    )
    valid = ~np.isnan(auc)
    rows = []
    for avg, weights in (("macro", None), ("weighted", s)):
        if weights is not None and weights.sum() == 0:
            weights = None
        means = [float(np.average(v, weights=weights)) if len(v) else 0.0 for v in (p, r, f)]
        w_auc = None if weights is None else weights[valid]
        mean_auc = (
            float(np.average(auc[valid], weights=w_auc))
            if valid.any() and (w_auc is None or w_auc.sum() > 0)
            else math.nan
        )
        if avg == "macro" and macro_f1 is not None:
            means[2] = macro_f1
        row = dict(zip(("precision", "recall", "f1"), means))
        rows.append({"class": f"{avg} avg", **row, "support": int(s.sum()), "auc": mean_auc})
    return pd.concat([table, pd.DataFrame(rows)], ignore_index=True)


def binary_roc(positive: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, ...]:
    """``fpr, tpr, thresholds`` of one binary problem, as scikit-learn's ``roc_curve``
    (``drop_intermediate=True``): one point per distinct score, collinear points dropped, a
    first point (0, 0) at threshold +inf."""
    positive = np.asarray(positive, dtype=bool)
    order = np.argsort(score, kind="mergesort")[::-1]
    score, positive = np.asarray(score)[order], positive[order]
    cut = np.r_[np.flatnonzero(np.diff(score)), positive.size - 1]
    tps = np.cumsum(positive)[cut].astype(np.float64)
    fps = 1 + cut - tps
    thresholds = score[cut]
    if len(fps) > 2:
        keep = np.flatnonzero(np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True])
        fps, tps, thresholds = fps[keep], tps[keep], thresholds[keep]
    fps, tps = np.r_[0.0, fps], np.r_[0.0, tps]
    thresholds = np.r_[np.inf, thresholds]
    return fps / fps[-1], tps / tps[-1], thresholds


def binary_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """Area under :func:`binary_roc` (trapezoids), as ``roc_auc_score``; NaN when only one
    class is present."""
    positive = np.asarray(positive, dtype=bool)
    if positive.all() or not positive.any():
        return math.nan
    fpr, tpr, _ = binary_roc(positive, score)
    return float(np.trapezoid(tpr, fpr))


def per_class_auc(y_true: np.ndarray, proba: np.ndarray, num_classes: int) -> list[float]:
    """One-vs-rest ROC AUC per class; NaN where the class is absent or alone."""
    return [binary_auc(y_true == c, proba[:, c]) for c in range(num_classes)]


def evaluate_logits(
    logits: Any, y: Any, classes: list[str], ks: tuple[int, ...] = (1, 5)
) -> Evaluation:
    """Everything the report needs from logits (N, K) and labels (N,) as torch tensors."""
    import pandas as pd
    import torch
    import torch.nn.functional as F

    from runner.metrics import confusion_counts, macro_f1

    proba = torch.softmax(logits, 1).numpy()
    pred_t = logits.argmax(1)
    y_np, pred = y.numpy(), pred_t.numpy()
    cm = confusion_counts(pred_t, y, len(classes)).numpy()
    f1 = macro_f1(pred_t, y, len(classes))
    top_k = {}
    for k in ks:
        if k <= len(classes) and len(y_np):
            hits = (logits.topk(k, 1).indices == y[:, None]).any(1).float().mean().item()
            top_k[f"top{k}_acc"] = hits
    return Evaluation(
        accuracy=float((pred == y_np).mean()) if len(y_np) else math.nan,
        macro_f1=f1,
        loss=float(F.cross_entropy(logits, y).item()) if len(y_np) else math.nan,
        report=classification_table(cm, proba, y_np, classes, f1),
        confusion=pd.DataFrame(cm, index=pd.Index(classes, name="true"), columns=classes),
        top_k=top_k,
    )


def roc_curves(y_true: np.ndarray, proba: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """One-vs-rest ROC curve points of every class plus the micro average over all
    (sample, class) pairs.

    Columns: class, fpr, tpr, threshold, auc. Classes absent from ``y_true`` (or the only
    class present) have no curve.
    """
    import pandas as pd

    frames = []
    onehot = np.zeros((len(y_true), len(classes)), dtype=bool)
    if len(y_true):
        onehot[np.arange(len(y_true)), y_true] = True
    curves = [(name, onehot[:, c], proba[:, c]) for c, name in enumerate(classes)]
    if len(classes) > 2:
        curves.append(("micro avg", onehot.ravel(), proba.ravel()))
    for name, positive, score in curves:
        if positive.all() or not positive.any():
            continue
        fpr, tpr, thr = binary_roc(positive, score)
        auc = float(np.trapezoid(tpr, fpr))
        frames.append(
            pd.DataFrame({"class": name, "fpr": fpr, "tpr": tpr, "threshold": thr, "auc": auc})
        )
    columns = ["class", "fpr", "tpr", "threshold", "auc"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def confident_errors(
    proba: np.ndarray, y_true: np.ndarray, classes: list[str], k: int
) -> pd.DataFrame:
    """The ``k`` wrong predictions with the highest predicted-class probability.

    Columns: index (row in the split), true, pred (class names), confidence (probability of
    the predicted class), p_true (probability given to the true class); most confident first.
    """
    import pandas as pd

    columns = ["index", "true", "pred", "confidence", "p_true"]
    if not len(y_true) or k <= 0:
        return pd.DataFrame(columns=columns)
    pred = proba.argmax(1)
    wrong = np.flatnonzero(pred != y_true)
    confidence = proba[wrong, pred[wrong]]
    order = wrong[np.argsort(-confidence, kind="stable")][:k]
    names = np.asarray(classes, dtype=object)
    return pd.DataFrame(
        {
            "index": order,
            "true": names[y_true[order]],
            "pred": names[pred[order]],
            "confidence": proba[order, pred[order]],
            "p_true": proba[order, y_true[order]],
        },
        columns=columns,
    )

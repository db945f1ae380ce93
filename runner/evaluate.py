"""Test-split evaluation: per-class report, confusion matrix and ROC AUC with scikit-learn;
accuracy and macro-F1 from :mod:`runner.metrics`, the definitions the loop uses."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
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


def classification_table(
    y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray | None, classes: list[str]
) -> pd.DataFrame:
    """Per-class precision, recall, f1, support and one-vs-rest ROC AUC, plus macro and weighted
    rows (scikit-learn's numbers; the macro row's f1 is :func:`runner.metrics.macro_f1`, so
    it equals the run's ``test_macro_f1``)."""
    import torch
    from sklearn.metrics import precision_recall_fscore_support

    from runner.metrics import macro_f1

    labels = np.arange(len(classes))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    auc = per_class_auc(y_true, proba, len(classes)) if proba is not None else [math.nan] * len(p)
    table = pd.DataFrame(
        {"class": classes, "precision": p, "recall": r, "f1": f, "support": s, "auc": auc}
    )
    rows = []
    for avg in ("macro", "weighted"):
        ap, ar, af, _ = precision_recall_fscore_support(
            y_true, y_pred, labels=labels, average=avg, zero_division=0
        )
        valid = ~np.isnan(auc)
        weights = s[valid] if avg == "weighted" else None
        mean_auc = (
            float(np.average(np.asarray(auc)[valid], weights=weights))
            if valid.any() and (weights is None or weights.sum() > 0)
            else math.nan
        )
        if avg == "macro":
            af = macro_f1(torch.as_tensor(y_pred), torch.as_tensor(y_true), len(classes))
        rows.append(
            {
                "class": f"{avg} avg",
                "precision": ap,
                "recall": ar,
                "f1": af,
                "support": int(s.sum()),
                "auc": mean_auc,
            }
        )
    return pd.concat([table, pd.DataFrame(rows)], ignore_index=True)


def per_class_auc(y_true: np.ndarray, proba: np.ndarray, num_classes: int) -> list[float]:
    """One-vs-rest ROC AUC per class; NaN where the class is absent or alone."""
    from sklearn.metrics import roc_auc_score

    out = []
    for c in range(num_classes):
        positive = y_true == c
        if positive.all() or not positive.any():
            out.append(math.nan)
        else:
            out.append(float(roc_auc_score(positive, proba[:, c])))
    return out


def evaluate_logits(
    logits: Any, y: Any, classes: list[str], ks: tuple[int, ...] = (1, 5)
) -> Evaluation:
    """Everything the report needs from logits (N, K) and labels (N,) as torch tensors."""
    import torch
    import torch.nn.functional as F

    from runner.metrics import confusion_counts, macro_f1

    proba = torch.softmax(logits, 1).numpy()
    pred_t = logits.argmax(1)
    y_np, pred = y.numpy(), pred_t.numpy()
    cm = confusion_counts(pred_t, y, len(classes)).numpy()
    top_k = {}
    for k in ks:
        if k <= len(classes) and len(y_np):
            hits = (logits.topk(k, 1).indices == y[:, None]).any(1).float().mean().item()
            top_k[f"top{k}_acc"] = hits
    return Evaluation(
        accuracy=float((pred == y_np).mean()) if len(y_np) else math.nan,
        macro_f1=macro_f1(pred_t, y, len(classes)),
        loss=float(F.cross_entropy(logits, y).item()) if len(y_np) else math.nan,
        report=classification_table(y_np, pred, proba, classes),
        confusion=pd.DataFrame(cm, index=pd.Index(classes, name="true"), columns=classes),
        top_k=top_k,
    )


def roc_curves(y_true: np.ndarray, proba: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """One-vs-rest ROC curve points of every class (scikit-learn's ``roc_curve``) plus the
    micro average over all (sample, class) pairs.

    Columns: class, fpr, tpr, threshold, auc. Classes absent from ``y_true`` (or the only
    class present) have no curve.
    """
    from sklearn.metrics import roc_auc_score, roc_curve

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
        fpr, tpr, thr = roc_curve(positive, score)
        frames.append(
            pd.DataFrame(
                {
                    "class": name,
                    "fpr": fpr,
                    "tpr": tpr,
                    "threshold": thr,
                    "auc": float(roc_auc_score(positive, score)),
                }
            )
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

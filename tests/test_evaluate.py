"""The classification report equals scikit-learn's on known predictions, and the one
macro-F1 definition (:func:`runner.metrics.macro_f1`) equals scikit-learn's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import classification_report, f1_score, roc_auc_score

from runner.evaluate import evaluate_logits
from runner.metrics import lower_is_better, macro_f1, resolve_mode


def test_report_matches_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 200)
    logits = torch.tensor(rng.normal(size=(200, 4)), dtype=torch.float32)
    logits[torch.arange(120), torch.as_tensor(y[:120])] += 3.0  # 60 % confidently right
    result = evaluate_logits(logits, torch.as_tensor(y), ["a", "b", "c", "d"])
    pred = logits.argmax(1).numpy()
    ref = classification_report(y, pred, output_dict=True, zero_division=0)
    table = result.report.set_index("class")
    for i, name in enumerate("abcd"):
        for col, key in (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score")):
            assert table.loc[name, col] == pytest.approx(ref[str(i)][key])
        assert table.loc[name, "support"] == ref[str(i)]["support"]
        proba = torch.softmax(logits, 1).numpy()[:, i]
        assert table.loc[name, "auc"] == pytest.approx(roc_auc_score(y == i, proba))
    for avg in ("macro avg", "weighted avg"):
        assert table.loc[avg, "f1"] == pytest.approx(ref[avg]["f1-score"])
    assert result.accuracy == pytest.approx(ref["accuracy"])
    assert result.macro_f1 == pytest.approx(f1_score(y, pred, average="macro"))
    assert result.macro_f1 == table.loc["macro avg", "f1"]  # one number, one definition
    assert result.confusion.to_numpy().sum() == 200


def test_loop_macro_f1_matches_sklearn():
    rng = np.random.default_rng(1)
    y, pred = rng.integers(0, 5, 300), rng.integers(0, 5, 300)
    pred[:3] = 5  # a class predicted but never true
    ours = macro_f1(torch.as_tensor(pred), torch.as_tensor(y), 6)
    assert ours == pytest.approx(f1_score(y, pred, average="macro"))
    assert macro_f1(torch.as_tensor([0, 0]), torch.as_tensor([0, 0]), 3) == 1.0  # absent: skipped
    y_absent = np.array([0, 1, 1, 2])  # a class predicted but never true, one never seen
    p_absent = np.array([0, 1, 3, 2])
    ours = macro_f1(torch.as_tensor(p_absent), torch.as_tensor(y_absent), 5)
    assert ours == pytest.approx(f1_score(y_absent, p_absent, average="macro", zero_division=0))


def test_direction_of_each_monitor():
    for metric, lower in [("val_loss", True), ("train_loss", True), ("val_acc", False)]:
        assert lower_is_better(metric) is lower
        assert resolve_mode(metric) == ("min" if lower else "max")
    assert not lower_is_better("val_macro_f1") and resolve_mode("val_acc", "min") == "min"


def test_roc_curves_and_auc_equal_sklearn_with_ties():
    """The NumPy ROC (kept off scikit-learn's 1 s import after every run) gives
    ``roc_curve``'s points and ``roc_auc_score`` exactly, ties and collinear points included."""
    from sklearn.metrics import roc_curve

    from runner.evaluate import binary_auc, binary_roc, roc_curves

    rng = np.random.default_rng(7)
    for decimals in (0, 1, 3):  # rounding makes many tied scores
        y = rng.integers(0, 2, 80)
        score = np.round(rng.normal(size=80) + y, decimals)
        for ours, ref in zip(binary_roc(y == 1, score), roc_curve(y, score)):
            np.testing.assert_allclose(ours, ref)
        assert binary_auc(y == 1, score) == pytest.approx(roc_auc_score(y, score))
    assert np.isnan(binary_auc(np.ones(5, bool), np.arange(5.0)))  # one class only
    proba = rng.dirichlet(np.ones(3), size=60)
    labels = rng.integers(0, 3, 60)
    curves = roc_curves(labels, proba, ["a", "b", "c"])
    micro = curves[curves["class"] == "micro avg"]["auc"].iloc[0]
    assert micro == pytest.approx(roc_auc_score(np.eye(3)[labels].ravel(), proba.ravel()))

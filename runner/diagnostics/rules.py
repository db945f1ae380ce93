"""Automatic diagnoses: plain-words findings with evidence and advice.

Each rule is a small pure function of the run's tables and one threshold section of
:class:`runner.schema.diagnostics.DiagnosticsConf`; it returns a list of diagnoses::

    {"code": str, "severity": "info" | "warning" | "error", "message": str,
     "evidence": {name: number}, "advice": str}

Run-level codes: overfitting, underfitting, vanishing_gradients, exploding_gradients,
dead_relu, plateau, weak_class, diverged. Sweep-level: degradation
(:func:`sweep_diagnoses`).
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pandas as pd

from runner.diagnostics.probe import RELU_KINDS
from runner.schema.diagnostics import DegradationConf, DiagnosticsConf

SEVERITIES = ("error", "warning", "info")
AVERAGE_ROWS = ("macro avg", "weighted avg")


def diagnosis(
    code: str, severity: str, message: str, evidence: dict[str, Any], advice: str
) -> dict[str, Any]:
    """One finding; ``severity`` is info | warning | error; evidence values are numbers."""
    if severity not in SEVERITIES:
        raise ValueError(f"unknown severity {severity!r}; valid: {', '.join(SEVERITIES)}")
    return {
        "code": code,
        "severity": severity,
        "message": message,
        "evidence": {k: _num(v) for k, v in evidence.items()},
        "advice": advice,
    }


def _num(value: Any) -> Any:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    try:
        value = float(value)
    except (TypeError, ValueError):
        return value
    return None if math.isnan(value) else float(f"{value:.6g}")


def _pct(value: float) -> str:
    return f"{100 * value:.1f} %"


# ----------------------------------------------------------------------------- curves
def overfitting(c: Any, history: pd.DataFrame) -> list[dict[str, Any]]:
    """Train/val accuracy gap at the last epoch, or validation loss rising after its minimum."""
    if not c.enabled or len(history) < max(2, c.min_epochs) or history["val_loss"].isna().all():
        return []
    last = history.iloc[-1]
    gap = float(last["train_acc"] - last["val_acc"])
    i_min = int(history["val_loss"].idxmin())
    best = history.loc[i_min]
    rise = float((last["val_loss"] - best["val_loss"]) / max(best["val_loss"], 1e-12))
    after = int(last["epoch"] - best["epoch"])
    rising = rise > c.val_loss_rise and after >= c.min_epochs_after_min
    evidence = {
        "train_acc": last["train_acc"],
        "val_acc": last["val_acc"],
        "acc_gap": gap,
        "min_val_loss": best["val_loss"],
        "min_val_loss_epoch": int(best["epoch"]),
        "last_val_loss": last["val_loss"],
        "val_loss_rise": rise,
    }
    loss_words = (
        f"validation loss was lowest at epoch {int(best['epoch'])} ({best['val_loss']:.3f}) "
        f"and is {_pct(rise)} higher {after} epochs later"
    )
    if gap > c.acc_gap:
        message = (
            f"The model fits its training data far better than unseen data: train accuracy "
            f"{_pct(last['train_acc'])} vs validation {_pct(last['val_acc'])} at the last epoch "
            f"(a {100 * gap:.1f}-point gap)" + (f"; {loss_words}." if rising else ".")
        )
        return [diagnosis("overfitting", "warning", message, evidence, _OVERFIT_ADVICE)]
    if rising:
        message = (
            f"Mild overfitting: {loss_words}, while accuracy held (gap {100 * gap:.1f} points): "
            "the model grows over-confident. The best checkpoint is the one evaluated."
        )
        return [diagnosis("overfitting", "info", message, evidence, _OVERFIT_ADVICE)]
    return []


_OVERFIT_ADVICE = (
    "Regularise: dropout (model.dropout=0.5), weight decay (optimizer.weight_decay=5e-4), "
    "augmentation (dataset.augment.hflip=true dataset.augment.crop_padding=4), early stopping "
    "(trainer.early_stopping.patience=5); or a smaller model / more training data. With small "
    "batches BatchNorm statistics are noisy and can hurt generalisation: try a larger "
    "trainer.batch_size."
)


def underfitting(c: Any, history: pd.DataFrame, num_classes: int) -> list[dict[str, Any]]:
    """Best train accuracy close to chance after at least ``c.min_epochs`` epochs."""
    if not c.enabled or len(history) < max(1, c.min_epochs) or num_classes < 2:
        return []
    best = float(history["train_acc"].max())
    chance = 1.0 / num_classes
    skill = (best - chance) / (1.0 - chance)
    if skill >= c.min_train_skill:
        return []
    first, last = history["train_loss"].iloc[0], history["train_loss"].iloc[-1]
    message = (
        f"The model does not fit even its training data: best train accuracy "
        f"{_pct(best)} after {len(history)} epochs (chance is {_pct(chance)}); the training "
        f"loss went from {first:.3f} to {last:.3f}."
    )
    advice = (
        "Check the loss curve: flat → raise the learning rate (optimizer.lr ×3–10), oscillating "
        "or rising → lower it. Train longer; use more capacity (model.filters, "
        "model.fc_neurons) and less regularisation (model.dropout, optimizer.weight_decay); He "
        "initialisation (model.init=kaiming) with ReLU; BatchNorm (model.batch_norm=true); SGD "
        "with momentum (optimizer=sgd optimizer.momentum=0.9) or a cyclic schedule "
        "(scheduler=cyclic)."
    )
    evidence = {
        "best_train_acc": best,
        "chance_acc": chance,
        "train_skill": skill,
        "first_train_loss": first,
        "last_train_loss": last,
        "epochs": len(history),
    }
    return [diagnosis("underfitting", "warning", message, evidence, advice)]


def plateau(c: Any, history: pd.DataFrame) -> list[dict[str, Any]]:
    """Training loss flat over the last ``c.epochs`` epochs at a constant learning rate."""
    if not c.enabled or len(history) < max(2, c.epochs):
        return []
    window = history.iloc[-c.epochs :]
    lr = window["lr"].to_numpy(dtype=float)
    if lr.max() <= 0 or (lr.max() - lr.min()) / lr.max() > 1e-6:
        return []
    loss = window["train_loss"].to_numpy(dtype=float)
    change = float((loss.max() - loss.min()) / max(abs(loss.mean()), 1e-12))
    acc = float(window["train_acc"].iloc[-1])
    if change >= c.min_rel_change or acc >= c.converged_train_acc:
        return []
    message = (
        f"Training is stuck: the training loss stayed at {loss.mean():.4f} (±{_pct(change / 2)}) "
        f"for the last {c.epochs} epochs at a constant learning rate {lr[-1]:.2g}, with train "
        f"accuracy {_pct(acc)}."
    )
    advice = (
        "Change the learning rate (try ×10 and ÷10), add momentum (optimizer=sgd "
        "optimizer.momentum=0.9) or a schedule that moves it (scheduler=cyclic, onecycle or "
        "plateau); check the initialisation (model.init=kaiming) and the dead-units figure."
    )
    evidence = {"epochs": c.epochs, "lr": lr[-1], "train_loss": loss.mean(), "rel_change": change}
    evidence["train_acc"] = acc
    return [diagnosis("plateau", "warning", message, evidence, advice)]


def diverged(summary: dict[str, Any]) -> list[dict[str, Any]]:
    if summary.get("status") != "diverged":
        return []
    message = f"Training diverged: {summary.get('stop_reason') or 'the loss became NaN/inf'}"
    advice = (
        "Lower optimizer.lr (÷10), clip gradients (trainer.grad_clip=1.0), warm up "
        "(scheduler.warmup_epochs=1), use BatchNorm, or trainer.precision=32."
    )
    evidence = {"epochs_run": summary.get("epochs_run", 0)}
    return [diagnosis("diverged", "error", message, evidence, advice)]


# ----------------------------------------------------------------------------- gradients
def layer_gradients(gradients: pd.DataFrame) -> pd.DataFrame:
    """Median gradient RMS per weight layer over the finite records, in layer order."""
    g = gradients[np.isfinite(gradients["grad_rms"].astype(float))]
    med = g.groupby(["index", "layer"], sort=True)["grad_rms"].median().reset_index()
    return med.sort_values("index").reset_index(drop=True)


def gradients_rule(
    c: Any, gradients: pd.DataFrame | None, steps: pd.DataFrame | None, precision: str = "32"
) -> list[dict[str, Any]]:
    """vanishing_gradients / exploding_gradients from the recorded gradient norms."""
    if not c.enabled or gradients is None or not len(gradients):
        return []
    out: list[dict[str, Any]] = []
    layers = layer_gradients(gradients)
    ratio = math.nan
    if len(layers) >= 2:
        k = min(len(layers) // 2, max(1, round(len(layers) * c.edge_layers)))
        rms = np.maximum(layers["grad_rms"].to_numpy(dtype=float), 1e-30)
        early, late = _geomean(rms[:k]), _geomean(rms[-k:])
        ratio = early / late
        evidence = {
            "early_grad_rms": early,
            "late_grad_rms": late,
            "ratio": ratio,
            "early_layers": k,
            "layers": len(layers),
        }
        names = f"{layers['layer'].iloc[0]} … {layers['layer'].iloc[-1]}"
        if ratio < c.vanishing_ratio:
            message = (
                f"Vanishing gradients: the first {k} weight layer(s) receive gradients "
                f"{ratio:.1e} times those of the last {k} (median RMS gradient per weight "
                f"{early:.1e} vs {late:.1e}; layers {names}), so the early layers barely learn."
            )
            advice = (
                "Use ReLU-family activations instead of sigmoid/tanh (model.activation=relu), "
                "He initialisation (model.init=kaiming), BatchNorm (model.batch_norm=true), "
                "residual connections (model=resnet18) or fewer layers."
            )
            severity = "error" if ratio < c.vanishing_ratio**2 else "warning"
            out.append(diagnosis("vanishing_gradients", severity, message, evidence, advice))
        elif ratio > c.exploding_ratio:
            message = (
                f"Early layers receive gradients {ratio:.1e} times larger than the last layers "
                f"(median RMS gradient per weight {early:.1e} vs {late:.1e}): they grow unstably."
            )
            out.append(
                diagnosis("exploding_gradients", "warning", message, evidence, _EXPLODE_ADVICE)
            )
    out += _global_norm(c, steps, precision, ratio)
    return out


_EXPLODE_ADVICE = (
    "Clip gradients (trainer.grad_clip=1.0), lower the learning rate (optimizer.lr ÷10), add "
    "BatchNorm (model.batch_norm=true), use a warm-up (scheduler.warmup_epochs=1) and a "
    "standard initialisation (model.init=kaiming)."
)


def _global_norm(
    c: Any, steps: pd.DataFrame | None, precision: str, ratio: float
) -> list[dict[str, Any]]:
    if steps is None or "grad_norm" not in steps or steps["grad_norm"].isna().all():
        return []
    norms = steps["grad_norm"].dropna().to_numpy(dtype=float)
    finite = norms[np.isfinite(norms)]
    bad = int((~np.isfinite(norms)).sum())
    if str(precision) == "16-mixed":  # the loss scaler skips steps with inf gradients: normal
        bad = bad if bad > len(norms) / 2 else 0
    peak = float(finite.max()) if finite.size else math.inf
    if not bad and peak <= c.exploding_norm:
        return []
    evidence = {
        "max_grad_norm": peak,
        "median_grad_norm": float(np.median(finite)) if finite.size else math.nan,
        "non_finite_records": bad,
        "threshold": c.exploding_norm,
    }
    what = f"{bad} recorded steps had NaN/inf gradients" if bad else ""
    if peak > c.exploding_norm and math.isfinite(peak):
        what = (what + "; " if what else "") + (
            f"the global gradient norm reached {peak:.3g} (median "
            f"{evidence['median_grad_norm']:.3g}, threshold {c.exploding_norm:g})"
        )
    message = f"Exploding gradients: {what}."
    return [diagnosis("exploding_gradients", "error", message, evidence, _EXPLODE_ADVICE)]


def _geomean(values: np.ndarray) -> float:
    return float(np.exp(np.mean(np.log(values))))


# ----------------------------------------------------------------------------- activations
def dead_relu(c: Any, activations: pd.DataFrame | None) -> list[dict[str, Any]]:
    """ReLU layers whose share of never-positive units (last probe) is at least ``max_share``."""
    if not c.enabled or activations is None or not len(activations):
        return []
    relu = activations[activations["kind"].isin(RELU_KINDS) & (activations["units"] >= c.min_units)]
    if not len(relu):
        return []
    first_epoch, last_epoch = relu["epoch"].min(), relu["epoch"].max()
    last = relu[relu["epoch"] == last_epoch]
    flagged = last[last["dead_share"] >= c.max_share].sort_values("dead_share", ascending=False)
    if not len(flagged):
        return []
    start = relu[relu["epoch"] == first_epoch].set_index("layer")["dead_share"]
    worst = flagged.iloc[0]
    dead_at_start = bool(start.get(worst["layer"], 0.0) >= c.max_share)
    shown = ", ".join(f"{r.layer} {_pct(r.dead_share)}" for r in flagged.head(5).itertuples())
    message = (
        f"Dying ReLU: {len(flagged)} of {len(last)} ReLU layers have at least "
        f"{_pct(c.max_share)} dead units (never positive on the probe images, so they pass no "
        f"gradient): {shown}"
        + (
            "; they were already dead before training."
            if dead_at_start
            else f"; they died during training (epoch {int(first_epoch)}: "
            f"{_pct(start.get(worst['layer'], 0.0))} in {worst['layer']})."
        )
    )
    advice = (
        "Lower the learning rate; use LeakyReLU or Mish (model.activation=leaky_relu); He "
        "initialisation with zero biases (model.init=kaiming); BatchNorm before the activation "
        "(model.batch_norm=true)."
        + (
            " Check the initialisation: units dead at the start never recover."
            if dead_at_start
            else ""
        )
    )
    evidence = {f"dead_share[{r.layer}]": r.dead_share for r in flagged.itertuples()}
    evidence.update(
        layers_flagged=len(flagged),
        relu_layers=len(last),
        epoch=int(last_epoch),
        start_share=start.get(worst["layer"], math.nan),
    )
    severity = "error" if worst["dead_share"] >= c.error_share else "warning"
    return [diagnosis("dead_relu", severity, message, evidence, advice)]


# ----------------------------------------------------------------------------- classes
def weak_class(c: Any, report: pd.DataFrame | None) -> list[dict[str, Any]]:
    """Classes whose one-vs-rest AUC or F1 is far below the median of the other classes."""
    if not c.enabled or report is None:
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
            f"F1 {row['f1']:.3f} vs {f1_med:.3f} (recall {_pct(row['recall'])}, "
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


# ----------------------------------------------------------------------------- run level
def diagnose(
    conf: DiagnosticsConf | Any,
    history: pd.DataFrame,
    summary: dict[str, Any],
    report: pd.DataFrame | None = None,
    gradients: pd.DataFrame | None = None,
    steps: pd.DataFrame | None = None,
    activations: pd.DataFrame | None = None,
) -> list[dict[str, Any]]:
    """Every run-level rule, most severe first.

    Args:
        conf: thresholds (``DiagnosticsConf`` or the composed ``cfg.diagnostics``).
        history: ``metrics.csv`` rows (epoch, train_loss, train_acc, val_loss, val_acc, lr).
        summary: the run's summary (status, classes, precision, ...).
        report: per-class test table (class, precision, recall, f1, support, auc).
        gradients / steps / activations: tables of :class:`TrainingRecorder`.
    """
    num_classes = len(summary.get("classes") or []) or (
        len(report[~report["class"].isin(AVERAGE_ROWS)]) if report is not None else 0
    )
    found = diverged(summary)
    if len(history):
        found += overfitting(conf.overfitting, history)
        found += underfitting(conf.underfitting, history, num_classes)
        found += plateau(conf.plateau, history)
    found += gradients_rule(conf.gradients, gradients, steps, str(summary.get("precision", "32")))
    found += dead_relu(conf.dead_relu, activations)
    found += weak_class(conf.weak_class, report)
    return sorted(found, key=lambda d: SEVERITIES.index(d["severity"]))


# ----------------------------------------------------------------------------- sweep level
_DEPTH = re.compile(r"(\d+)(?!.*\d)")


def _family(name: str) -> tuple[str, int] | None:
    """``plain34`` → ("plain", 34); ``resnet34``/``se_resnet34`` → ("residual", 34)."""
    depth = _DEPTH.search(name)
    if depth is None:
        return None
    lower = name.lower()
    if "plain" in lower:
        return "plain", int(depth.group(1))
    if "resnet" in lower:
        return "residual", int(depth.group(1))
    return None


def _train_acc(run: dict[str, Any]) -> float | None:
    metrics = run.get("metrics")
    if (
        isinstance(metrics, pd.DataFrame)
        and "train_acc" in metrics
        and metrics["train_acc"].notna().any()
    ):
        return float(metrics["train_acc"].max())
    summary = run.get("summary") or {}
    value = summary.get("best_train_acc", summary.get("final_train_acc"))
    return None if value is None else float(value)


def sweep_diagnoses(
    runs: list[dict[str, Any]], conf: DegradationConf | Any | None = None
) -> list[dict[str, Any]]:
    """``degradation`` findings across a sweep's runs.

    Each run is ``{"model": name, "summary": summary.json dict, "metrics": metrics.csv
    DataFrame}``. Models named ``plain<depth>`` are compared with residual ones of the same
    depth (``resnet<depth>``, else the best of ``*resnet<depth>``) and with shallower plain
    nets; a plain net whose best train accuracy is more than ``conf.train_acc_gap`` below its
    comparison is flagged — the degradation problem that residual connections solve. Runs that
    failed or have no train accuracy are ignored; with several runs of one model its best
    counts.
    """
    conf = conf or DegradationConf()
    if not conf.enabled:
        return []
    best: dict[str, tuple[float, float | None]] = {}
    for run in runs:
        name = str(run.get("model", ""))
        summary = run.get("summary") or {}
        acc = _train_acc(run)
        if acc is None or summary.get("status") == "failed" or _family(name) is None:
            continue
        val = summary.get("best_val_acc")
        if name not in best or acc > best[name][0]:
            best[name] = (acc, None if val is None else float(val))
    out = []
    for plain, (acc, val) in sorted(best.items()):
        kind, depth = _family(plain)  # type: ignore[misc]
        if kind != "plain":
            continue
        residual = [n for n in best if _family(n) == ("residual", depth)]
        exact = [n for n in residual if n.lower() == f"resnet{depth}"]
        pick = exact or sorted(residual, key=lambda n: -best[n][0])[:1]
        shallower = [n for n in best if _family(n)[0] == "plain" and _family(n)[1] < depth]  # type: ignore[index]
        for other, why in [
            *((n, "residual") for n in pick),
            *((n, "shallower") for n in shallower),
        ]:
            o_acc, o_val = best[other]
            if acc >= o_acc - conf.train_acc_gap:
                continue
            out.append(_degradation(plain, acc, val, other, o_acc, o_val, why, conf))
    return out


def _degradation(
    plain: str,
    acc: float,
    val: float | None,
    other: str,
    o_acc: float,
    o_val: float | None,
    why: str,
    conf: Any,
) -> dict[str, Any]:
    relation = (
        f"the residual {other} of the same depth" if why == "residual" else f"the shallower {other}"
    )
    vals = (
        "" if val is None or o_val is None else f" (best validation {_pct(val)} vs {_pct(o_val)})"
    )
    message = (
        f"Degradation: {plain} trains worse than {relation}: best train accuracy {_pct(acc)} vs "
        f"{_pct(o_acc)}{vals}. A deeper plain stack is harder to optimise, not just overfitting."
    )
    advice = (
        "Add skip connections (model=resnet… or model.shortcut=true), use fewer layers, keep "
        "BatchNorm and He initialisation; balance conv and pooling stages; regularise (dropout, "
        "weight decay, early stopping, augmentation) if validation also drops."
    )
    evidence = {
        f"train_acc[{plain}]": acc,
        f"train_acc[{other}]": o_acc,
        "gap": o_acc - acc,
        "threshold": conf.train_acc_gap,
    }
    if val is not None and o_val is not None:
        evidence.update({f"val_acc[{plain}]": val, f"val_acc[{other}]": o_val})
    return diagnosis("degradation", "warning", message, evidence, advice)

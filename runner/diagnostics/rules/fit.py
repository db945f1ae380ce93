"""fit: how well the model fits its training data and how well that carries over, decided
once from the same numbers — chance_level, underfitting, plateau, overfitting or
generalisation_gap (at most one per run).

In order: a run whose evaluated accuracy is no better than always guessing the majority
class is ``chance_level``; one that does not fit its training data is ``underfitting``; one
whose training loss is flat at a constant learning rate below convergence is ``plateau``;
one that fits but got worse on validation as it trained on is ``overfitting``; one that fits
far better than it generalises while validation still holds or improves is
``generalisation_gap``. Each names the settings of this config most likely at fault.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from omegaconf import MISSING

from runner.diagnostics import advice as adv
from runner.diagnostics.advice import Change, advise
from runner.diagnostics.finding import diagnosis, pct
from runner.diagnostics.registry import RunContext, register_rule
from runner.errors import ConfigError

CURVES = ["curves.png", "metrics.csv"]


@dataclass
class FitConf:
    enabled: bool = MISSING
    min_epochs: int = MISSING
    min_train_skill: float = MISSING
    plateau_epochs: int = MISSING
    plateau_change: float = MISSING
    converged_train_acc: float = MISSING
    val_loss_rise: float = MISSING
    min_epochs_after_min: int = MISSING
    acc_gap: float = MISSING
    loss_ratio: float = MISSING
    min_loss_gap: float = MISSING


@dataclass(frozen=True)
class FitNumbers:
    """The numbers every decision reads, from ``metrics.csv`` and the class counts."""

    epochs: int
    baseline: float  # train accuracy of always guessing the most frequent training class
    best_train_acc: float
    train_skill: float  # best train acc rescaled: baseline = 0, 100 % = 1
    train_acc: float  # the last epoch's
    val_acc: float
    train_loss: float
    val_loss: float
    first_train_loss: float
    min_val_loss: float
    min_val_epoch: int
    val_loss_rise: float  # last val loss above its minimum, as a share of the minimum
    epochs_after_min: int

    @property
    def acc_gap(self) -> float:
        return self.train_acc - self.val_acc

    @property
    def loss_ratio(self) -> float:
        return self.val_loss / max(self.train_loss, 1e-12)

    @property
    def evidence(self) -> dict[str, float]:
        return {
            "train_acc": self.train_acc,
            "val_acc": self.val_acc,
            "acc_gap": self.acc_gap,
            "train_loss": self.train_loss,
            "val_loss": self.val_loss,
            "loss_ratio": self.loss_ratio,
            "best_train_acc": self.best_train_acc,
            "train_skill": self.train_skill,
            "min_val_loss": self.min_val_loss,
            "min_val_loss_epoch": self.min_val_epoch,
            "val_loss_rise": self.val_loss_rise,
        }


def numbers(context: RunContext) -> FitNumbers | None:
    """:class:`FitNumbers` of the run; None without history or classes."""
    history = context.history
    if not len(history) or context.num_classes < 2 or "train_acc" not in history:
        return None
    counts = context.class_counts.get("train") or []
    baseline = max(counts) / sum(counts) if sum(counts) else 1.0 / context.num_classes
    best = float(history["train_acc"].max())
    last = history.iloc[-1]
    val_loss = history["val_loss"].astype(float)
    has_val = bool(val_loss.notna().any())
    i_min = int(val_loss.idxmin()) if has_val else len(history) - 1
    min_val = float(val_loss.loc[i_min]) if has_val else math.nan
    return FitNumbers(
        epochs=len(history),
        baseline=baseline,
        best_train_acc=best,
        train_skill=(best - baseline) / max(1.0 - baseline, 1e-12),
        train_acc=float(last["train_acc"]),
        val_acc=float(last["val_acc"]),
        train_loss=float(last["train_loss"]),
        val_loss=float(last["val_loss"]),
        first_train_loss=float(history["train_loss"].iloc[0]),
        min_val_loss=min_val,
        min_val_epoch=int(history["epoch"].loc[i_min]),
        val_loss_rise=(float(last["val_loss"]) - min_val) / max(min_val, 1e-12),
        epochs_after_min=int(last["epoch"] - history["epoch"].loc[i_min]),
    )


def fit(context: RunContext, c: FitConf) -> list[dict[str, Any]]:
    """At most one finding: the first of chance_level, underfitting, plateau, overfitting,
    generalisation_gap whose condition holds (module docstring)."""
    if context.summary.get("status") == "diverged":
        return []  # the diverged rule says what happened
    n = numbers(context)
    if n is None:
        return []
    chance = context.chance
    if chance is not None and chance.at_chance:
        return [_chance_level(context, n, chance)]
    if n.epochs < c.min_epochs:
        return []
    if n.train_skill < c.min_train_skill:
        return [_underfitting(context, n)]
    stuck = _plateau(context, n, c)
    if stuck:
        return stuck
    has_val = not math.isnan(n.val_loss)
    if (
        has_val
        and n.val_loss_rise > c.val_loss_rise
        and n.epochs_after_min >= c.min_epochs_after_min
    ):
        return [_overfitting(context, n, c)]
    if has_val and (n.acc_gap > c.acc_gap or _loss_gap(context, n, c)):
        return [_generalisation_gap(context, n)]
    return []


def _loss_gap(context: RunContext, n: FitNumbers, c: FitConf) -> bool:
    """Validation loss far above the training loss, with at least half the accuracy gap.
    Not judged when the training loss is not comparable (class weights or label smoothing
    change it; a class weighted 0 makes it look tiny)."""
    s = context.settings
    if s.get("trainer.class_weights") not in (None, "null") or s.get("trainer.label_smoothing"):
        return False
    far = n.loss_ratio >= c.loss_ratio and n.val_loss - n.train_loss >= c.min_loss_gap
    return far and n.acc_gap > c.acc_gap / 2


# ----------------------------------------------------------------------------- not learning
def no_learning_suspects(context: RunContext) -> list[adv.Suspect]:
    """Settings that can keep a model from learning: an extreme learning rate, a class
    weight of 0, heavy regularisation, too few epochs."""
    s = context.settings
    lr = _median_lr(context)
    found = [adv.lr_suspect(s, lr, "low"), adv.lr_suspect(s, lr, "high")]
    found.append(adv.class_weight_suspect(s, context.classes))
    activation = s.get("model.activation")
    if activation in ("sigmoid", "tanh") and s.get("model.batch_norm") is False:
        words = f"`model.activation={activation}` without BatchNorm saturates"
        found.append(adv.Suspect(words, Change("model.activation", "relu")))
    found += adv.regularisation_suspects(s)
    params = context.summary.get("params")
    if (
        context.trainable_params
        and isinstance(params, int)
        and context.trainable_params < params / 2
    ):
        share = context.trainable_params / params
        found.append(
            adv.Suspect(
                f"only {100 * share:.0f} % of the parameters train (a frozen backbone)", None
            )
        )
    if s.get("model.shortcut") is False:
        words = (
            f"a plain net without shortcuts (`model.shortcut=false`, depth {s.get('model.depth')})"
        )
        found.append(adv.Suspect(words, Change("model.shortcut", True, "residual connections")))
    epochs = s.get("trainer.max_epochs")
    if isinstance(epochs, int) and epochs <= 3:
        found.append(
            adv.Suspect(
                f"`trainer.max_epochs={epochs}`", Change("trainer.max_epochs", 20, "", "up")
            )
        )
    return [f for f in found if f is not None]


def _chance_level(context: RunContext, n: FitNumbers, chance: Any) -> dict[str, Any]:
    split = {"test": "test", "val": "validation"}[chance.split]
    message = (
        f"Not better than chance: {split} accuracy {pct(chance.accuracy)} vs "
        f"{pct(chance.majority)} for always predicting {chance.majority_class!r}, the most "
        "frequent class (±"
        f"{100 * chance.margin:.1f} points of noise over {chance.n} images). "
    )
    if n.train_skill < 0.5:
        message += f"Training accuracy reached only {pct(n.best_train_acc)}: nothing was learned."
    else:
        message += (
            f"Training accuracy reached {pct(n.best_train_acc)}: the model memorised its training "
            "images without learning anything that carries over to new ones."
        )
    suspects = no_learning_suspects(context)
    if suspects:
        message += " Most likely cause: " + "; ".join(s.words for s in suspects[:2]) + "."
    generic = (
        "check that images and labels match in every split (a shuffled label file, a class "
        "folder named wrongly)"
        if n.train_skill >= 0.5
        else "check the loss curve (diagnostics/lr_loss.png): flat means a learning rate far too "
        "low, erratic or rising one far too high"
    )
    text, fix = advise(context.settings, [*(s.change for s in suspects), generic])
    evidence = {
        "accuracy": chance.accuracy,
        "majority_rate": chance.majority,
        "margin": chance.margin,
        "samples": chance.n,
        **n.evidence,
    }
    see = [*CURVES, "diagnostics/lr_loss.png", "eval/confusion_matrix.png"]
    return diagnosis("chance_level", "error", message, evidence, text, fix=fix, see=see)


def _underfitting(context: RunContext, n: FitNumbers) -> dict[str, Any]:
    s = context.settings
    message = (
        f"The model does not fit even its training data: best train accuracy "
        f"{pct(n.best_train_acc)} after {n.epochs} epochs (always guessing the most frequent "
        f"class: {pct(n.baseline)}); the training loss went from {n.first_train_loss:.3f} to "
        f"{n.train_loss:.3f}."
    )
    suspects = no_learning_suspects(context)
    if suspects:
        message += " Most likely: " + "; ".join(x.words for x in suspects[:2]) + "."
    params = context.summary.get("params")
    if isinstance(params, int) and params < 20_000:
        message += f" The model has only {params:,} parameters."
    epochs = s.get("trainer.max_epochs")
    items: list[Change | str | None] = [x.change for x in suspects]
    if s.get("model.family") == "custom_cnn":
        filters = s.get("model.filters") or []
        items.append(Change("model.filters", [max(32, 2 * f) for f in filters], "more capacity"))
    items += [
        Change("trainer.max_epochs", 2 * epochs, "train longer", "up")
        if isinstance(epochs, int)
        else None,
        Change("model.batch_norm", True),
        "see diagnostics/lr_loss.png: a flat loss asks for a higher learning rate, an erratic one "
        "for a lower",
    ]
    text, fix = advise(s, items)
    see = [*CURVES, "diagnostics/lr_loss.png", "diagnostics/gradient_flow.png"]
    return diagnosis("underfitting", "warning", message, n.evidence, text, fix=fix, see=see)


def _plateau(context: RunContext, n: FitNumbers, c: FitConf) -> list[dict[str, Any]]:
    history = context.history
    if len(history) < max(2, c.plateau_epochs):
        return []
    window = history.iloc[-c.plateau_epochs :]
    lr = window["lr"].to_numpy(dtype=float)
    if lr.max() <= 0 or (lr.max() - lr.min()) / lr.max() > 1e-6:
        return []
    loss = window["train_loss"].to_numpy(dtype=float)
    change = float((loss.max() - loss.min()) / max(abs(loss.mean()), 1e-12))
    if change >= c.plateau_change or n.train_acc >= c.converged_train_acc:
        return []
    s = context.settings
    message = (
        f"Training is stuck: the training loss stayed at {loss.mean():.4f} (±{pct(change / 2)}) "
        f"for the last {c.plateau_epochs} epochs at a constant learning rate {lr[-1]:.2g}, with "
        f"train accuracy {pct(n.train_acc)}."
    )
    ratio = s.lr_ratio(float(lr[-1]))
    factor = 10.0 if ratio is None or ratio < 1 else 0.1
    items: list[Change | str | None] = [
        Change("optimizer.lr", float(lr[-1]) * factor, "a different step size"),
        Change("scheduler", "onecycle", "a schedule that moves the learning rate")
        if s.get("scheduler.name") in (None, "none")
        else None,
        Change("model.init", "kaiming"),
        "check the dead units in diagnostics/activations.png",
    ]
    text, fix = advise(s, items)
    evidence = {"epochs": c.plateau_epochs, "lr": lr[-1], "rel_change": change, **n.evidence}
    see = [*CURVES, "diagnostics/lr_loss.png"]
    return [diagnosis("plateau", "warning", message, evidence, text, fix=fix, see=see)]


# ----------------------------------------------------------------------------- generalising
def gap_suspects(context: RunContext) -> tuple[list[str], list[Change | str | None]]:
    """Why a model may fit its training data far better than new data, for this config:
    the words (causes) and the changes to try, strongest first."""
    s = context.settings
    words: list[str] = []
    items: list[Change | str | None] = []
    train = sum(context.class_counts.get("train") or [])
    params = context.summary.get("params")
    if train and train < 5000:
        size = f"only {train:,} training {'images' if s.is_image else 'samples'}"
        if isinstance(params, int) and params >= 1000 * train:
            size += f" for {params / 1e6:.1f} M parameters"
        words.append(size)
    if s.is_image and s.has("dataset.augment"):
        on = s.augmentations()
        side = min(context.input_shape[-2:]) if len(context.input_shape) >= 2 else 32
        shift = max(1, side // 8)
        words.append("no augmentation" if not on else "augmentation is only " + " and ".join(on))
        items += [
            Change("dataset.augment.random_resized_crop", True, "random crops and zooms")
            if side >= 32
            else Change("dataset.augment.crop_padding", shift, "random shifts", "up"),
            Change("dataset.augment.hflip", True, "if a mirrored image keeps its class"),
        ]
    dropout = s.get("model.dropout")
    if isinstance(dropout, (int, float)) and dropout == 0:
        words.append("no dropout (`model.dropout=0`)")
    items.append(Change("model.dropout", 0.5, "", "up"))
    wd = s.get("optimizer.weight_decay")
    if isinstance(wd, (int, float)) and wd == 0:
        words.append("no weight decay (`optimizer.weight_decay=0`)")
    items.append(Change("optimizer.weight_decay", 5e-4 if s.optimizer == "sgd" else 1e-4, "", "up"))
    if s.get("trainer.early_stopping.enabled") is False:
        words.append("early stopping is off")
        items.append(Change("trainer.early_stopping.enabled", True))
    if train and train < 5000:
        items.append("more training data, or a smaller model")
    return words, items


def _overfitting(context: RunContext, n: FitNumbers, c: FitConf) -> dict[str, Any]:
    words, items = gap_suspects(context)
    ratio = (
        f" ({n.loss_ratio:.0f}× the training loss {n.train_loss:.3f})" if n.loss_ratio >= 2 else ""
    )
    message = (
        f"Overfitting: validation loss was lowest at epoch {n.min_val_epoch} "
        f"({n.min_val_loss:.3f}) and is {pct(n.val_loss_rise)} higher {n.epochs_after_min} "
        f"epochs later{ratio}, while train accuracy reached {pct(n.train_acc)} (validation "
        f"{pct(n.val_acc)}): training on made the model worse on new data. The evaluated "
        "weights are those of the best epoch."
    )
    if words:
        message += " Likely causes in this config: " + "; ".join(words) + "."
    severity = "warning" if n.acc_gap > c.acc_gap / 2 else "info"
    text, fix = advise(context.settings, items)
    return diagnosis("overfitting", severity, message, n.evidence, text, fix=fix, see=CURVES)


def _generalisation_gap(context: RunContext, n: FitNumbers) -> dict[str, Any]:
    words, items = gap_suspects(context)
    message = (
        f"Generalisation gap: at the last epoch the validation loss {n.val_loss:.3f} is "
        f"{n.loss_ratio:.0f}× the training loss {n.train_loss:.3f}, and train accuracy "
        f"{pct(n.train_acc)} is {100 * n.acc_gap:.1f} points above validation "
        f"{pct(n.val_acc)}: the model fits its training data far better than new data."
    )
    if words:
        message += " Likely causes in this config: " + "; ".join(words) + "."
    text, fix = advise(context.settings, items)
    return diagnosis(
        "generalisation_gap", "warning", message, n.evidence, text, fix=fix, see=CURVES
    )


def _median_lr(context: RunContext) -> float | None:
    steps = context.steps
    if steps is None or not len(steps) or "lr" not in steps:
        return None
    return float(np.median(steps["lr"].to_numpy(dtype=float)))


def check(c: FitConf) -> None:
    if c.min_epochs < 1 or c.plateau_epochs < 2:
        raise ConfigError(
            "diagnostics.fit.min_epochs must be >= 1 and diagnostics.fit.plateau_epochs >= 2 "
            f"(got {c.min_epochs}, {c.plateau_epochs})"
        )


register_rule(
    "fit",
    fit,
    FitConf,
    check=check,
    description="chance_level / underfitting / plateau / overfitting / generalisation_gap",
)

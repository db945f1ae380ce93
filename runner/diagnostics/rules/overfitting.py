"""overfitting: the train/validation accuracy gap at the last epoch, or validation loss
rising after its minimum."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import MISSING

from runner.diagnostics.finding import diagnosis, pct
from runner.diagnostics.registry import RunContext, register_rule


@dataclass
class OverfittingConf:
    enabled: bool = MISSING
    acc_gap: float = MISSING
    val_loss_rise: float = MISSING
    min_epochs_after_min: int = MISSING
    min_epochs: int = MISSING


ADVICE = (
    "Regularise: dropout (model.dropout=0.5), weight decay (optimizer.weight_decay=5e-4), "
    "augmentation (dataset.augment.hflip=true dataset.augment.crop_padding=4), early stopping "
    "(trainer.early_stopping.patience=5); or a smaller model / more training data. With small "
    "batches BatchNorm statistics are noisy and can hurt generalisation: try a larger "
    "trainer.batch_size."
)


def overfitting(context: RunContext, c: OverfittingConf) -> list[dict[str, Any]]:
    """A gap above ``c.acc_gap`` → warning; only the validation loss rising → info."""
    history = context.history
    if len(history) < max(2, c.min_epochs) or history["val_loss"].isna().all():
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
        f"and is {pct(rise)} higher {after} epochs later"
    )
    if gap > c.acc_gap:
        message = (
            f"The model fits its training data far better than unseen data: train accuracy "
            f"{pct(last['train_acc'])} vs validation {pct(last['val_acc'])} at the last epoch "
            f"(a {100 * gap:.1f}-point gap)" + (f"; {loss_words}." if rising else ".")
        )
        return [diagnosis("overfitting", "warning", message, evidence, ADVICE)]
    if rising:
        message = (
            f"Mild overfitting: {loss_words}, while accuracy held (gap {100 * gap:.1f} points): "
            "the model grows over-confident. The best checkpoint is the one evaluated."
        )
        return [diagnosis("overfitting", "info", message, evidence, ADVICE)]
    return []


register_rule(
    "overfitting",
    overfitting,
    OverfittingConf,
    description="train/val accuracy gap, or validation loss rising after its minimum",
)

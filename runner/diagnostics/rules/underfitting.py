"""underfitting: the best train accuracy stays close to chance."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import MISSING

from runner.diagnostics.finding import diagnosis, pct
from runner.diagnostics.registry import RunContext, register_rule


@dataclass
class UnderfittingConf:
    enabled: bool = MISSING
    min_train_skill: float = MISSING
    min_epochs: int = MISSING


ADVICE = (
    "Check the loss curve: flat → raise the learning rate (optimizer.lr ×3–10), oscillating "
    "or rising → lower it. Train longer; use more capacity (model.filters, "
    "model.fc_neurons) and less regularisation (model.dropout, optimizer.weight_decay); He "
    "initialisation (model.init=kaiming) with ReLU; BatchNorm (model.batch_norm=true); SGD "
    "with momentum (optimizer=sgd optimizer.momentum=0.9) or a cyclic schedule "
    "(scheduler=cyclic)."
)


def underfitting(context: RunContext, c: UnderfittingConf) -> list[dict[str, Any]]:
    """Best train accuracy, rescaled so chance = 0, below ``c.min_train_skill`` after at
    least ``c.min_epochs`` epochs."""
    history, num_classes = context.history, context.num_classes
    if len(history) < max(1, c.min_epochs) or num_classes < 2:
        return []
    best = float(history["train_acc"].max())
    chance = 1.0 / num_classes
    skill = (best - chance) / (1.0 - chance)
    if skill >= c.min_train_skill:
        return []
    first, last = history["train_loss"].iloc[0], history["train_loss"].iloc[-1]
    message = (
        f"The model does not fit even its training data: best train accuracy "
        f"{pct(best)} after {len(history)} epochs (chance is {pct(chance)}); the training "
        f"loss went from {first:.3f} to {last:.3f}."
    )
    evidence = {
        "best_train_acc": best,
        "chance_acc": chance,
        "train_skill": skill,
        "first_train_loss": first,
        "last_train_loss": last,
        "epochs": len(history),
    }
    return [diagnosis("underfitting", "warning", message, evidence, ADVICE)]


register_rule(
    "underfitting",
    underfitting,
    UnderfittingConf,
    description="best train accuracy close to chance",
)

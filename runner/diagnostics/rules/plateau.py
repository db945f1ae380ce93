"""plateau: the training loss is flat over the last epochs at a constant learning rate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import MISSING

from runner.diagnostics.finding import diagnosis, pct
from runner.diagnostics.registry import RunContext, register_rule


@dataclass
class PlateauConf:
    enabled: bool = MISSING
    epochs: int = MISSING
    min_rel_change: float = MISSING
    converged_train_acc: float = MISSING


ADVICE = (
    "Change the learning rate (try ×10 and ÷10), add momentum (optimizer=sgd "
    "optimizer.momentum=0.9) or a schedule that moves it (scheduler=cyclic, onecycle or "
    "plateau); check the initialisation (model.init=kaiming) and the dead-units figure."
)


def plateau(context: RunContext, c: PlateauConf) -> list[dict[str, Any]]:
    """Training loss flat over the last ``c.epochs`` epochs at a constant learning rate,
    below ``c.converged_train_acc`` train accuracy."""
    history = context.history
    if len(history) < max(2, c.epochs):
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
        f"Training is stuck: the training loss stayed at {loss.mean():.4f} (±{pct(change / 2)}) "
        f"for the last {c.epochs} epochs at a constant learning rate {lr[-1]:.2g}, with train "
        f"accuracy {pct(acc)}."
    )
    evidence = {"epochs": c.epochs, "lr": lr[-1], "train_loss": loss.mean(), "rel_change": change}
    evidence["train_acc"] = acc
    return [diagnosis("plateau", "warning", message, evidence, ADVICE)]


register_rule(
    "plateau",
    plateau,
    PlateauConf,
    description="training loss flat at a constant learning rate",
)

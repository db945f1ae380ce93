"""learning_rate: a learning rate far from the usual one for the optimizer, confirmed by the
loss of every step (barely falling: too low; rising, erratic or NaN: too high)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from omegaconf import MISSING

from runner.diagnostics.advice import Change, advise, fmt, times
from runner.diagnostics.finding import diagnosis, pct
from runner.diagnostics.registry import RunContext, register_rule


@dataclass
class LearningRateConf:
    enabled: bool = MISSING
    min_steps: int = MISSING
    low_factor: float = MISSING
    high_factor: float = MISSING
    min_loss_drop: float = MISSING


def loss_drop(loss: np.ndarray) -> tuple[float, float, float]:
    """Median loss of the first and of the last tenth of the steps (at least 3 each) and
    the share by which it fell (negative: it rose); NaN/inf steps are left out."""
    finite = loss[np.isfinite(loss)]
    if finite.size < 2:
        return math.nan, math.nan, math.nan
    edge = max(3, finite.size // 10)
    first, last = float(np.median(finite[:edge])), float(np.median(finite[-edge:]))
    return first, last, (first - last) / max(abs(first), 1e-12)


def learning_rate(context: RunContext, c: LearningRateConf) -> list[dict[str, Any]]:
    """Too low: the steps' median lr at most usual / ``c.low_factor`` and the loss fell less
    than ``c.min_loss_drop``. Too high: at least usual × ``c.high_factor`` and the run
    diverged or the loss fell less than that."""
    steps, s = context.steps, context.settings
    diverged = context.summary.get("status") == "diverged"
    if steps is None or not len(steps) or s.usual_lr is None:
        return []
    if len(steps) < c.min_steps and not diverged:  # a diverged run is judged however short
        return []
    lr = float(np.median(steps["lr"].to_numpy(dtype=float)))
    ratio = s.lr_ratio(lr)
    if ratio is None:
        return []
    loss = steps["loss"].to_numpy(dtype=float)
    first, last, drop = loss_drop(loss)
    diverged = diverged or not np.isfinite(loss).all()
    low = ratio <= 1 / c.low_factor and drop < c.min_loss_drop
    high = ratio >= c.high_factor and (diverged or not drop >= c.min_loss_drop)
    if not (low or high):
        return []
    usual = s.usual_lr
    curve = (
        "the loss became NaN/inf"
        if diverged
        else f"over {len(steps)} steps the training loss went from {first:.3f} to {last:.3f} "
        f"({'fell ' + pct(drop) if drop >= 0 else 'rose ' + pct(-drop)})"
    )
    message = (
        f"Learning rate too {'low' if low else 'high'}: the steps used lr {fmt(lr)}, "
        f"{times(ratio)} {'below' if low else 'above'} the usual {fmt(usual)} for "
        f"{s.optimizer_name}, and {curve}."
    )
    set_lr = s.get("optimizer.lr")
    if set_lr is not None and not math.isclose(float(set_lr), lr, rel_tol=0.05):
        message += f" (`optimizer.lr={fmt(set_lr)}`; the scheduler or warm-up moved it.)"
    items: list[Change | str | None] = [Change("optimizer.lr", usual, "the usual value")]
    if high:
        items += [Change("trainer.grad_clip", 1.0), Change("scheduler.warmup_epochs", 1, "", "up")]
    else:
        items.append("or an lr range test: a short sweep `runner -m optimizer.lr=1e-4,1e-3,1e-2`")
    text, fix = advise(s, items)
    evidence = {"lr": lr, "usual_lr": usual, "ratio": ratio, "first_loss": first}
    evidence.update(last_loss=last, loss_drop=drop, steps=len(steps))
    severity = "error" if high and diverged else "warning"
    code = "learning_rate_low" if low else "learning_rate_high"
    see = ["diagnostics/lr_loss.png", "diagnostics/steps.csv"]
    return [diagnosis(code, severity, message, evidence, text, fix=fix, see=see)]


register_rule(
    "learning_rate",
    learning_rate,
    LearningRateConf,
    description="learning_rate_low / learning_rate_high from the lr and the loss per step",
)

"""still_improving: the monitored metric was still getting better at the last epoch of a
run that used every configured epoch — it stopped too early."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import MISSING

from runner.diagnostics.advice import Change, advise
from runner.diagnostics.finding import diagnosis, pct
from runner.diagnostics.registry import RunContext, register_rule
from runner.errors import ConfigError
from runner.metrics import resolve_mode


@dataclass
class StillImprovingConf:
    enabled: bool = MISSING
    window: int = MISSING
    min_improvement: float = MISSING
    strong_improvement: float = MISSING


def improvement(values: list[float], mode: str) -> float:
    """The share of the remaining loss (min) or error (max: 1 − value) removed from the
    first to the last of ``values``."""
    first, last = values[0], values[-1]
    if mode == "min":
        return (first - last) / max(abs(first), 1e-12)
    return (last - first) / max(1.0 - first, 1e-12)


def still_improving(context: RunContext, c: StillImprovingConf) -> list[dict[str, Any]]:
    """The last epoch is the best by the monitored metric, which improved by at least
    ``c.min_improvement`` over the last ``c.window`` epochs and by at least its
    per-epoch share (``c.min_improvement / c.window``) in the last one; a warning from
    ``c.strong_improvement``, else a note."""
    history, summary = context.history, context.summary
    metric = str(summary.get("monitor") or "val_loss")
    if summary.get("status") != "completed" or metric not in history or len(history) <= c.window:
        return []
    mode = resolve_mode(metric)
    values = history[metric].astype(float)
    if values.isna().any():
        return []
    best = values.idxmin() if mode == "min" else values.idxmax()
    if best != values.index[-1]:
        return []
    window = values.iloc[-c.window - 1 :].tolist()
    gain = improvement(window, mode)
    if gain < c.min_improvement or improvement(window[-2:], mode) < c.min_improvement / c.window:
        return []  # too little over the window, or most of it came before the last epoch
    epochs = int(history["epoch"].iloc[-1])
    start = int(history["epoch"].iloc[-c.window - 1])
    what = "loss" if mode == "min" else "error"
    message = (
        f"Still improving at the last epoch: {metric} went from {window[0]:.4g} (epoch {start}) "
        f"to {window[-1]:.4g} (epoch {epochs}), removing {pct(gain)} of the remaining {what} in "
        f"{c.window} epochs, and epoch {epochs} is the best — training ended while the model "
        "was still getting better."
    )
    s = context.settings
    stretch = (
        "the cosine schedule stretches with it"
        if s.get("scheduler.name") == "cosine" and not s.get("scheduler.T_max")
        else ""
    )
    text, fix = advise(s, [Change("trainer.max_epochs", 2 * epochs, stretch, "up")])
    evidence = {"metric_first": window[0], "metric_last": window[-1], "improvement": gain}
    evidence.update(window=c.window, epochs=epochs)
    severity = "warning" if gain >= c.strong_improvement else "info"
    see = ["curves.png", "metrics.csv"]
    return [diagnosis("still_improving", severity, message, evidence, text, fix=fix, see=see)]


def check(c: StillImprovingConf) -> None:
    if c.window < 1:
        raise ConfigError(f"diagnostics.still_improving.window={c.window} must be >= 1 (epochs)")


register_rule(
    "still_improving",
    still_improving,
    StillImprovingConf,
    check=check,
    description="the monitored metric still improving at the last epoch",
)

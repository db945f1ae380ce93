"""diverged: the run ended because its loss became NaN/inf (no thresholds)."""

from __future__ import annotations

from typing import Any

from runner.diagnostics.finding import diagnosis
from runner.diagnostics.registry import RunContext, register_rule

ADVICE = (
    "Lower optimizer.lr (÷10), clip gradients (trainer.grad_clip=1.0), warm up "
    "(scheduler.warmup_epochs=1), use BatchNorm, or trainer.precision=32."
)


def diverged(context: RunContext, conf: None) -> list[dict[str, Any]]:
    """An error when the run's status is diverged."""
    summary = context.summary
    if summary.get("status") != "diverged":
        return []
    message = f"Training diverged: {summary.get('stop_reason') or 'the loss became NaN/inf'}"
    evidence = {"epochs_run": summary.get("epochs_run", 0)}
    return [diagnosis("diverged", "error", message, evidence, ADVICE)]


register_rule("diverged", diverged, None, description="the loss became NaN/inf")

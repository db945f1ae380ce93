"""diverged: the run ended because its loss became NaN/inf (no thresholds)."""

from __future__ import annotations

from typing import Any

from runner.diagnostics import advice as adv
from runner.diagnostics.advice import Change, advise
from runner.diagnostics.finding import diagnosis
from runner.diagnostics.registry import RunContext, register_rule


def stability_changes(context: RunContext) -> tuple[list[str], list[Change | str | None]]:
    """What steadies a run that diverges or whose gradients explode, for this config: the
    suspicious settings in words and the changes to try (an extreme learning rate first)."""
    s = context.settings
    words: list[str] = []
    items: list[Change | str | None] = []
    lr = adv.lr_suspect(s, None, "high")
    if lr is not None:
        words.append(lr.words)
        items.append(lr.change)
    elif s.get("optimizer.lr") is not None:
        items.append(Change("optimizer.lr", float(s.get("optimizer.lr")) / 10, "÷10", "down"))
    if s.get("model.batch_norm") is False:
        words.append("no BatchNorm (`model.batch_norm=false`)")
    precision = str(s.get("trainer.precision", "32"))
    if precision in ("16-mixed", "bf16"):
        words.append(f"reduced precision (`trainer.precision={precision}`)")
    items += [
        Change("trainer.grad_clip", 1.0, "clip the gradient norm")
        if not s.get("trainer.grad_clip")
        else None,
        Change("scheduler.warmup_epochs", 1, "warm up", "up"),
        Change("model.batch_norm", True),
        Change("trainer.precision", "32") if precision in ("16-mixed", "bf16") else None,
        Change("model.init", "kaiming"),
    ]
    return words, items


def diverged(context: RunContext, conf: None) -> list[dict[str, Any]]:
    """An error when the run's status is diverged."""
    summary = context.summary
    if summary.get("status") != "diverged":
        return []
    reason = summary.get("stop_reason") or "the loss became NaN/inf"
    message = f"Training diverged: {str(reason).split('. ')[0].rstrip('.')}."
    words, items = stability_changes(context)
    if words:
        message += " Most likely: " + "; ".join(words) + "."
    text, fix = advise(context.settings, items)
    evidence = {"epochs_run": summary.get("epochs_run", 0)}
    see = ["diagnostics/lr_loss.png", "diagnostics/gradient_flow.png", "runner.log"]
    return [diagnosis("diverged", "error", message, evidence, text, fix=fix, see=see)]


register_rule("diverged", diverged, None, description="the loss became NaN/inf")

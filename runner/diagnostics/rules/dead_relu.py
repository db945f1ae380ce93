"""dead_relu: ReLU layers with a large share of units that are never positive on the probe
images (they pass no gradient)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from omegaconf import MISSING

from runner.diagnostics import advice as adv
from runner.diagnostics.advice import Change, advise
from runner.diagnostics.finding import diagnosis, pct
from runner.diagnostics.probe import RELU_KINDS
from runner.diagnostics.registry import RunContext, register_rule


@dataclass
class DeadReluConf:
    enabled: bool = MISSING
    max_share: float = MISSING
    error_share: float = MISSING
    min_units: int = MISSING


def dead_relu(context: RunContext, c: DeadReluConf) -> list[dict[str, Any]]:
    """ReLU layers whose share of never-positive units (last probe) is at least
    ``c.max_share``; an error from ``c.error_share``."""
    activations = context.activations
    if activations is None or not len(activations):
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
    start_share = float(start.get(worst["layer"], 0.0))
    dead_at_start = start_share >= c.max_share
    shown = ", ".join(f"{r.layer} {pct(r.dead_share)}" for r in flagged.head(5).itertuples())
    message = (
        f"Dying ReLU: {len(flagged)} of {len(last)} ReLU layers have at least "
        f"{pct(c.max_share)} dead units (never positive on the probe images, so they pass no "
        f"gradient): {shown}"
        + (
            "; they were already dead before training."
            if dead_at_start
            else f"; they died during training ({worst['layer']}: {pct(start_share)} before "
            f"training)."
        )
    )
    words, items = _causes(context, dead_at_start)
    if words:
        message += " Most likely: " + "; ".join(words) + "."
    text, fix = advise(context.settings, items)
    evidence = {f"dead_share[{r.layer}]": r.dead_share for r in flagged.itertuples()}
    evidence.update(
        layers_flagged=len(flagged),
        relu_layers=len(last),
        epoch=int(last_epoch),
        start_share=start_share if len(start) else math.nan,
    )
    severity = "error" if worst["dead_share"] >= c.error_share else "warning"
    see = ["diagnostics/activations.png", "diagnostics/activations.csv"]
    return [diagnosis("dead_relu", severity, message, evidence, text, fix=fix, see=see)]


def _causes(
    context: RunContext, dead_at_start: bool
) -> tuple[list[str], list[Change | str | None]]:
    s = context.settings
    words: list[str] = []
    items: list[Change | str | None] = []
    lr = adv.lr_suspect(s, None, "high")
    if lr is not None and not dead_at_start:
        words.append(lr.words)
        items.append(lr.change)
    if s.get("model.batch_norm") is False:
        words.append("no BatchNorm before the activations (`model.batch_norm=false`)")
    items += [
        Change("model.batch_norm", True, "normalises what enters each ReLU"),
        Change("model.activation", "leaky_relu", "keeps a small gradient below zero"),
        Change("model.init", "kaiming"),
    ]
    if dead_at_start:
        items.append(
            "check the initialisation and the input normalisation: units dead at the start "
            "never recover"
        )
    elif lr is None and s.get("optimizer.lr") is not None:
        items.append(Change("optimizer.lr", float(s.get("optimizer.lr")) / 10, "÷10", "down"))
    return words, items


register_rule(
    "dead_relu",
    dead_relu,
    DeadReluConf,
    description="ReLU layers whose units are never positive",
)

"""dead_relu: ReLU layers with a large share of units that are never positive on the probe
images (they pass no gradient)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from omegaconf import MISSING

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
    dead_at_start = bool(start.get(worst["layer"], 0.0) >= c.max_share)
    shown = ", ".join(f"{r.layer} {pct(r.dead_share)}" for r in flagged.head(5).itertuples())
    message = (
        f"Dying ReLU: {len(flagged)} of {len(last)} ReLU layers have at least "
        f"{pct(c.max_share)} dead units (never positive on the probe images, so they pass no "
        f"gradient): {shown}"
        + (
            "; they were already dead before training."
            if dead_at_start
            else f"; they died during training (epoch {int(first_epoch)}: "
            f"{pct(start.get(worst['layer'], 0.0))} in {worst['layer']})."
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


register_rule(
    "dead_relu",
    dead_relu,
    DeadReluConf,
    description="ReLU layers whose units are never positive",
)

"""degradation (sweep level): a plain (no-shortcut) net that trains worse than the residual
net of the same depth or a shallower plain net — the problem residual connections solve."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from omegaconf import MISSING

from runner.diagnostics.finding import diagnosis, pct
from runner.diagnostics.registry import SweepContext, register_rule


@dataclass
class DegradationConf:
    enabled: bool = MISSING
    train_acc_gap: float = MISSING


ADVICE = (
    "Add skip connections (model=resnet… or model.shortcut=true), use fewer layers, keep "
    "BatchNorm and He initialisation; balance conv and pooling stages; regularise (dropout, "
    "weight decay, early stopping, augmentation) if validation also drops."
)
_DEPTH = re.compile(r"(\d+)(?!.*\d)")


def degradation(context: SweepContext, conf: DegradationConf) -> list[dict[str, Any]]:
    """Models named ``plain<depth>`` are compared with residual ones of the same depth
    (``resnet<depth>``, else the best of ``*resnet<depth>``) and with shallower plain nets;
    a plain net whose best train accuracy is more than ``conf.train_acc_gap`` below its
    comparison is flagged. Runs that failed or have no train accuracy are ignored; with
    several runs of one model its best counts."""
    best: dict[str, tuple[float, float | None]] = {}
    for run in context.runs:
        name = str(run.get("model", ""))
        summary = run.get("summary") or {}
        acc = _train_acc(run)
        if acc is None or summary.get("status") == "failed" or _family(name) is None:
            continue
        val = summary.get("best_val_acc")
        if name not in best or acc > best[name][0]:
            best[name] = (acc, None if val is None else float(val))
    out = []
    for plain, (acc, val) in sorted(best.items()):
        kind, depth = _family(plain)  # type: ignore[misc]
        if kind != "plain":
            continue
        residual = [n for n in best if _family(n) == ("residual", depth)]
        exact = [n for n in residual if n.lower() == f"resnet{depth}"]
        pick = exact or sorted(residual, key=lambda n: -best[n][0])[:1]
        shallower = [n for n in best if _family(n)[0] == "plain" and _family(n)[1] < depth]  # type: ignore[index]
        for other, why in [
            *((n, "residual") for n in pick),
            *((n, "shallower") for n in shallower),
        ]:
            o_acc, o_val = best[other]
            if acc >= o_acc - conf.train_acc_gap:
                continue
            out.append(_finding(plain, acc, val, other, o_acc, o_val, why, conf))
    return out


def _family(name: str) -> tuple[str, int] | None:
    """``plain34`` → ("plain", 34); ``resnet34``/``se_resnet34`` → ("residual", 34)."""
    depth = _DEPTH.search(name)
    if depth is None:
        return None
    lower = name.lower()
    if "plain" in lower:
        return "plain", int(depth.group(1))
    if "resnet" in lower:
        return "residual", int(depth.group(1))
    return None


def _train_acc(run: dict[str, Any]) -> float | None:
    import pandas as pd

    metrics = run.get("metrics")
    if (
        isinstance(metrics, pd.DataFrame)
        and "train_acc" in metrics
        and metrics["train_acc"].notna().any()
    ):
        return float(metrics["train_acc"].max())
    summary = run.get("summary") or {}
    value = summary.get("best_train_acc", summary.get("final_train_acc"))
    return None if value is None else float(value)


def _finding(
    plain: str,
    acc: float,
    val: float | None,
    other: str,
    o_acc: float,
    o_val: float | None,
    why: str,
    conf: DegradationConf,
) -> dict[str, Any]:
    relation = (
        f"the residual {other} of the same depth" if why == "residual" else f"the shallower {other}"
    )
    vals = "" if val is None or o_val is None else f" (best validation {pct(val)} vs {pct(o_val)})"
    message = (
        f"Degradation: {plain} trains worse than {relation}: best train accuracy {pct(acc)} vs "
        f"{pct(o_acc)}{vals}. A deeper plain stack is harder to optimise, not just overfitting."
    )
    evidence = {
        f"train_acc[{plain}]": acc,
        f"train_acc[{other}]": o_acc,
        "gap": o_acc - acc,
        "threshold": conf.train_acc_gap,
    }
    if val is not None and o_val is not None:
        evidence.update({f"val_acc[{plain}]": val, f"val_acc[{other}]": o_val})
    return diagnosis("degradation", "warning", message, evidence, ADVICE)


register_rule(
    "degradation",
    degradation,
    DegradationConf,
    scope="sweep",
    description="a plain net training worse than a residual or shallower one (sweeps)",
)

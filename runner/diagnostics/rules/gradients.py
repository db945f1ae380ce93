"""gradients: vanishing_gradients / exploding_gradients from the recorded gradient norms
(per-layer RMS gradients, first vs last layers; the global norm of every recorded step)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from omegaconf import MISSING

from runner.diagnostics.advice import Change, advise
from runner.diagnostics.finding import diagnosis
from runner.diagnostics.registry import RunContext, register_rule
from runner.diagnostics.rules.diverged import stability_changes
from runner.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class GradientConf:
    enabled: bool = MISSING
    vanishing_ratio: float = MISSING
    exploding_ratio: float = MISSING
    exploding_norm: float = MISSING
    edge_layers: float = MISSING


SEE = ["diagnostics/gradient_flow.png", "diagnostics/gradients.csv"]
NO_GRADIENT = 1e-20  # an RMS gradient per weight at most this is none at all
BOUNDED = ("sigmoid", "tanh")


def vanishing_advice(context: RunContext) -> tuple[list[str], str, str | None]:
    """What lets gradients reach the first layers, for this config: the suspicious settings
    in words, the advice and its fix."""
    s = context.settings
    words: list[str] = []
    activation = str(s.get("model.activation", "") or "")
    if activation in BOUNDED:
        words.append(f"`model.activation={activation}`{_bounded_words(context, activation)}")
    if s.get("model.batch_norm") is False:
        words.append("no BatchNorm (`model.batch_norm=false`)")
    if s.get("model.shortcut") is False:
        words.append("no shortcuts (`model.shortcut=false`, a plain net)")
    items: list[Change | str | None] = [
        Change("model.activation", "relu", "does not saturate") if activation in BOUNDED else None,
        Change("model.batch_norm", True),
        Change("model.shortcut", True, "residual connections"),
        Change("model.init", "kaiming"),
        "or fewer layers",
    ]
    text, fix = advise(s, items)
    return words, text, fix


def _bounded_words(context: RunContext, activation: str) -> str:
    """Why a sigmoid or tanh stack loses gradient: saturated outputs where the probe saw
    them (at least 10 %), else the derivative's ceiling."""
    acts = context.activations
    if acts is not None and "saturated_share" in acts and acts["saturated_share"].notna().any():
        last = acts[acts["epoch"] == acts["epoch"].max()]
        share = float(last["saturated_share"].mean())
        if share >= 0.1:
            return f" saturates: {100 * share:.0f} % of its outputs are within 2 % of a bound"
    ceiling = "0.25" if activation == "sigmoid" else "1, and less away from 0"
    return f": its derivative is at most {ceiling}, so the gradient shrinks layer by layer"


def layer_gradients(gradients: pd.DataFrame) -> pd.DataFrame:
    """Median gradient RMS per weight layer over the finite records, in layer order."""
    g = gradients[np.isfinite(gradients["grad_rms"].astype(float))]
    med = g.groupby(["index", "layer"], sort=True)["grad_rms"].median().reset_index()
    return med.sort_values("index").reset_index(drop=True)


def gradients(context: RunContext, c: GradientConf) -> list[dict[str, Any]]:
    """First layers' gradients far below (vanishing) or above (exploding) the last layers';
    a huge or non-finite global gradient norm at any recorded step (exploding)."""
    grads, steps = context.gradients, context.steps
    if grads is None or not len(grads):
        return []
    out: list[dict[str, Any]] = []
    layers = layer_gradients(grads)
    if len(layers) >= 2:
        k = min(len(layers) // 2, max(1, round(len(layers) * c.edge_layers)))
        rms = np.maximum(layers["grad_rms"].to_numpy(dtype=float), 1e-30)
        early, late = _geomean(rms[:k]), _geomean(rms[-k:])
        ratio = early / late
        evidence = {
            "early_grad_rms": early,
            "late_grad_rms": late,
            "ratio": ratio,
            "early_layers": k,
            "layers": len(layers),
        }
        names = f"{layers['layer'].iloc[0]} … {layers['layer'].iloc[-1]}"
        if ratio < c.vanishing_ratio:
            message = (
                f"Vanishing gradients: the first {k} weight layer(s) receive gradients "
                f"{ratio:.1e} times those of the last {k} (median RMS gradient per weight "
                f"{early:.1e} vs {late:.1e}; layers {names}), so the early layers barely learn."
            )
            if early <= NO_GRADIENT:
                message = (
                    f"Vanishing gradients: the first {k} weight layer(s) receive no gradient at "
                    f"all (median RMS gradient per weight {early:.1e} vs {late:.1e} for the last; "
                    f"layers {names}): units in between pass none — dead ReLUs do this."
                )
            severity = "error" if ratio < c.vanishing_ratio**2 else "warning"
            words, text, fix = vanishing_advice(context)
            if words:
                message += " Most likely: " + "; ".join(words) + "."
            out.append(
                diagnosis(
                    "vanishing_gradients", severity, message, evidence, text, fix=fix, see=SEE
                )
            )
        elif ratio > c.exploding_ratio:
            message = (
                f"Early layers receive gradients {ratio:.1e} times larger than the last layers "
                f"(median RMS gradient per weight {early:.1e} vs {late:.1e}): they grow unstably."
            )
            out.append(_exploding(context, "warning", message, evidence))
    precision = str(context.summary.get("precision", "32"))
    out += _global_norm(context, c, steps, precision)
    return out


def _exploding(context: RunContext, severity: str, message: str, evidence: dict) -> dict:
    words, items = stability_changes(context)
    if words:
        message += " Most likely: " + "; ".join(words) + "."
    text, fix = advise(context.settings, items)
    return diagnosis("exploding_gradients", severity, message, evidence, text, fix=fix, see=SEE)


def _global_norm(
    context: RunContext, c: GradientConf, steps: pd.DataFrame | None, precision: str
) -> list[dict[str, Any]]:
    if steps is None or "grad_norm" not in steps or steps["grad_norm"].isna().all():
        return []
    norms = steps["grad_norm"].dropna().to_numpy(dtype=float)
    finite = norms[np.isfinite(norms)]
    bad = int((~np.isfinite(norms)).sum())
    if precision == "16-mixed":  # the loss scaler skips steps with inf gradients: normal
        bad = bad if bad > len(norms) / 2 else 0
    peak = float(finite.max()) if finite.size else math.inf
    if not bad and peak <= c.exploding_norm:
        return []
    evidence = {
        "max_grad_norm": peak,
        "median_grad_norm": float(np.median(finite)) if finite.size else math.nan,
        "non_finite_records": bad,
        "threshold": c.exploding_norm,
    }
    what = f"{bad} recorded step{'s' if bad > 1 else ''} had NaN/inf gradients" if bad else ""
    if peak > c.exploding_norm and math.isfinite(peak):
        what = (what + "; " if what else "") + (
            f"the global gradient norm reached {peak:.3g} (median "
            f"{evidence['median_grad_norm']:.3g}, threshold {c.exploding_norm:g})"
        )
    return [_exploding(context, "error", f"Exploding gradients: {what}.", evidence)]


def _geomean(values: np.ndarray) -> float:
    return float(np.exp(np.mean(np.log(values))))


def check(c: GradientConf) -> None:
    if not 0 < c.edge_layers <= 0.5:
        raise ConfigError(
            f"diagnostics.gradients.edge_layers={c.edge_layers!r} is invalid: a share of the "
            "layers in (0, 0.5]"
        )


register_rule(
    "gradients",
    gradients,
    GradientConf,
    check=check,
    description="vanishing_gradients / exploding_gradients from the recorded gradient norms",
)

"""The verdict at the top of report.md: did the run train well, the one change to try next,
and where the evidence is — from the findings, ranked by severity and then by how much a
finding explains (a diverged run or a chance-level model before a still-improving curve)."""

from __future__ import annotations

from typing import Any

from runner.diagnostics.finding import SEVERITIES, pct

# Within a severity, the findings that explain the most come first: a cause (an extreme
# learning rate) before its symptoms (underfitting), training problems before data hints.
PRIORITY = (
    "diverged",
    "chance_level",
    "learning_rate_high",
    "learning_rate_low",
    "exploding_gradients",
    "vanishing_gradients",
    "dead_relu",
    "never_predicted",
    "underfitting",
    "plateau",
    "overfitting",
    "generalisation_gap",
    "duplicates",
    "imbalance",
    "still_improving",
    "weak_class",
)
SHORT = {
    "diverged": "the loss became NaN/inf",
    "chance_level": "it is no better than chance",
    "learning_rate_high": "the learning rate is far too high",
    "learning_rate_low": "the learning rate is far too low",
    "exploding_gradients": "its gradients explode",
    "vanishing_gradients": "its gradients vanish before reaching the first layers",
    "dead_relu": "many ReLU units are dead",
    "never_predicted": "a class is never predicted",
    "underfitting": "it does not fit even its training data",
    "plateau": "training is stuck on a plateau",
    "duplicates": "identical inputs sit in two splits",
    "overfitting": "it overfits: validation got worse as training went on",
    "generalisation_gap": "it fits its training data far better than new data",
    "imbalance": "the training classes are imbalanced",
    "still_improving": "it was still improving when training ended",
    "weak_class": "a class is much weaker than the others",
}


def rank(findings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Most severe first; within a severity by :data:`PRIORITY` (unknown codes last)."""

    def key(d: dict[str, Any]) -> tuple[int, int]:
        severity = SEVERITIES.index(d["severity"]) if d["severity"] in SEVERITIES else 3
        code = d.get("code", "")
        return severity, PRIORITY.index(code) if code in PRIORITY else len(PRIORITY)

    return sorted(findings, key=key)


def verdict(findings: list[dict[str, Any]], summary: dict[str, Any], chance: Any) -> dict:
    """``{"trained_well": yes | partly | no, "headline", "next", "why", "see"}``.

    ``chance``: :attr:`runner.diagnostics.context.RunContext.chance` (or None)."""
    ranked = rank(findings)
    problems = [d for d in ranked if d["severity"] != "info"]
    result = _result(summary, chance)
    if not problems:
        well, headline = (
            "yes",
            (result + "; " if result else "")
            + (
                "the automatic checks of the curves, gradients, activations, classes and data "
                "found no problem"
            ),
        )
    else:
        worst = problems[0]
        failed = worst["severity"] == "error" or summary.get("status") == "diverged"
        well = "no" if failed else "partly"
        what = _short(worst)
        more = len(problems) - 1
        headline = (result + ", but " if result and not failed else "") + what
        if more:
            headline += f" (and {more} more problem{'s' if more > 1 else ''} below)"
    top = ranked[0] if ranked else None
    if top is None:
        return {"trained_well": well, "headline": headline, "next": None, "why": "", "see": []}
    return {
        "trained_well": well,
        "headline": headline,
        "next": top.get("fix") or _first_sentence(top.get("advice", "")),
        "why": _short(top),
        "see": list(top.get("see") or []),
    }


def _short(finding: dict[str, Any]) -> str:
    return SHORT.get(finding.get("code", ""), str(finding.get("code", "")).replace("_", " "))


def _result(summary: dict[str, Any], chance: Any) -> str:
    acc, split = summary.get("test_acc"), "test"
    if acc is None:
        acc, split = summary.get("best_val_acc"), "validation"
    if acc is None:
        return ""
    text = f"{split} accuracy {pct(acc)}"
    if chance is not None:
        text += f" (always guessing the most frequent class: {pct(chance.majority)})"
    return text


def _first_sentence(text: str) -> str | None:
    text = (text or "").strip()
    if not text:
        return None
    return text.split(". ")[0].rstrip(".") + "."

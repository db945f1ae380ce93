"""What every diagnostics rule returns: findings in plain words, with evidence and advice.

A finding is a dict: ``code`` (str), ``severity`` (info | warning | error), ``message``
(str: what was seen, with its numbers), ``evidence`` ({name: number}), ``advice`` (str: what
to try, fitted to the config), ``fix`` (the one change to try first, e.g.
``optimizer.lr=0.001``, or None) and ``see`` (run-directory files that show the evidence);
summary.json stores them under ``diagnoses`` and report.md renders them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

SEVERITIES = ("error", "warning", "info")  # most severe first
AVERAGE_ROWS = ("macro avg", "weighted avg")  # rows of the per-class report that are no class


def diagnosis(
    code: str,
    severity: str,
    message: str,
    evidence: dict[str, Any],
    advice: str,
    *,
    fix: str | None = None,
    see: list[str] | tuple[str, ...] = (),
) -> dict[str, Any]:
    """One finding; ``severity`` is info | warning | error; evidence values are numbers."""
    if severity not in SEVERITIES:
        raise ValueError(f"unknown severity {severity!r}; valid: {', '.join(SEVERITIES)}")
    return {
        "code": code,
        "severity": severity,
        "message": message,
        "evidence": {k: _num(v) for k, v in evidence.items()},
        "advice": advice,
        "fix": fix,
        "see": list(see),
    }


def by_severity(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``found`` most severe first (stable within a severity)."""
    return sorted(found, key=lambda d: SEVERITIES.index(d["severity"]))


def pct(value: float) -> str:
    """A fraction as a percentage with one decimal: 0.1234 → ``12.3 %``."""
    return f"{100 * value:.1f} %"


def _num(value: Any) -> Any:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    try:
        value = float(value)
    except (TypeError, ValueError):
        return value
    return None if math.isnan(value) else float(f"{value:.6g}")

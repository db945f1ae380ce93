"""Training diagnostics, extra evaluation, interpretability figures and automatic diagnoses.

- :class:`DiagnosticsCallback` records during training (gradient norms, dead units,
  activations, weights, learning rate) and, when the run's summary is ready, writes
  ``diagnostics/``, ``eval/roc_curves.*``, ``eval/misclassified.*`` and ``interpret/``,
  adds its findings to ``summary["diagnoses"]`` and its sections to ``report.md``;
- :func:`build_callbacks` makes it from ``cfg.diagnostics`` (``conf/diagnostics/``);
- :func:`runner.diagnostics.rules.sweep_diagnoses` judges a sweep's runs (degradation).

The names are imported lazily, so registering the config schema
(:mod:`runner.schema.diagnostics`) stays cheap.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DiagnosticsCallback", "build_callbacks", "diagnose", "sweep_diagnoses"]


def __getattr__(name: str) -> Any:
    if name in ("DiagnosticsCallback", "build_callbacks"):
        from runner.diagnostics import callback

        return getattr(callback, name)
    if name in ("diagnose", "sweep_diagnoses"):
        from runner.diagnostics import rules

        return getattr(rules, name)
    raise AttributeError(f"module 'runner.diagnostics' has no attribute {name!r}")

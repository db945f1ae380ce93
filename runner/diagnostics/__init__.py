"""Training diagnostics, extra evaluation, interpretability figures and automatic diagnoses.

- :class:`DiagnosticsCallback` records during training (gradient norms, dead units,
  activations, weights, learning rate) and, when the run's summary is ready, writes
  ``diagnostics/``, ``eval/roc_curves.*``, ``eval/misclassified.*`` and ``interpret/``,
  adds its findings to ``summary["diagnoses"]``, the verdict (:mod:`.verdict`: did it
  train well, the one change to try next, where the evidence is) to
  ``summary["verdict"]`` and its sections to ``report.md``;
- :func:`build_callbacks` makes it from ``cfg.diagnostics`` (``conf/diagnostics/``);
- the automatic diagnoses are rules registered with their thresholds
  (:mod:`runner.diagnostics.registry`, built-in rules in :mod:`runner.diagnostics.rules`):
  :func:`diagnose` runs the run-level ones, :func:`sweep_diagnoses` the sweep-level ones
  (degradation).

The names are imported lazily, so registering the config schema
(:mod:`runner.schema.diagnostics`) stays cheap.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "DiagnosticsCallback",
    "RunContext",
    "SweepContext",
    "build_callbacks",
    "diagnose",
    "register_rule",
    "sweep_diagnoses",
]

_REGISTRY_NAMES = ("RunContext", "SweepContext", "diagnose", "register_rule", "sweep_diagnoses")


def __getattr__(name: str) -> Any:
    if name in ("DiagnosticsCallback", "build_callbacks"):
        from runner.diagnostics import callback

        return getattr(callback, name)
    if name in _REGISTRY_NAMES:
        from runner.diagnostics import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'runner.diagnostics' has no attribute {name!r}")

"""Training diagnostics, extra evaluation, interpretability figures and automatic diagnoses.

- :class:`DiagnosticsCallback` records during training (gradient norms, dead units,
  activations, weights, learning rate) and, when the run's summary is ready, writes
  ``diagnostics/``, ``eval/roc_curves.*``, ``eval/misclassified.*`` and ``interpret/``,
  adds its findings to ``summary["diagnoses"]`` and its sections to ``report.md``;
- :func:`build_callbacks` makes it from ``cfg.diagnostics`` (``conf/diagnostics/``);
- :func:`runner.diagnostics.rules.sweep_diagnoses` judges a sweep's runs (degradation).
"""

from runner.diagnostics.callback import DiagnosticsCallback, build_callbacks
from runner.diagnostics.rules import diagnose, sweep_diagnoses

__all__ = ["DiagnosticsCallback", "build_callbacks", "diagnose", "sweep_diagnoses"]

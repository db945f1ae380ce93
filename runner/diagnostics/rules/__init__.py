"""The built-in diagnostics rules, one module each; importing this package imports every
module in it, and each registers itself (:func:`runner.diagnostics.registry.register_rule`).

Run level (codes in brackets where a rule has several): fit (chance_level, underfitting,
plateau, overfitting, generalisation_gap — at most one per run), still_improving,
learning_rate (learning_rate_low, learning_rate_high), diverged, gradients
(vanishing_gradients, exploding_gradients), dead_relu, weak_class (never_predicted,
weak_class), imbalance, duplicates. Sweep level: degradation. Adding a rule: a module here
(or anywhere else, imported before the rules run) that defines its thresholds dataclass and
ends with ``register_rule``, and its section in ``conf/diagnostics/default.yaml``; no list
to edit.
"""

from __future__ import annotations

import importlib
import pkgutil

from runner.diagnostics.registry import diagnose, sweep_diagnoses

__all__ = ["diagnose", "sweep_diagnoses"]

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")

"""Schema of the ``diagnostics`` group (``conf/diagnostics/``): types only; every value and
threshold, with its unit, is in ``conf/diagnostics/default.yaml``.

The group's schema is assembled from the rule registry: :class:`DiagnosticsBaseConf` (the
general keys) plus one section per registered rule, typed by the thresholds dataclass the
rule's own module defines (:func:`runner.diagnostics.registry.schema`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING


@dataclass
class InterpretConf:
    enabled: bool = MISSING
    images: int = MISSING
    feature_maps: int = MISSING
    channels: int = MISSING
    min_map_size: int = MISSING


@dataclass
class DiagnosticsBaseConf:
    """The keys every diagnostics config has; the rules add their sections."""

    enabled: bool = MISSING
    interval: int = MISSING
    probe_size: int = MISSING
    weight_histograms: bool = MISSING
    histogram_bins: int = MISSING
    max_layers: int = MISSING
    figures: bool = MISSING
    evaluation: bool = MISSING
    roc_table_auc: float = MISSING
    misclassified: int = MISSING
    interpret: InterpretConf = field(default_factory=InterpretConf)


def __getattr__(name: str) -> Any:
    # SCHEMAS (read by runner.schema.register_all) is assembled on first use: the rule
    # registry imports this module, and the rule modules import the registry.
    if name == "SCHEMAS":
        from runner.diagnostics.registry import schema

        return {"diagnostics": {"default": schema()}}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

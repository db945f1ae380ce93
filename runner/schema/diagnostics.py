"""Schema of the ``diagnostics`` group (``conf/diagnostics/``): types only; every value and
threshold, with its unit, is in ``conf/diagnostics/default.yaml``."""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING


@dataclass
class OverfittingConf:
    enabled: bool = MISSING
    acc_gap: float = MISSING
    val_loss_rise: float = MISSING
    min_epochs_after_min: int = MISSING
    min_epochs: int = MISSING


@dataclass
class UnderfittingConf:
    enabled: bool = MISSING
    min_train_skill: float = MISSING
    min_epochs: int = MISSING


@dataclass
class GradientConf:
    enabled: bool = MISSING
    vanishing_ratio: float = MISSING
    exploding_ratio: float = MISSING
    exploding_norm: float = MISSING
    edge_layers: float = MISSING


@dataclass
class DeadReluConf:
    enabled: bool = MISSING
    max_share: float = MISSING
    error_share: float = MISSING
    min_units: int = MISSING


@dataclass
class PlateauConf:
    enabled: bool = MISSING
    epochs: int = MISSING
    min_rel_change: float = MISSING
    converged_train_acc: float = MISSING


@dataclass
class WeakClassConf:
    enabled: bool = MISSING
    auc_gap: float = MISSING
    f1_gap: float = MISSING
    min_support: int = MISSING


@dataclass
class DegradationConf:
    """Sweep-level rule (:func:`runner.diagnostics.rules.sweep_diagnoses`)."""

    enabled: bool = MISSING
    train_acc_gap: float = MISSING


@dataclass
class InterpretConf:
    enabled: bool = MISSING
    images: int = MISSING
    feature_maps: int = MISSING
    channels: int = MISSING
    gradcam_min_size: int = MISSING


@dataclass
class DiagnosticsConf:
    enabled: bool = MISSING
    interval: int = MISSING
    probe_size: int = MISSING
    weight_histograms: bool = MISSING
    histogram_bins: int = MISSING
    max_layers: int = MISSING
    figures: bool = MISSING
    evaluation: bool = MISSING
    misclassified: int = MISSING
    interpret: InterpretConf = field(default_factory=InterpretConf)
    overfitting: OverfittingConf = field(default_factory=OverfittingConf)
    underfitting: UnderfittingConf = field(default_factory=UnderfittingConf)
    gradients: GradientConf = field(default_factory=GradientConf)
    dead_relu: DeadReluConf = field(default_factory=DeadReluConf)
    plateau: PlateauConf = field(default_factory=PlateauConf)
    weak_class: WeakClassConf = field(default_factory=WeakClassConf)
    degradation: DegradationConf = field(default_factory=DegradationConf)


SCHEMAS = {"diagnostics": {"default": DiagnosticsConf}}

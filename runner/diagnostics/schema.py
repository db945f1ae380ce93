"""Typed schema of the ``diagnostics`` config group (``conf/diagnostics/*.yaml``).

Picked up by :func:`runner.schema.register_all` through the module-level ``SCHEMAS``.
Every threshold of :mod:`runner.diagnostics.rules` lives here, with its unit.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class OverfittingConf:
    enabled: bool = True
    acc_gap: float = 0.10  # train acc − val acc at the last epoch (fraction, 0.10 = 10 points)
    val_loss_rise: float = 0.10  # last val loss above its minimum by this fraction of the minimum
    min_epochs_after_min: int = 3  # ... and the minimum at least this many epochs before the end
    min_epochs: int = 3  # shorter runs are not judged (BatchNorm statistics still settling)


@dataclass
class UnderfittingConf:
    enabled: bool = True
    # train accuracy rescaled so chance (1/classes) = 0 and 100 % = 1; below this = underfit
    min_train_skill: float = 0.5
    min_epochs: int = 3  # shorter runs are not judged (epochs)


@dataclass
class GradientConf:
    enabled: bool = True
    # early layers' gradient RMS (per weight) / late layers' below this = vanishing
    vanishing_ratio: float = 1.0e-3
    # ... above this = early layers get far larger gradients than late ones (exploding)
    exploding_ratio: float = 1.0e3
    exploding_norm: float = 1.0e3  # global gradient L2 norm above this at any recorded step
    edge_layers: float = 0.2  # share of weight layers counted as "early" / "late" (at least 1)


@dataclass
class DeadReluConf:
    enabled: bool = True
    max_share: float = 0.5  # share of never-positive units in one ReLU layer (fraction)
    error_share: float = 0.9  # ... at or above this the diagnosis is an error
    min_units: int = 8  # layers with fewer units are not judged


@dataclass
class PlateauConf:
    enabled: bool = True
    epochs: int = 5  # window of epochs at constant lr that is checked (the last ones)
    min_rel_change: float = 0.01  # train loss (max − min) / mean in the window below this = flat
    converged_train_acc: float = 0.99  # flat but above this train acc is convergence, not a plateau


@dataclass
class WeakClassConf:
    enabled: bool = True
    auc_gap: float = 0.20  # class AUC this far below the median AUC of the other classes
    f1_gap: float = 0.30  # class F1 this far below the median F1 of the other classes
    min_support: int = 5  # test samples a class needs to be judged


@dataclass
class DegradationConf:
    """Sweep-level rule (:func:`runner.diagnostics.rules.sweep_diagnoses`)."""

    enabled: bool = True
    train_acc_gap: float = 0.05  # plain net's best train acc this far below the comparison's


@dataclass
class InterpretConf:
    enabled: bool = True  # feature maps, saliency and Grad-CAM (needs captum for the last two)
    images: int = 6  # test images explained: per class one correct and one wrong, capped
    feature_maps: int = 2  # images in feature_maps.png (a correct and a wrong one first)
    channels: int = 8  # most active channels shown per conv stage
    gradcam_min_size: int = 4  # Grad-CAM layer: deepest stage whose maps are >= this (pixels)


@dataclass
class DiagnosticsConf:
    enabled: bool = True  # false: no recording, no extra figures, no diagnoses
    interval: int = 10  # optimizer steps between gradient-norm records (0 = off; >= 4 per epoch)
    probe_size: int = 128  # training images of the fixed probe batch (dead units, activations)
    weight_histograms: bool = True  # weight distributions at start vs end
    histogram_bins: int = 40
    max_layers: int = 12  # layers drawn per line figure (evenly spaced, first and last kept)
    figures: bool = True  # draw the diagnostics/ figures (CSVs are written regardless)
    evaluation: bool = True  # ROC curves, misclassified grid, validation per-class report
    misclassified: int = 16  # most confident wrong test images in the grid (0 = off)
    interpret: InterpretConf = field(default_factory=InterpretConf)
    overfitting: OverfittingConf = field(default_factory=OverfittingConf)
    underfitting: UnderfittingConf = field(default_factory=UnderfittingConf)
    gradients: GradientConf = field(default_factory=GradientConf)
    dead_relu: DeadReluConf = field(default_factory=DeadReluConf)
    plateau: PlateauConf = field(default_factory=PlateauConf)
    weak_class: WeakClassConf = field(default_factory=WeakClassConf)
    degradation: DegradationConf = field(default_factory=DegradationConf)


@dataclass
class DiagnosticsOffConf(DiagnosticsConf):
    enabled: bool = False


SCHEMAS: dict[str, dict[str, type]] = {
    "diagnostics": {"default": DiagnosticsConf, "off": DiagnosticsOffConf}
}

"""What the builder hands the loop: the run's objects and plain settings, and the loop's
own state (:mod:`runner.engine` trains with them; :mod:`runner.build` makes them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from runner.data.loader import BatchLoader


@dataclass
class LoopSettings:
    """Plain values the loop reads (never the config itself).

    grad_clip: max global gradient norm (0 = off). log_every_n_steps: steps between
    progress-bar updates (and divergence checks on accelerators). progress_bar: auto |
    true | false. tta: test-time augmentation of validation and test batches, none | flip |
    flip_translate (:mod:`runner.tta`). plateau_monitor: the
    metrics row key a ReduceLROnPlateau scheduler steps on (None for other schedulers).
    """

    max_epochs: int
    num_classes: int
    grad_clip: float = 0.0
    divergence_check: bool = True
    log_every_n_steps: int = 50
    progress_bar: Any = "auto"
    tta: str = "none"
    scheduler_per_step: bool = False
    plateau_monitor: str | None = None
    accumulate_grad_batches: int = 1  # batches whose gradients one optimizer step sums


@dataclass
class RunParts:
    """The objects one run trains with (:func:`runner.build.build_run` makes them).

    forward_model: what the training step calls (the model, compiled or wrapped for
    data-parallel training). warmup: a :class:`runner.build.Warmup` or None. ema: torch's
    ``AveragedModel`` or None. autocast_dtype: bf16 / fp16 for mixed precision, else None.
    mixer: a :class:`runner.data.mixing.BatchMixer` (mixup / CutMix) or None.
    """

    model: torch.nn.Module
    forward_model: Any
    optimizer: torch.optim.Optimizer
    scheduler: Any
    warmup: Any
    ema: Any
    criterion: torch.nn.Module
    scaler: torch.amp.GradScaler
    autocast_dtype: torch.dtype | None
    train_loader: BatchLoader
    val_loader: BatchLoader
    device: torch.device
    mixer: Any = None


@dataclass
class TrainState:
    """Everything of the loop itself that changes during fit and must survive a resume."""

    epoch: int = 0  # completed epochs
    global_step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = 0.0  # time in training steps and their data
    train_images: int = 0


@dataclass(frozen=True)
class FitResult:
    """How fit ended: status (completed | early_stopped | diverged | interrupted) and why."""

    status: str
    reason: str | None = None

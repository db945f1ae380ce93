"""Hooks into the training loop, and the callbacks every run has.

Subclass :class:`Callback` and override what you need. Every hook the loop calls is
declared here; data reaches a callback through the hook's arguments (the
:class:`runner.engine.Loop` first: its ``model``, ``optimizer``, ``scaler``, ``state``,
``train_loader``, ``lr`` ...) and leaves through return values — nothing is set on the
loop. A callback whose state must survive a resume returns it from ``state_dict``.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.metrics import improved, resolve_mode

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EpochSignal:
    """What a callback tells the loop at the end of an epoch: ``stop`` (a reason: end the
    run early, with ``status`` — early_stopped, or e.g. time_limit) and ``improved`` (this
    epoch is the best so far, for the log line)."""

    stop: str | None = None
    improved: bool = False
    status: str = "early_stopped"


@dataclass(frozen=True)
class TestOutputs:
    """The test split's logits (float32, CPU) and labels from the best weights, and their
    evaluation (:class:`runner.evaluate.Evaluation`); ``None`` where there is no test."""

    logits: Any
    labels: Any
    evaluation: Any


class Callback:
    """No-op base: every hook is optional."""

    def on_fit_start(self, loop: Any) -> None:
        """Before the first (or, resumed, the next) epoch."""

    def on_epoch_start(self, loop: Any, epoch: int) -> None:
        """Before the training pass of ``epoch`` (1-based)."""

    def on_after_backward(self, loop: Any) -> None:
        """Gradients of the current step exist (scaled when a GradScaler is active)."""

    def on_train_batch_end(self, loop: Any, epoch: int, batch: int, loss: Any) -> None:
        """After the optimizer step of ``batch``; ``loss`` is a tensor on the device."""

    def on_epoch_end(self, loop: Any, epoch: int, row: dict[str, float]) -> EpochSignal | None:
        """After validation; ``row`` is the epoch's metrics.csv row."""
        return None

    def on_fit_end(self, loop: Any, status: str) -> None:
        """Training ended with ``status`` (completed, early_stopped, diverged, interrupted)."""

    def on_summary(self, loop: Any, summary: dict[str, Any], test: TestOutputs | None) -> list[str]:
        """The run's summary is ready (the callback may add keys to it); returns report.md
        sections (markdown) to append."""
        return []

    def on_run_end(self, loop: Any, summary: dict[str, Any]) -> None:
        """summary.json and report.md are written."""

    def state_dict(self) -> dict[str, Any] | None:
        """What must survive a resume (saved in last.pt); ``None`` = nothing."""
        return None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s result on resume."""


class MetricsCSV(Callback):
    """Rewrite ``metrics.csv`` (atomically) after every epoch from the whole history."""

    def __init__(self, write: Callable[[list[dict[str, float]]], Any]) -> None:
        self.write = write

    def on_epoch_end(self, loop: Any, epoch: int, row: dict[str, float]) -> None:
        self.write(loop.state.history)


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience``
    epochs (mode ``auto``: lower is better for losses)."""

    def __init__(self, monitor: str, mode: str, patience: int, min_delta: float) -> None:
        self.monitor, self.mode = str(monitor), resolve_mode(monitor, mode)
        self.patience, self.min_delta = int(patience), float(min_delta)
        self.reference: float | None = None
        self.bad_epochs = 0

    def on_epoch_end(self, loop: Any, epoch: int, row: dict[str, float]) -> EpochSignal | None:
        value = row[self.monitor]
        if improved(value, self.reference, self.mode, self.min_delta):
            self.reference, self.bad_epochs = value, 0
            return None
        self.bad_epochs += 1
        if self.bad_epochs < max(1, self.patience):
            return None
        reason = (
            f"early stopping: {self.monitor} did not improve by more than {self.min_delta} "
            f"for {self.bad_epochs} epochs (patience {self.patience})"
        )
        log.info(reason)
        return EpochSignal(stop=reason)

    def state_dict(self) -> dict[str, Any]:
        return {"reference": self.reference, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.reference, self.bad_epochs = state["reference"], int(state["bad_epochs"])


class Checkpointing(Callback):
    """Best-epoch selection by ``monitor``, and the checkpoint files.

    Each epoch: if ``monitor`` improved, the epoch becomes the best; then ``files``
    (:class:`runner.checkpoint.CheckpointFiles`) writes ``best.pt`` and ``last.pt`` as
    trainer.save asks, from ``payload(loop)``. Where no best.pt is written (trainer.save=last
    or none) the best epoch's weights are kept in memory for the test. Put it last among
    the callbacks: last.pt holds every callback's state as it is after the epoch.
    """

    def __init__(self, monitor: str, files: Any, payload: Callable[[Any], dict[str, Any]]) -> None:
        self.monitor, self.mode = monitor, resolve_mode(monitor)
        self.files, self.payload = files, payload
        self.best_path: Path = files.best_path
        self.best_value: float | None = None
        self.best_epoch = 0
        self.best_weights: dict[str, Any] | None = None  # when no best.pt is written

    def on_fit_start(self, loop: Any) -> None:
        resumed_at_best = self.best_epoch and self.best_epoch == loop.state.epoch
        if resumed_at_best and not self.files.keeps_best and self.best_weights is None:
            self._remember(loop)  # the restored weights are the best epoch's

    def on_epoch_end(self, loop: Any, epoch: int, row: dict[str, float]) -> EpochSignal:
        better = improved(row[self.monitor], self.best_value, self.mode)
        if better:
            self.best_value, self.best_epoch = row[self.monitor], epoch
        if self.files.keeps_best or self.files.keeps_last:
            self.files.write(self.payload(loop), better)
        if better and not self.files.keeps_best:
            self._remember(loop)
        return EpochSignal(improved=better)

    def _remember(self, loop: Any) -> None:
        weights = loop.evaluated_model().state_dict()
        self.best_weights = {k: copy.deepcopy(v.detach()) for k, v in weights.items()}

    def state_dict(self) -> dict[str, Any]:
        return {"best_value": self.best_value, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_value, self.best_epoch = state["best_value"], int(state["best_epoch"])

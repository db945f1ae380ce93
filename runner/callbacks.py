"""Hooks into the training loop. Subclass :class:`Callback` and override what you need.

The loop calls each hook with the :class:`runner.engine.Trainer` first, so a callback
can read the model, optimizer, data and state.
"""

from __future__ import annotations

from typing import Any


class Callback:
    """No-op base: every hook is optional."""

    def on_fit_start(self, trainer: Any) -> None: ...

    def on_epoch_start(self, trainer: Any, epoch: int) -> None: ...

    def on_after_backward(self, trainer: Any) -> None: ...

    def on_train_batch_end(self, trainer: Any, epoch: int, batch: int, loss: Any) -> None: ...

    def on_epoch_end(self, trainer: Any, epoch: int, row: dict[str, float]) -> None: ...

    def on_fit_end(self, trainer: Any, status: str) -> None: ...


class MetricsCSV(Callback):
    """Rewrite ``metrics.csv`` (atomically) after every epoch from the full history."""

    def __init__(self, path: Any) -> None:
        self.path = path

    def on_epoch_end(self, trainer: Any, epoch: int, row: dict[str, float]) -> None:
        write_metrics(self.path, trainer.state.history)


def write_metrics(path: Any, history: list[dict[str, float]]) -> None:
    import pandas as pd

    from runner.io import write_csv

    write_csv(path, pd.DataFrame(history))

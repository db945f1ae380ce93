"""``trainer.max_time``: a wall-clock budget that ends the run cleanly at an epoch boundary.

Like Lightning's ``max_time`` / Ultralytics' ``time``: the clock runs from the start of
fit and survives a resume (the elapsed time is saved in ``last.pt``). At the end of an
epoch, when the next epoch would not finish within the budget (estimated from the mean
epoch so far), the run stops with status ``time_limit``: best and last checkpoints, test
metrics and the report are written as for any finished run. To go on, resume with a
larger ``trainer.max_time`` (or ``null``) and ``trainer.resume=true``.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from runner.callbacks import Callback, EpochSignal
from runner.errors import ConfigError
from runner.rundir import TIME_LIMIT

log = logging.getLogger(__name__)


def parse_duration(value: Any) -> float | None:
    """Seconds of ``value``: null (no limit), a number of seconds, ``HH:MM:SS`` or
    ``DD:HH:MM:SS`` (seconds may have a fraction)."""
    if value is None or str(value).strip().lower() in ("", "null", "none"):
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        text = str(value).strip()
        if not re.fullmatch(r"(\d+:){0,3}\d+(\.\d+)?", text):
            raise ConfigError(
                f"trainer.max_time={value!r} is invalid: use HH:MM:SS, DD:HH:MM:SS, a number "
                "of seconds, or null"
            )
        parts = [float(p) for p in text.split(":")]
        seconds = sum(p * f for p, f in zip(reversed(parts), (1, 60, 3600, 86400)))
    if seconds <= 0:
        raise ConfigError(f"trainer.max_time={value!r} is invalid: the budget must be > 0")
    return seconds


class TimeLimit(Callback):
    """Stop at an epoch end when the next epoch would overrun ``budget`` seconds."""

    def __init__(self, budget: float) -> None:
        self.budget = float(budget)
        self.elapsed = 0.0  # seconds of fit before this process (restored on resume)
        self.epochs = 0  # epochs those seconds covered
        self._started = 0.0
        self._before = 0.0

    def on_fit_start(self, loop: Any) -> None:
        self._started, self._before = time.perf_counter(), self.elapsed

    def on_epoch_end(self, loop: Any, epoch: int, row: dict[str, float]) -> EpochSignal | None:
        self.elapsed = self._before + time.perf_counter() - self._started
        self.epochs += 1
        per_epoch = self.elapsed / self.epochs
        if self.elapsed + per_epoch <= self.budget:
            return None
        reason = (
            f"time limit: {self.elapsed:.1f} s of trainer.max_time={self.budget:g} s used after "
            f"epoch {epoch}; another epoch (~{per_epoch:.1f} s) would overrun it. Resume with "
            "a larger trainer.max_time and trainer.resume=true"
        )
        log.info(reason)
        return EpochSignal(stop=reason, status=TIME_LIMIT)

    def state_dict(self) -> dict[str, Any]:
        return {"elapsed": self.elapsed, "epochs": self.epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.elapsed, self.epochs = float(state["elapsed"]), int(state["epochs"])

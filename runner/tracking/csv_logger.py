"""CSV tracker: per-step loss and lr, and one row of config + final metrics."""

from __future__ import annotations

import csv
from typing import Any

import pandas as pd

from runner.io import write_csv
from runner.tracking.base import Tracker, final_metrics, flat_params

STEP_COLUMNS = ["step", "epoch", "batch", "train_loss", "lr"]


class CSVLogger(Tracker):
    """Writes ``<run>/tracking/steps.csv`` (appended while training) and ``hparams.csv``."""

    @property
    def folder(self):
        return self.ctx.run_dir / "tracking"

    def on_train_batch_end(self, loop: Any, epoch: int, batch: int, loss: Any) -> None:
        if not self.step_due(loop):
            return
        path = self.folder / "steps.csv"
        new = not path.exists()
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", newline="") as handle:
            writer = csv.writer(handle)
            if new:
                writer.writerow(STEP_COLUMNS)
            step = loop.state.global_step
            writer.writerow([step, epoch, batch, f"{float(loss.detach()):.6g}", f"{loop.lr:.6g}"])

    def on_summary(self, loop: Any, summary: dict[str, Any], test: Any = None) -> list[str]:
        if not self.conf.hparams:
            return []
        row = {
            "run_dir": str(self.ctx.run_dir),
            "status": summary.get("status"),
            **flat_params(self.cfg),
            **final_metrics(summary),
        }
        write_csv(self.folder / "hparams.csv", pd.DataFrame([row]))
        return []

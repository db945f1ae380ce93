"""TensorBoard tracker (``torch.utils.tensorboard.SummaryWriter``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from runner.errors import ConfigError
from runner.tracking.base import (
    RunContext,
    Tracker,
    epoch_scalars,
    final_metrics,
    flat_params,
)

SPLITS = ("train", "val", "test")


def scalar_tag(column: str) -> str:
    """A metrics.csv column as a TensorBoard tag: ``val_loss`` → ``loss/val``; ``lr`` → ``lr``.

    Grouping by metric puts train and validation side by side in TensorBoard.
    """
    split, _, metric = column.partition("_")
    return f"{metric}/{split}" if split in SPLITS and metric else column


class TensorBoardLogger(Tracker):
    """Event files in ``<run>/<log_dir>``: epoch scalars, step scalars and the HParams tab."""

    def __init__(self, conf: DictConfig, cfg: DictConfig, ctx: RunContext) -> None:
        super().__init__(conf, cfg, ctx)
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:
            raise ConfigError(
                f"logger=tensorboard needs the tensorboard package ({err}): "
                "pip install tensorboard  (or pip install 'runner[track]')"
            ) from None
        self._writer_cls = SummaryWriter
        log_dir = Path(conf.log_dir)
        self.log_dir = log_dir if log_dir.is_absolute() else ctx.run_dir / log_dir
        self.writer: Any = None

    def _open(self) -> Any:
        if self.writer is None:
            self.writer = self._writer_cls(log_dir=str(self.log_dir))
        return self.writer

    def on_fit_start(self, loop: Any) -> None:
        self._open()

    def on_train_batch_end(self, loop: Any, epoch: int, batch: int, loss: Any) -> None:
        if self.step_due(loop):
            step = loop.state.global_step
            self._open().add_scalar("step/train_loss", float(loss.detach()), step)
            self.writer.add_scalar("step/lr", loop.lr, step)

    def on_epoch_end(self, loop: Any, epoch: int, row: dict[str, float]) -> None:
        writer = self._open()
        for column, value in epoch_scalars(row).items():
            writer.add_scalar(scalar_tag(column), value, epoch)
        writer.flush()

    def on_fit_end(self, loop: Any, status: str) -> None:
        if self.writer is not None:
            self.writer.flush()

    def on_summary(self, loop: Any, summary: dict[str, Any], test: Any = None) -> list[str]:
        writer = self._open()
        if self.conf.hparams:
            params = {**flat_params(self.cfg), "status": str(summary.get("status"))}
            metrics = {f"hparam/{k}": v for k, v in final_metrics(summary).items()}
            # run_name "." keeps the hparams in this run's own folder (not a timestamped child)
            writer.add_hparams(params, metrics, run_name=".")
        writer.close()
        self.writer = None
        return []

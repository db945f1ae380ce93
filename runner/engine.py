"""The training loop: epochs of train + validate over objects the builder made.

The loop knows nothing of the config: :func:`runner.build.build_run` hands it the model,
optimizer, scheduler, loss, loaders and callbacks (:class:`RunParts`) and a few plain
settings (:class:`LoopSettings`). Early stopping and the best checkpoint are callbacks
(:mod:`runner.callbacks`); the checkpoint format is :mod:`runner.checkpoint`'s.
"""

from __future__ import annotations

import logging
import math
import time
from contextlib import nullcontext
from typing import Any

import torch
import torch.nn.functional as F

from runner.callbacks import Callback, EpochSignal
from runner.data.loader import BatchLoader
from runner.metrics import macro_f1
from runner.parts import FitResult, LoopSettings, RunParts, TrainState
from runner.runtime import SignalCatcher, progress_bar
from runner.tta import tta_logits

log = logging.getLogger(__name__)


class Diverged(Exception):
    """The training loss (or, after an epoch, the validation loss) became NaN or infinite."""

    def __init__(self, epoch: int, step: int, what: str = "loss") -> None:
        super().__init__(f"{what} became NaN/inf at epoch {epoch}, step {step}")
        self.epoch, self.step = epoch, step


class Loop:
    """Train ``parts`` for ``settings.max_epochs`` epochs (or until a callback stops it)."""

    def __init__(self, parts: RunParts, settings: LoopSettings, callbacks: list[Callback]) -> None:
        self.parts, self.settings, self.callbacks = parts, settings, list(callbacks)
        self.model, self.optimizer, self.scaler = parts.model, parts.optimizer, parts.scaler
        self.train_loader, self.val_loader = parts.train_loader, parts.val_loader
        self.device = parts.device
        self.state = TrainState()
        self.lr = self.optimizer.param_groups[0]["lr"]  # lr of the latest step
        self.interrupted = False
        dtype = parts.autocast_dtype
        self._autocast = (
            (lambda: torch.autocast(self.device.type, dtype=dtype))
            if dtype is not None
            else nullcontext
        )

    # ------------------------------------------------------------------ fit
    def fit(self) -> FitResult:
        """Train until max_epochs, a stop signal of a callback, divergence or a signal."""
        self._notify("on_fit_start")
        result = FitResult("completed")
        with SignalCatcher(self._interrupt):
            try:
                while self.state.epoch < self.settings.max_epochs and not self.interrupted:
                    row = self._run_epoch(self.state.epoch + 1)
                    if row is None:  # interrupted mid-epoch: the last checkpoint stays
                        break
                    stop = self._end_epoch(row)
                    if stop is not None:
                        result = FitResult(stop.status, stop.stop)
                        break
            except Diverged as err:
                result = FitResult("diverged", str(err))
        if self.interrupted and result.status == "completed":
            result = FitResult("interrupted", f"stopped by a signal after epoch {self.state.epoch}")
        self._notify("on_fit_end", status=result.status)
        return result

    def _interrupt(self) -> None:
        self.interrupted = True

    def _run_epoch(self, epoch: int) -> dict[str, float] | None:
        self._notify("on_epoch_start", epoch=epoch)
        started = time.perf_counter()
        train = self.train_epoch(epoch)
        if train is None:
            return None
        train_time = time.perf_counter() - started
        val = self.evaluate(self.val_loader) if len(self.val_loader.y) else {}
        if self.settings.divergence_check and val and not math.isfinite(val["loss"]):
            # finite training losses, but the weights the step left are not finite
            raise Diverged(epoch, self.state.global_step, "the validation loss")
        self.state.train_seconds += train_time
        self.state.train_images += train["images"]
        return {
            "epoch": epoch,
            "train_loss": train["loss"],
            "train_acc": train["acc"],
            "val_loss": val.get("loss", math.nan),
            "val_acc": val.get("acc", math.nan),
            "val_macro_f1": val.get("macro_f1", math.nan),
            "lr": self.lr,
            "epoch_seconds": time.perf_counter() - started,
            "train_images_per_second": train["images"] / max(train_time, 1e-9),
        }

    def train_epoch(self, epoch: int) -> dict[str, float] | None:
        """One pass over the training split; ``None`` if a signal stopped it."""
        self.model.train()
        device, s = self.device, self.settings
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        bad_step = torch.full((), -1, device=device, dtype=torch.long)
        seen = 0
        log_every = max(1, s.log_every_n_steps)
        # on an accelerator .item() syncs: check divergence (and update the bar) only every
        # log_every steps so the queue of kernels never drains; on the CPU every step
        check_every = 1 if device.type == "cpu" else log_every
        postfix_every = max(1, log_every // 5) if device.type == "cpu" else check_every
        bar = progress_bar(s.progress_bar, len(self.train_loader), f"epoch {epoch}")
        for i, (x, y) in enumerate(self.train_loader.epoch(epoch)):
            loss, logits = self._step(x, y, epoch, i)
            seen += y.shape[0]
            with torch.no_grad():
                loss_sum += loss.detach().float() * y.shape[0]
                correct += (logits.argmax(1) == y).sum()
                if s.divergence_check:
                    bad = ~torch.isfinite(loss.detach()) & (bad_step < 0)
                    bad_step = torch.where(bad, self.state.global_step, bad_step)
            if s.divergence_check and (i + 1) % check_every == 0 and bad_step.item() >= 0:
                raise Diverged(epoch, int(bad_step.item()))
            self._notify("on_train_batch_end", epoch=epoch, batch=i, loss=loss)
            if bar is not None:
                if (i + 1) % postfix_every == 0:
                    bar.set_postfix(
                        loss=f"{loss.item():.4f}",
                        acc=f"{correct.item() / seen:.3f}",
                        lr=f"{self.lr:.2e}",
                    )
                bar.update(1)
            if self.interrupted:
                break
        if bar is not None:
            bar.close()
        if self.interrupted:
            return None
        if s.divergence_check and bad_step.item() >= 0:
            raise Diverged(epoch, int(bad_step.item()))
        from runner.distributed import reduce_sums  # totals over data-parallel ranks

        loss_sum, correct, seen = reduce_sums(loss_sum, correct, seen)
        return {
            "loss": loss_sum.item() / max(seen, 1),
            "acc": correct.item() / max(seen, 1),
            "images": seen,
        }

    def _step(
        self, x: torch.Tensor, y: torch.Tensor, epoch: int = 0, batch: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward and backward of one batch; an optimizer step after every
        ``accumulate_grad_batches`` batches (and after the epoch's last)."""
        parts, k = self.parts, self.settings.accumulate_grad_batches
        if batch % k == 0:
            self.optimizer.zero_grad(set_to_none=True)
        mixed = None
        if parts.mixer is not None:  # mixup / CutMix; accuracy stays on the hard labels y
            x, mixed = parts.mixer.mix(x, y, (epoch, batch))
        with self._autocast():
            logits = parts.forward_model(x)
            out = logits.float()
            loss = parts.criterion(out, y) if mixed is None else mixed.loss(parts.criterion, out)
        weight = self._accumulation_weight(batch, y.shape[0]) if k > 1 else 1.0
        self.scaler.scale(loss * weight if k > 1 else loss).backward()
        if (batch + 1) % k and batch + 1 < len(self.train_loader):
            return loss, logits  # gradients accumulate over the next batches
        self._optimizer_step()
        return loss, logits

    def _accumulation_weight(self, batch: int, size: int) -> float:
        """This batch's share of the samples of its accumulation group, so the summed
        gradient equals the gradient of the mean loss over the whole group."""
        loader, k = self.train_loader, self.settings.accumulate_grad_batches
        start, n = batch - batch % k, len(loader)
        end = min(start + k, n)
        last = loader.num_samples - (n - 1) * loader.batch_size  # the epoch's last batch
        total = (end - start - 1) * loader.batch_size + (last if end == n else loader.batch_size)
        return size / total

    def _optimizer_step(self) -> None:
        parts = self.parts
        if parts.warmup is not None:
            parts.warmup.apply(self.state.global_step)
        self.lr = self.optimizer.param_groups[0]["lr"]
        self._notify("on_after_backward")
        if self.settings.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if parts.warmup is not None:
            parts.warmup.restore()
        if parts.ema is not None:
            parts.ema.update_parameters(self.model)
        self.state.global_step += 1
        if parts.scheduler is not None and self.settings.scheduler_per_step:
            parts.scheduler.step()

    # ------------------------------------------------------------------ evaluation
    def evaluated_model(self) -> torch.nn.Module:
        """The weights validation and test see: the moving average with ``ema``."""
        return self.parts.ema.module if self.parts.ema is not None else self.model

    @torch.inference_mode()
    def predict(self, loader: BatchLoader) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (float32, CPU) and labels of every batch of ``loader``, with the run's
        test-time augmentation (:func:`runner.tta.tta_logits`)."""
        self.model.eval()
        model = self.parts.ema.module if self.parts.ema is not None else self.parts.forward_model
        logits, labels = [], []
        for x, y in loader.epoch():
            with self._autocast():
                out = tta_logits(model, x, self.settings.tta)
            logits.append(out)
            labels.append(y)
        if not logits:
            return torch.zeros(0, self.settings.num_classes), torch.zeros(0, dtype=torch.long)
        return torch.cat(logits).cpu(), torch.cat(labels).cpu()

    def evaluate(self, loader: BatchLoader) -> dict[str, float]:
        """Loss, accuracy and macro-F1 of the evaluated weights on ``loader``."""
        logits, y = self.predict(loader)
        pred = logits.argmax(1)
        return {
            "loss": F.cross_entropy(logits, y).item(),
            "acc": (pred == y).float().mean().item(),
            "macro_f1": macro_f1(pred, y, self.settings.num_classes),
        }

    # ------------------------------------------------------------------ epoch end
    def _end_epoch(self, row: dict[str, float]) -> EpochSignal | None:
        """Record the epoch, step epoch schedulers, ask the callbacks; a signal to stop."""
        epoch = int(row["epoch"])
        self.state.epoch, self.state.history = epoch, [*self.state.history, row]
        scheduler = self.parts.scheduler
        if scheduler is not None and not self.settings.scheduler_per_step:
            if self.settings.plateau_monitor is not None:
                scheduler.step(row[self.settings.plateau_monitor])
            else:
                scheduler.step()
        signals = [s for s in self._notify("on_epoch_end", epoch=epoch, row=row) if s is not None]
        _log_epoch(row, self.settings.max_epochs, any(s.improved for s in signals))
        return next((s for s in signals if isinstance(s, EpochSignal) and s.stop), None)

    def _notify(self, hook: str, **kwargs: Any) -> list[Any]:
        return [getattr(cb, hook)(self, **kwargs) for cb in self.callbacks]


def _log_epoch(row: dict[str, float], max_epochs: int, improved: bool) -> None:
    log.info(
        "epoch %d/%d  train loss %.4f acc %.4f | val loss %.4f acc %.4f | lr %.2e | %.1fs%s",
        row["epoch"],
        max_epochs,
        row["train_loss"],
        row["train_acc"],
        row["val_loss"],
        row["val_acc"],
        row["lr"],
        row["epoch_seconds"],
        "  *best" if improved else "",
    )

"""The training loop: epochs of train + validate, callbacks, checkpoints, early stopping."""

from __future__ import annotations

import logging
import math
import signal
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from runner import build
from runner.callbacks import Callback
from runner.data.base import DataBundle
from runner.data.loader import BatchLoader
from runner.errors import CheckpointError
from runner.io import save_torch
from runner.runtime import rng_state, set_rng_state

log = logging.getLogger(__name__)

_DTYPES = {"bf16": torch.bfloat16, "16-mixed": torch.float16}


class Diverged(Exception):
    """The training loss became NaN or infinite."""

    def __init__(self, epoch: int, step: int) -> None:
        super().__init__(f"loss became NaN/inf at epoch {epoch}, step {step}")
        self.epoch, self.step = epoch, step


@dataclass
class TrainState:
    """Everything that changes during fit and must survive a resume."""

    epoch: int = 0  # completed epochs
    global_step: int = 0
    best_value: float | None = None
    best_epoch: int = 0
    es_value: float | None = None  # early-stopping reference value
    bad_epochs: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = 0.0  # time in training steps and their data
    train_images: int = 0


class Trainer:
    """Fit ``model`` on ``data`` as ``cfg.trainer`` says; writes checkpoints to ``run_dir``."""

    def __init__(
        self,
        cfg: DictConfig,
        model: torch.nn.Module,
        data: DataBundle,
        device: torch.device,
        run_dir: Path,
        callbacks: list[Callback] | None = None,
    ) -> None:
        t = cfg.trainer
        self.cfg, self.t, self.data, self.device, self.run_dir = cfg, t, data, device, run_dir
        self.callbacks = callbacks or []
        self.channels_last = bool(t.channels_last) and data.kind == "image"
        memory = torch.channels_last if self.channels_last else torch.preserve_format
        self.model = model.to(device, memory_format=memory)
        _set_batchnorm(self.model, t.bn_momentum, t.bn_eps)
        self.tta_flip = t.tta == "flip" and data.kind == "image"
        if t.tta == "flip" and not self.tta_flip:
            log.warning("trainer.tta=flip ignored: it mirrors images; this data is %s", data.kind)
        from runner.distributed import wrap  # issue 10: DistributedDataParallel under torchrun

        wrapped = wrap(self.model, device)
        self.forward_model = torch.compile(wrapped) if t.compile else wrapped
        self.train_loader = self._loader(data.train, t.batch_size, True, t.limit_train_batches)
        self.val_loader = self._loader(data.val, t.eval_batch_size, False, t.limit_eval_batches)
        self.optimizer = build.build_optimizer(cfg.optimizer, self.model, t.optimizer_impl)
        self.ema = _weight_ema(self.model, t.ema_decay) if t.ema_decay > 0 else None
        steps = len(self.train_loader)
        self.scheduler = build.build_scheduler(cfg.scheduler, self.optimizer, t.max_epochs, steps)
        self.step_interval = cfg.scheduler.interval == "step"
        self.warmup = build.Warmup(
            self.optimizer,
            int(round(cfg.scheduler.warmup_epochs * steps)),
            cfg.scheduler.warmup_start_factor,
        )
        # read per step: plain Python values (an OmegaConf attribute costs ~20-300 us)
        self.grad_clip = float(t.grad_clip)
        self.criterion = torch.nn.CrossEntropyLoss(
            weight=self._class_weights(), label_smoothing=t.label_smoothing
        )
        dtype = _DTYPES.get(str(t.precision))
        self.autocast = (
            torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()
        )
        self.scaler = torch.amp.GradScaler(device.type, enabled=str(t.precision) == "16-mixed")
        self.state = TrainState()
        self.stop_reason: str | None = None
        self.last_lr = self.optimizer.param_groups[0]["lr"]  # lr of the latest step
        self.interrupted = False
        self.ckpt_dir = run_dir / "checkpoints"
        # test logits of the best weights, kept by train.finish() for the diagnostics
        self.test_logits: tuple[torch.Tensor, torch.Tensor] | None = None

    # ------------------------------------------------------------------ set-up
    def _loader(self, split, batch_size: int, train: bool, limit: int) -> BatchLoader:
        return BatchLoader(
            split,
            batch_size,
            self.device,
            self.data,
            train=train,
            seed=self.t.seed,
            channels_last=self.channels_last,
            limit_batches=limit,
        )

    def _class_weights(self) -> torch.Tensor | None:
        cw = self.t.class_weights
        if cw is None:
            return None
        if cw == "balanced":  # n_samples / (n_classes * count), as scikit-learn's "balanced"
            counts = torch.bincount(self.data.train.y, minlength=self.data.num_classes).float()
            weights = len(self.data.train.y) / (self.data.num_classes * counts.clamp(min=1))
        else:
            weights = torch.tensor(list(cw), dtype=torch.float32)
            if len(weights) != self.data.num_classes:
                from runner.errors import ConfigError

                raise ConfigError(
                    f"trainer.class_weights lists {len(weights)} weights but the dataset has "
                    f"{self.data.num_classes} classes"
                )
        return weights.to(self.device)

    # ------------------------------------------------------------------ loop
    def fit(self) -> str:
        """Train until max_epochs, early stopping, divergence or a signal; return the status."""
        self._notify("on_fit_start")
        status = "completed"
        with _SignalCatcher(self):
            try:
                while self.state.epoch < self.t.max_epochs and not self.interrupted:
                    epoch = self.state.epoch + 1
                    row = self._run_epoch(epoch)
                    if row is None:  # interrupted mid-epoch: last.pt keeps the previous epoch
                        break
                    if self._end_epoch(epoch, row):
                        status = "early_stopped"
                        break
            except Diverged as err:
                self.stop_reason = (
                    f"{err}. The last good weights are in checkpoints/last.pt (epoch "
                    f"{self.state.epoch}). Try a lower optimizer.lr (e.g. ÷10), "
                    "trainer.grad_clip=1.0, a warm-up (scheduler.warmup_epochs=1) or "
                    "trainer.precision=32."
                )
                log.error("diverged: %s", self.stop_reason)
                status = "diverged"
        if self.interrupted and status == "completed":
            status = "interrupted"
            self.stop_reason = (
                f"stopped by a signal after epoch {self.state.epoch}; resume with "
                "trainer.resume=true"
            )
        self._notify("on_fit_end", status=status)
        return status

    def _run_epoch(self, epoch: int) -> dict[str, float] | None:
        self._notify("on_epoch_start", epoch=epoch)
        started = time.perf_counter()
        train = self.train_epoch(epoch)
        if train is None:
            return None
        train_time = time.perf_counter() - started
        val = self.evaluate(self.val_loader) if len(self.val_loader.y) else {}
        row = {
            "epoch": epoch,
            "train_loss": train["loss"],
            "train_acc": train["acc"],
            "val_loss": val.get("loss", math.nan),
            "val_acc": val.get("acc", math.nan),
            "val_macro_f1": val.get("macro_f1", math.nan),
            "lr": self.last_lr,
            "epoch_seconds": time.perf_counter() - started,
            "train_images_per_second": train["images"] / max(train_time, 1e-9),
        }
        self.state.train_seconds += train_time
        self.state.train_images += train["images"]
        return row

    def train_epoch(self, epoch: int) -> dict[str, float] | None:
        """One pass over the training split; ``None`` if a signal stopped it."""
        self.model.train()
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        bad_step = torch.full((), -1, device=self.device, dtype=torch.long)
        seen = 0
        # settings read once per epoch: OmegaConf attribute access is slow for a hot loop
        divergence_check = bool(self.t.divergence_check)
        log_every = max(1, int(self.t.log_every_n_steps))
        on_cpu = self.device.type == "cpu"
        check_every = 1 if on_cpu else log_every
        # the bar's loss/acc are read with .item(), a device sync: on an accelerator only as
        # often as the divergence check syncs anyway, so the queue of kernels never drains
        postfix_every = max(1, log_every // 5) if on_cpu else check_every
        bar = _progress(self.t.progress_bar, len(self.train_loader), f"epoch {epoch}")
        for i, (x, y) in enumerate(self.train_loader.epoch(epoch)):
            loss, logits = self._step(x, y)
            n = y.shape[0]
            seen += n
            with torch.no_grad():
                loss_sum += loss.detach().float() * n
                correct += (logits.argmax(1) == y).sum()
                if divergence_check:
                    finite = torch.isfinite(loss.detach())
                    bad_step = torch.where(
                        finite | (bad_step >= 0), bad_step, self.state.global_step
                    )
            if divergence_check and (i + 1) % check_every == 0 and bad_step.item() >= 0:
                raise Diverged(epoch, int(bad_step.item()))
            self._notify("on_train_batch_end", epoch=epoch, batch=i, loss=loss)
            if bar is not None and (i + 1) % postfix_every == 0:
                bar.set_postfix(
                    loss=f"{loss.item():.4f}",
                    acc=f"{correct.item() / seen:.3f}",
                    lr=f"{self.optimizer.param_groups[0]['lr']:.2e}",
                )
            if bar is not None:
                bar.update(1)
            if self.interrupted:
                if bar is not None:
                    bar.close()
                return None
        if bar is not None:
            bar.close()
        if divergence_check and bad_step.item() >= 0:
            raise Diverged(epoch, int(bad_step.item()))
        from runner.distributed import reduce_sums  # issue 10: totals over data-parallel ranks

        loss_sum, correct, seen = reduce_sums(loss_sum, correct, seen)
        return {
            "loss": loss_sum.item() / max(seen, 1),
            "acc": correct.item() / max(seen, 1),
            "images": seen,
        }

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.warmup.apply(self.state.global_step)
        self.last_lr = self.optimizer.param_groups[0]["lr"]
        with self.autocast:
            logits = self.forward_model(x)
            loss = self.criterion(logits.float(), y)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self._notify("on_after_backward")
        if self.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.warmup.restore()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        self.state.global_step += 1
        if self.scheduler is not None and self.step_interval:
            self.scheduler.step()
        return loss, logits

    @torch.inference_mode()
    def predict(self, loader: BatchLoader) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (float32, CPU) and labels of every batch of ``loader``.

        With ``trainer.tta=flip`` (images) the logits are the mean of each image's and
        its left-right mirror's: test-time augmentation, for validation and test alike.
        With ``trainer.ema_decay`` the moving average of the weights is evaluated.
        """
        self.model.eval()
        model = self.ema.module if self.ema is not None else self.forward_model
        logits, labels = [], []
        for x, y in loader.epoch():
            with self.autocast:
                out = model(x).float()
                if self.tta_flip:
                    out = (out + model(x.flip(-1)).float()) / 2
            logits.append(out)
            labels.append(y)
        if not logits:
            return torch.zeros(0, self.data.num_classes), torch.zeros(0, dtype=torch.long)
        return torch.cat(logits).cpu(), torch.cat(labels).cpu()

    def evaluate(self, loader: BatchLoader) -> dict[str, float]:
        """Loss, accuracy and macro-F1 of the current weights on ``loader``."""
        logits, y = self.predict(loader)
        loss = F.cross_entropy(logits, y).item()
        pred = logits.argmax(1)
        return {
            "loss": loss,
            "acc": (pred == y).float().mean().item(),
            "macro_f1": macro_f1(pred, y, self.data.num_classes),
        }

    # ------------------------------------------------------------------ epoch end
    def _end_epoch(self, epoch: int, row: dict[str, float]) -> bool:
        """Record the epoch, step schedulers, checkpoint; return True to stop early."""
        st = self.state
        st.epoch, st.history = epoch, [*st.history, row]
        if self.scheduler is not None and not self.step_interval:
            if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                self.scheduler.step(row[self.cfg.scheduler.monitor])
            else:
                self.scheduler.step()
        mode = build.monitor_mode(self.t.monitor)
        value = row[self.t.monitor]
        improved = _better(value, st.best_value, mode, 0.0)
        if improved:
            st.best_value, st.best_epoch = value, epoch
        stop = self._early_stop(row)
        _log_epoch(row, self.t.max_epochs, improved)
        self._notify("on_epoch_end", epoch=epoch, row=row)
        if self.t.checkpointing:
            if improved:
                self.save_checkpoint("best.pt")
            self.save_checkpoint("last.pt")
        elif improved:
            weights = self.evaluated_model().state_dict()
            self._best_weights = {k: v.detach().clone() for k, v in weights.items()}
        return stop

    def _early_stop(self, row: dict[str, float]) -> bool:
        es, st = self.t.early_stopping, self.state
        if not es.enabled:
            return False
        value = row[es.monitor]
        if _better(value, st.es_value, build.monitor_mode(es.monitor, es.mode), es.min_delta):
            st.es_value, st.bad_epochs = value, 0
            return False
        st.bad_epochs += 1
        if st.bad_epochs >= max(1, es.patience):
            self.stop_reason = (
                f"early stopping: {es.monitor} did not improve by more than {es.min_delta} for "
                f"{st.bad_epochs} epochs (patience {es.patience})"
            )
            log.info(self.stop_reason)
            return True
        return False

    # ------------------------------------------------------------------ checkpoints
    def evaluated_model(self) -> torch.nn.Module:
        """The weights validation and test see: the EMA copy if ``trainer.ema_decay``."""
        return self.ema.module if self.ema is not None else self.model

    def checkpoint(self) -> dict[str, Any]:
        """``model`` holds the evaluated weights (what predict/export load); with EMA the
        trained ones are kept as ``train_model`` for resuming."""
        extra = {"train_model": self.model.state_dict()} if self.ema is not None else {}
        return {
            "model": self.evaluated_model().state_dict(),
            **extra,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict(),
            "state": asdict(self.state),
            "epoch": self.state.epoch,
            "rng": rng_state(),
            "config": OmegaConf.to_container(self.cfg, resolve=True),
            "classes": list(self.data.classes),
            # issue 10: what runner-predict / runner-export need to rebuild the input pipeline
            "data": {
                "kind": self.data.kind,
                "mean": [float(v) for v in self.data.mean],
                "std": [float(v) for v in self.data.std],
                "input_shape": [int(v) for v in self.data.input_shape()],
                "model_kwargs": {
                    k: list(v) if isinstance(v, tuple) else v
                    for k, v in self.data.model_kwargs().items()
                    if isinstance(v, (bool, int, float, str, tuple, list))
                },
            },
        }

    def save_checkpoint(self, name: str) -> Path:
        return save_torch(self.ckpt_dir / name, self.checkpoint())

    def load_checkpoint(self, path: Path) -> None:
        """Restore model, optimizer, scheduler, loop state and RNGs from ``path``."""
        ckpt = load_checkpoint_file(path)
        load_weights(self.model, ckpt.get("train_model", ckpt["model"]), path)
        if self.ema is not None:  # without EMA in the checkpoint, the next step restarts it
            load_weights(self.ema.module, ckpt["model"], path)
            self.ema.n_averaged.fill_(ckpt["state"]["global_step"] if "train_model" in ckpt else 0)
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.scheduler is not None and ckpt.get("scheduler") is not None:
            self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.state = TrainState(**ckpt["state"])
        set_rng_state(ckpt["rng"])
        log.info("resumed from %s at epoch %d", path, self.state.epoch)

    def load_best_weights(self) -> int:
        """Put the best epoch's weights in the model; return that epoch."""
        best = self.ckpt_dir / "best.pt"
        weights = None
        if self.t.checkpointing and best.exists():
            weights = load_checkpoint_file(best)["model"]
        elif getattr(self, "_best_weights", None) is not None:
            weights = self._best_weights
        if weights is not None:
            for model in {self.model, self.evaluated_model()}:
                load_weights(model, weights, best)
        return self.state.best_epoch

    def _notify(self, hook: str, **kwargs: Any) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(self, **kwargs)


def load_checkpoint_file(path: Path) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` with a clear error for unreadable files."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint not found: {path}") from None
    except Exception as err:
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({type(err).__name__}: {str(err)[:200]}). It is "
            "truncated or not a runner checkpoint: delete it to start afresh, or point "
            "trainer.resume at another checkpoint."
        ) from None


def load_weights(model: torch.nn.Module, state: dict[str, Any], path: Path) -> None:
    """Load a state dict strictly, explaining a mismatch with the configured model."""
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()][:4]
        raise CheckpointError(
            f"checkpoint {path} does not fit the configured model (another model config was used "
            f"to train it): {' '.join(lines)[:400]}. Use the same model=... and model.* overrides "
            "as the run that wrote it."
        ) from None


def macro_f1(pred: torch.Tensor, y: torch.Tensor, num_classes: int) -> float:
    """Macro-averaged F1 over the classes present in ``y`` or ``pred`` (as scikit-learn)."""
    if len(y) == 0:
        return math.nan
    cm = (
        torch.bincount(y * num_classes + pred, minlength=num_classes**2)
        .view(num_classes, num_classes)
        .double()
    )
    tp = cm.diag()
    support, predicted = cm.sum(1), cm.sum(0)
    denom = support + predicted
    f1 = torch.where(denom > 0, 2 * tp / denom.clamp(min=1), torch.zeros_like(tp))
    present = denom > 0
    return f1[present].mean().item()


def _better(value: float, ref: float | None, mode: str, min_delta: float) -> bool:
    if value is None or math.isnan(value):
        return False
    if ref is None:
        return True
    return value < ref - min_delta if mode == "min" else value > ref + min_delta


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


def _progress(setting: Any, total: int, desc: str):
    """A tqdm bar: ``auto`` shows it only on a terminal (tqdm's ``disable=None``)."""
    if setting is False or setting == "false":
        return None
    from tqdm.auto import tqdm

    disable = None if setting == "auto" else False
    bar = tqdm(total=total, desc=desc, leave=False, disable=disable, dynamic_ncols=True)
    if bar.disable:
        return None
    return bar


class _SignalCatcher:
    """SIGINT/SIGTERM set ``trainer.interrupted``; the loop stops after the current step."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer, self.previous = trainer, {}

    def _handle(self, signum, frame) -> None:
        log.warning("signal %s received: stopping after this step", signal.Signals(signum).name)
        self.trainer.interrupted = True

    def __enter__(self):
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def _set_batchnorm(model: torch.nn.Module, momentum: float | None, eps: float | None) -> None:
    """Override every BatchNorm layer's ``momentum``/``eps`` (``None`` keeps the model's).

    Fast-training recipes use heavier running-statistics updates than torch's 0.1 (airbench:
    0.4 in torch's convention) so the statistics keep up with few, large steps.
    """
    if momentum is None and eps is None:
        return
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        log.warning("trainer.bn_momentum/bn_eps ignored: the model has no BatchNorm layer")
    for module in norms:
        if momentum is not None:
            module.momentum = float(momentum)
        if eps is not None:
            module.eps = float(eps)


def _weight_ema(model: torch.nn.Module, decay: float) -> AveragedModel:
    """torch's exponential moving average of ``model``'s weights and buffers (BatchNorm
    statistics included): the first update copies the weights, each later one moves the
    average by ``1 - decay`` towards them. Evaluation and checkpoints use ``.module``."""
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
    return ema.eval().requires_grad_(False)

"""``train(cfg) -> dict``: one configuration from config to a finished run directory."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from omegaconf import DictConfig

from runner import build
from runner.callbacks import Callback, MetricsCSV, write_metrics
from runner.data.base import DataBundle
from runner.data.loader import BatchLoader
from runner.engine import Trainer
from runner.errors import CheckpointError
from runner.io import write_csv, write_json, write_text
from runner.runtime import resolve_device, seed_everything, set_threads
from runner.validate import validate

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train ``cfg``, evaluate the best checkpoint on the test split, write the run directory.

    Returns the summary (the contents of ``summary.json``).
    """
    validate(cfg)
    from runner.distributed import setup as setup_distributed  # issue 10: torchrun (DDP)

    setup_distributed(cfg)  # no-op for one process; else joins the group, one run dir
    run_dir = Path(cfg.run_dir)
    previous = _finished_summary(run_dir, cfg.trainer.max_epochs) if cfg.trainer.resume else None
    if previous is not None:
        log.info("run in %s already finished (%s): skipping", run_dir, previous["status"])
        return previous
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "summary.json", {"status": "running"})
    seed_everything(cfg.trainer.seed, cfg.trainer.deterministic)
    threads = set_threads(cfg.trainer.num_threads)
    device = resolve_device(cfg.trainer.device)
    log.info("device %s, %d CPU threads, run directory %s", device, threads, run_dir)

    data = build.build_data(cfg)
    _write_data_files(run_dir, data)
    model = build.build_model(cfg.model, data)
    info = _model_info(model, data, run_dir)
    callbacks: list[Callback] = [
        MetricsCSV(run_dir / "metrics.csv"),
        *extra_callbacks(cfg, run_dir),
    ]
    trainer = Trainer(cfg, model, data, device, run_dir, callbacks)
    _maybe_resume(trainer, cfg, run_dir)

    status = trainer.fit()
    return finish(trainer, status, info)


def extra_callbacks(cfg: DictConfig, run_dir: Path) -> list[Callback]:
    """Optional callbacks (diagnostics, experiment trackers) contributed by other modules."""
    from runner.diagnostics import build_callbacks
    from runner.tracking import build_loggers

    callbacks: list[Callback] = [*build_callbacks(cfg, run_dir)]  # issue 6: diagnostics
    # experiment trackers (issue 10) go last, so they see what the others add to the summary
    callbacks += build_loggers(cfg, run_dir)
    return callbacks


def finish(trainer: Trainer, status: str, info: dict[str, Any]) -> dict[str, Any]:
    """Test the best weights and write metrics, evaluation, figures, summary and report."""
    from runner import evaluate, plots, report

    cfg, run_dir, st = trainer.cfg, trainer.run_dir, trainer.state
    history = pd.DataFrame(st.history)
    write_metrics(run_dir / "metrics.csv", st.history)
    best_epoch = trainer.load_best_weights() if st.history else 0
    test_loader = BatchLoader(
        trainer.data.test,
        cfg.trainer.eval_batch_size,
        trainer.device,
        trainer.data,
        channels_last=trainer.channels_last,
    )
    result = None
    if len(trainer.data.test) and st.history:
        logits, y = trainer.predict(test_loader)
        trainer.test_logits = (logits, y)  # diagnostics reuse them: no second test pass
        result = evaluate.evaluate_logits(logits, y, trainer.data.classes)
        write_csv(run_dir / "eval" / "classification_report.csv", result.report)
        write_csv(run_dir / "eval" / "confusion_matrix.csv", result.confusion, index=True)
        plots.plot_confusion(result.confusion, run_dir / "eval" / "confusion_matrix.png")
    if len(history):
        title = f"{cfg.model.name} on {cfg.dataset.name}"
        plots.plot_curves(history, best_epoch, run_dir / "curves.png", title)
    summary = build_summary(trainer, status, info, history, result)
    trainer.summary = summary
    for cb in trainer.callbacks:  # e.g. diagnostics add their findings and report sections
        if hasattr(cb, "on_summary"):
            cb.on_summary(trainer, summary)
    sections = getattr(trainer, "report_sections", [])
    report.write_report(
        run_dir, cfg, summary, history, result.report if result is not None else None, sections
    )
    write_json(run_dir / "summary.json", summary)
    for cb in trainer.callbacks:  # issue 10: trackers upload the finished run directory
        if hasattr(cb, "on_run_end"):
            cb.on_run_end(trainer, summary)
    log.info(
        "%s: best epoch %s, val acc %.4f, test acc %s — %s",
        status,
        best_epoch,
        summary["best_val_acc"],
        _pct(summary["test_acc"]),
        run_dir,
    )
    return summary


def build_summary(
    trainer: Trainer, status: str, info: dict[str, Any], history: pd.DataFrame, result: Any
) -> dict[str, Any]:
    st = trainer.state
    best = history[history["epoch"] == st.best_epoch].iloc[0] if st.best_epoch else None
    last = history.iloc[-1] if len(history) else None
    summary: dict[str, Any] = {
        "status": status,
        "monitor": trainer.t.monitor,
        "best_epoch": st.best_epoch,
        "epochs_run": st.epoch,
        "best_val_acc": _f(best, "val_acc"),
        "best_val_loss": _f(best, "val_loss"),
        "best_val_macro_f1": _f(best, "val_macro_f1"),
        "best_train_acc": _f(best, "train_acc"),
        "final_train_acc": _f(last, "train_acc"),
        "final_train_loss": _f(last, "train_loss"),
        "final_val_acc": _f(last, "val_acc"),
        "final_val_loss": _f(last, "val_loss"),
        "test_acc": result.accuracy if result else None,
        "test_macro_f1": result.macro_f1 if result else None,
        "test_loss": result.loss if result else None,
        **({f"test_{k}": v for k, v in result.top_k.items()} if result else {}),
        "params": info["params"],
        "flops": info.get("flops"),
        "train_seconds": round(st.train_seconds, 3),
        "images_per_second": round(st.train_images / st.train_seconds, 1)
        if st.train_seconds
        else None,
        "device": str(trainer.device),
        "precision": str(trainer.t.precision),
        "classes": list(trainer.data.classes),
        "stop_reason": trainer.stop_reason,
        "diagnoses": [],
    }
    return summary


def _f(row: Any, key: str) -> float | None:
    if row is None or key not in row:
        return None
    value = float(row[key])
    return None if value != value else value  # NaN → null in JSON


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _model_info(model: torch.nn.Module, data: DataBundle, run_dir: Path) -> dict[str, Any]:
    """Parameter count and FLOPs, logged and written as model_summary.csv."""
    params = sum(p.numel() for p in model.parameters())
    info: dict[str, Any] = {"params": params, "flops": None}
    try:
        from models.summary import summarize
    except ImportError:
        summarize = None
    if summarize is not None:
        dtype = torch.long if data.kind == "text" else torch.float32
        started = time.perf_counter()
        result = summarize(model, data.input_shape(), dtype=dtype)
        info["flops"] = int(result.flops)
        write_csv(run_dir / "model_summary.csv", pd.DataFrame(result.rows))
        log.debug("model summary in %.2fs", time.perf_counter() - started)
    flops = f", {info['flops'] / 1e6:.1f} MFLOPs per sample" if info["flops"] else ""
    log.info("model has %s parameters%s", f"{params:,}", flops)
    return info


def _write_data_files(run_dir: Path, data: DataBundle) -> None:
    counts = data.split_counts()
    frame = pd.DataFrame({"class": data.classes, **counts})
    write_csv(run_dir / "class_counts.csv", frame)
    log.info(
        "splits: train %d, val %d, test %d %s",
        len(data.train),
        len(data.val),
        len(data.test),
        "texts" if data.kind == "text" else "images",
    )
    for name, content in data.artifacts.items():
        path = run_dir / name
        if isinstance(content, (dict, list)):
            write_json(path, content)
        elif isinstance(content, pd.DataFrame):
            write_csv(path, content)
        else:
            write_text(path, str(content))


def _maybe_resume(trainer: Trainer, cfg: DictConfig, run_dir: Path) -> None:
    resume = cfg.trainer.resume
    if resume in (False, None, "false", ""):
        return
    path = run_dir / "checkpoints" / "last.pt" if resume in (True, "true") else Path(resume)
    if not path.exists():
        if resume in (True, "true"):
            log.info("trainer.resume=true but %s does not exist: starting afresh", path)
            return
        raise CheckpointError(f"trainer.resume={resume}: no such checkpoint file")
    trainer.load_checkpoint(path)


def _finished_summary(run_dir: Path, max_epochs: int) -> dict[str, Any] | None:
    """The summary of a run that needs no more training (a larger max_epochs extends it)."""
    path = run_dir / "summary.json"
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    status = summary.get("status")
    if status == "early_stopped" or (
        status == "completed" and summary.get("epochs_run", 0) >= max_epochs
    ):
        return summary
    return None

"""``train(cfg) -> dict``: one configuration from config to a finished run directory."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from runner import build, checkpoint, rundir
from runner.callbacks import Callback, TestOutputs
from runner.data.base import DataBundle
from runner.data.loader import BatchLoader
from runner.errors import CheckpointError
from runner.io import write_csv, write_json, write_rows, write_text
from runner.rundir import RunDir
from runner.runtime import resolve_device, seed_everything, set_threads
from runner.validate import validate

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train ``cfg``, evaluate the best weights on the test split, write the run directory.

    Returns the summary (the contents of ``summary.json``). Nothing is written before the
    config is valid; once the run has started, an error marks it ``failed`` (and is
    raised again).
    """
    validate(cfg)
    from runner.distributed import setup as setup_distributed

    setup_distributed(cfg)  # no-op for one process; else joins the group, one run dir
    run = RunDir(cfg.run_dir)
    resume_from = resume_checkpoint(cfg, run)
    if cfg.trainer.resume:
        previous = run.finished_summary(int(cfg.trainer.max_epochs))
        if previous is not None:
            log.info("run in %s already finished (%s): skipping", run.path, previous["status"])
            return previous
    run.start()
    try:
        return _train(cfg, run, resume_from)
    except BaseException as err:
        run.fail(err)
        raise


def _train(cfg: DictConfig, run: RunDir, resume_from: Path | None) -> dict[str, Any]:
    seed_everything(cfg.trainer.seed, cfg.trainer.deterministic)
    threads = set_threads(cfg.trainer.num_threads)
    device = resolve_device(cfg.trainer.device)
    log.info("device %s, %d CPU threads, run directory %s", device, threads, run.path)
    data = build.build_data(cfg)
    _write_data_files(run, data)
    model = build.build_model(cfg, data)
    params = sum(p.numel() for p in model.parameters())
    log.info("model has %s parameters", f"{params:,}")
    built = build.build_run(cfg, data, model, device, run, extra_callbacks(cfg, run, data))
    if resume_from is not None:
        checkpoint.restore(
            built.loop, built.loop.callbacks, checkpoint.load(resume_from), resume_from
        )
    result = built.loop.fit()
    return finish(cfg, run, built, data, result)


def resume_checkpoint(cfg: DictConfig, run: RunDir) -> Path | None:
    """The checkpoint ``trainer.resume`` points at: None (start afresh), the run's last
    checkpoint (true) or a file; a missing file named explicitly is an error."""
    resume = cfg.trainer.resume
    if resume in (False, None, "false", ""):
        return None
    path = run.checkpoint("last") if resume in (True, "true") else Path(resume)
    if path.exists():
        return path
    if resume in (True, "true"):
        log.info("trainer.resume=true but %s does not exist: starting afresh", path)
        return None
    raise CheckpointError(f"trainer.resume={resume}: no such checkpoint file")


def extra_callbacks(cfg: DictConfig, run: RunDir, data: DataBundle) -> list[Callback]:
    """Optional callbacks: the model's cost and the data's notes, diagnostics, then experiment
    trackers (which go last, so they see what the others add to the summary)."""
    from runner.cost import ModelCost
    from runner.diagnostics import build_callbacks
    from runner.notes import DataNotes
    from runner.tracking import build_loggers

    facts = [ModelCost(cfg.model, data), DataNotes(data)]
    return [*facts, *build_callbacks(cfg, run.path, data), *build_loggers(cfg, run.path)]


def finish(
    cfg: DictConfig, run: RunDir, built: build.BuiltRun, data: DataBundle, result: Any
) -> dict:
    """Test the best weights; write metrics, evaluation, figures, summary and report."""
    import pandas as pd

    from runner import plots, report

    loop, best = built.loop, built.checkpointing
    history = pd.DataFrame(loop.state.history)
    run.write_metrics(loop.state.history)
    if loop.state.history:
        _load_best_weights(loop, best)
    test = _test(loop, data, built.eval_options, run)
    if len(history):
        title = f"{cfg.model.name} on {cfg.dataset.name}"
        plots.plot_curves(history, best.best_epoch, run / rundir.CURVES, title)
    summary = build_summary(cfg, run, loop, best.best_epoch, result, data, history, test)
    sections: list[str] = []
    for cb in loop.callbacks:  # diagnostics add their findings and report sections
        sections += cb.on_summary(loop, summary, test)
    table = test.evaluation.report if test is not None else None
    report.write_report(run.path, cfg, summary, history, table, sections)
    run.finish(summary)
    for cb in loop.callbacks:  # trackers upload the finished run directory
        cb.on_run_end(loop, summary)
    figures = {k: summary[k] for k in ("best_val_acc", "test_acc")}
    shown = {k: "n/a" if v is None else f"{v:.4f}" for k, v in figures.items()}
    log.info(
        "%s: best epoch %s, val acc %s, test acc %s — %s",
        result.status,
        best.best_epoch,
        shown["best_val_acc"],
        shown["test_acc"],
        run.path,
    )
    return summary


def _load_best_weights(loop: Any, best: Any) -> None:
    """Put the best epoch's weights into the model (and its moving average)."""
    weights = best.best_weights
    path = best.best_path
    if weights is None and path.exists():
        weights = checkpoint.load(path)[checkpoint.MODEL]
    if weights is not None:
        for model in {loop.model, loop.evaluated_model()}:
            checkpoint.load_weights(model, weights, path)


def _test(loop: Any, data: DataBundle, options: Any, run: RunDir) -> TestOutputs | None:
    """Logits and evaluation of the test split (written to eval/), if there is one."""
    from runner import evaluate, plots

    if not len(data.test) or not loop.state.history:
        return None
    logits, y = loop.predict(BatchLoader(data.test, data, options))
    result = evaluate.evaluate_logits(logits, y, data.classes)
    write_csv(run / rundir.EVAL / "classification_report.csv", result.report)
    write_csv(run / rundir.EVAL / "confusion_matrix.csv", result.confusion, index=True)
    plots.plot_confusion(result.confusion, run / rundir.EVAL / "confusion_matrix.png")
    return TestOutputs(logits, y, result)


def build_summary(
    cfg: DictConfig,
    run: RunDir,
    loop: Any,
    best_epoch: int,
    result: Any,
    data: DataBundle,
    history: Any,
    test: TestOutputs | None,
) -> dict[str, Any]:
    """The figures of summary.json (the diagnostics add ``diagnoses`` and more)."""
    state = loop.state
    best = history[history["epoch"] == best_epoch].iloc[0] if best_epoch else None
    last = history.iloc[-1] if len(history) else None
    evaluation = test.evaluation if test is not None else None
    seconds = state.train_seconds
    return {
        "status": result.status,
        "monitor": str(cfg.trainer.monitor),
        "best_epoch": best_epoch,
        "epochs_run": state.epoch,
        "best_val_acc": _value(best, "val_acc"),
        "best_val_loss": _value(best, "val_loss"),
        "best_val_macro_f1": _value(best, "val_macro_f1"),
        "best_train_acc": _value(best, "train_acc"),
        "final_train_acc": _value(last, "train_acc"),
        "final_train_loss": _value(last, "train_loss"),
        "final_val_acc": _value(last, "val_acc"),
        "final_val_loss": _value(last, "val_loss"),
        "test_acc": evaluation.accuracy if evaluation else None,
        "test_macro_f1": evaluation.macro_f1 if evaluation else None,
        "test_loss": evaluation.loss if evaluation else None,
        **({f"test_{k}": v for k, v in evaluation.top_k.items()} if evaluation else {}),
        "params": sum(p.numel() for p in loop.model.parameters()),
        "flops": model_flops(loop.model, data, run),
        "train_seconds": round(seconds, 3),
        "images_per_second": round(state.train_images / seconds, 1) if seconds else None,
        "device": str(loop.device),
        "precision": str(cfg.trainer.precision),
        "classes": list(data.classes),
        "stop_reason": _stop_reason(result, state.epoch, bool(cfg.trainer.checkpointing)),
        "diagnoses": [],
    }


def _stop_reason(result: Any, epoch: int, saved: bool) -> str | None:
    if result.status == "diverged":
        where = (
            f"The last good weights are in checkpoints/last.pt (epoch {epoch})."
            if saved and epoch
            else "No epoch finished, so no weights were kept."
        )
        return (
            f"{result.reason}. {where} Try a lower optimizer.lr (e.g. ÷10), "
            "trainer.grad_clip=1.0, a warm-up (scheduler.warmup_epochs=1) or trainer.precision=32."
        )
    if result.status == "interrupted":
        return f"{result.reason}; resume with trainer.resume=true"
    return result.reason


def model_flops(model: torch.nn.Module, data: DataBundle, run: RunDir) -> int | None:
    """FLOPs of one forward pass of one sample (torch's FlopCounterMode), after training so
    the count costs no start-up time; the per-layer table goes to model_summary.csv."""
    from runner.models.summary import format_flops, summarize

    dtype = torch.long if data.kind == "text" else torch.float32
    try:
        result = summarize(model, data.input_shape(), dtype=dtype)
    except Exception as err:  # a counting failure must not cost the run
        log.warning("could not count the model's FLOPs: %s", err)
        return None
    write_rows(run / rundir.MODEL_SUMMARY, result.rows)
    log.info("model: %s per sample (all ops)", format_flops(result.flops))
    return int(result.flops)


def _value(row: Any, key: str) -> float | None:
    if row is None or key not in row:
        return None
    value = float(row[key])
    return None if value != value else value  # NaN → null in JSON


def _write_data_files(run: RunDir, data: DataBundle) -> None:
    counts = data.split_counts()
    rows = [
        {"class": name, **{split: counts[split][i] for split in counts}}
        for i, name in enumerate(data.classes)
    ]
    write_rows(run / rundir.CLASS_COUNTS, rows)
    log.info(
        "splits: train %d, val %d, test %d %s",
        len(data.train),
        len(data.val),
        len(data.test),
        "texts" if data.kind == "text" else "images",
    )
    for name, content in data.artifacts.items():
        path = run / name
        if isinstance(content, (dict, list)):
            write_json(path, content)
        elif hasattr(content, "to_csv"):  # a pandas DataFrame
            write_csv(path, content)
        else:
            write_text(path, str(content))

"""``train(cfg) -> dict``: one configuration from config to a finished run directory."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from runner import build, checkpoint, resume, rundir
from runner.callbacks import Callback, TestOutputs
from runner.data.base import DataBundle
from runner.data.loader import BatchLoader
from runner.errors import CheckpointError, DataError, RunDirError
from runner.finetune import build_finetune
from runner.io import write_csv, write_json, write_rows, write_text
from runner.rundir import Record, RunDir
from runner.runtime import resolve_device, seed_everything, set_threads
from runner.validate import validate

log = logging.getLogger(__name__)


def train(
    cfg: DictConfig, overrides: list[str] | None = None, choices: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Train ``cfg``, evaluate the best weights on the test split, write the run directory.

    Returns the summary (the contents of ``summary.json``). Everything that can refuse
    the job — the config, the run directory (busy, holding another run), the data, a
    resume that does not fit — is checked before the first write; a refused job leaves an
    existing run as it was (:class:`runner.rundir.RunDir`). Once the run has started, an
    error marks it ``failed`` (and is raised again). ``overrides`` and ``choices`` (the member
    of each config group): what to record in ``.hydra/`` outside a Hydra app.
    """
    record = Record.of(cfg, overrides, choices)
    run: RunDir | None = None
    try:
        validate(cfg)
        from runner.distributed import setup as setup_distributed

        setup_distributed(cfg)  # no-op for one process; else joins the group, one run dir
        run = RunDir(cfg.run_dir)
        with run.claim(resume=_resuming(cfg)):
            return _claimed(cfg, run, record)
    except BaseException as err:
        if run is None:
            with contextlib.suppress(Exception):
                run = RunDir(cfg.run_dir)
        if run is not None:
            run.refused(err, record)  # only a fresh directory, only a job that never started
        raise


def _claimed(cfg: DictConfig, run: RunDir, record: Record) -> dict[str, Any]:
    """The run directory is this job's: prepare (may still refuse), start, train."""
    resume_from = resume_checkpoint(cfg, run)
    ckpt = checkpoint.load_for_resume(resume_from) if resume_from is not None else None
    plan = resume.plan(cfg, ckpt, resume_from) if ckpt is not None else None
    if _resuming(cfg):
        previous = _finished(cfg, run, plan)
        if previous is not None:
            return previous
    seed_everything(cfg.trainer.seed, cfg.trainer.deterministic)
    threads = set_threads(cfg.trainer.num_threads)
    device = resolve_device(cfg.trainer.device)
    data = build.build_data(cfg)
    _check_splits(cfg, data)
    model = build.build_model(cfg, data)
    if ckpt is not None:
        resume.check_data(ckpt, data, resume_from)
        weights = ckpt.get(checkpoint.TRAIN_MODEL, ckpt[checkpoint.MODEL])
        checkpoint.load_weights(model, weights, resume_from)  # refuses another model now
    run.start(record)
    try:
        log.info("device %s, %d CPU threads, run directory %s", device, threads, run.path)
        return _train(cfg, run, data, model, device, ckpt, plan)
    except BaseException as err:
        err = _as_write_error(err, run)
        run.fail(err)
        raise err from None


def _train(
    cfg: DictConfig,
    run: RunDir,
    data: DataBundle,
    model: torch.nn.Module,
    device: torch.device,
    ckpt: dict[str, Any] | None,
    plan: resume.ResumePlan | None,
) -> dict[str, Any]:
    _write_data_files(run, data)
    params = sum(p.numel() for p in model.parameters())
    log.info("model has %s parameters", f"{params:,}")
    tuning = build_finetune(cfg, data.model_kwargs(), model)  # model.weights, model.freeze
    callbacks = [*([tuning] if tuning is not None else []), *extra_callbacks(cfg, run, data)]
    built = build.build_run(cfg, data, model, device, run, callbacks)
    if ckpt is not None and plan is not None:  # its weights replace any pretrained ones
        checkpoint.restore(built.loop, built.loop.callbacks, ckpt, plan.path)
        plan.apply(built.loop)
    result = built.loop.fit()
    return finish(cfg, run, built, data, result, plan)


def _resuming(cfg: DictConfig) -> bool:
    return cfg.trainer.resume not in (False, None, "false", "")


def _finished(cfg: DictConfig, run: RunDir, plan: resume.ResumePlan | None) -> dict | None:
    """The summary of a resumed run that has nothing left to train (returned as it is),
    ``None`` when training goes on; a change that could no longer apply is refused."""
    summary = run.summary()
    status = summary.get("status")
    more_epochs = int(cfg.trainer.max_epochs) > int(summary.get("epochs_run", 0) or 0)
    changed = sorted(plan.changes) if plan is not None else []
    if status == rundir.DIVERGED and changed and plan is not None and plan.epoch > 0:
        return None  # resumed from the last good epoch with other settings
    done = status in (rundir.EARLY_STOPPED, rundir.DIVERGED) or (
        status == rundir.COMPLETED and not more_epochs
    )
    if not done:
        if plan is None and (status in rundir.RESULTS or _epochs_run(run)):
            raise RunDirError(
                f"{run.path} holds a {status} run without {rundir.CHECKPOINTS}/last.pt, which "
                f"a resume continues from: {_why_no_last(run)}. It cannot be continued; its "
                "results stay as they are. Choose another hydra.run.dir for a new run"
            )
        return None
    if changed:
        more = "raise trainer.max_epochs to train on, or " if status == rundir.COMPLETED else ""
        raise RunDirError(
            f"{run.path} already finished ({status}, {summary.get('epochs_run')} epochs): "
            f"nothing is left to train with the changed {', '.join(changed)}; {more}start a "
            "new run in another hydra.run.dir"
        )
    log.info("run in %s already finished (%s): skipping", run.path, status)
    return summary


def _epochs_run(run: RunDir) -> int:
    """Epochs an unfinished run recorded in metrics.csv (0 when none)."""
    metrics = run.metrics()
    return 0 if metrics is None else len(metrics)


def _why_no_last(run: RunDir) -> str:
    """Why a run directory has no last.pt, from its stored config."""
    from omegaconf import OmegaConf

    stored = run.config()
    save = OmegaConf.select(stored, "trainer.save", default=None) if stored else None
    if save in ("best", "none"):
        return f"it was trained with trainer.save={save}, which writes no last.pt"
    if stored is not None and OmegaConf.select(stored, "trainer.checkpointing") is False:
        return "it was trained without checkpoints"
    return (
        "the file was removed after the run (runner-clean removes the checkpoints of finished runs)"
    )


def _check_splits(cfg: DictConfig, data: DataBundle) -> None:
    """A run needs a validation split: the monitored metric, the best epoch and early
    stopping all come from it (two classes or more: runner.data.registry.check_bundle)."""
    if not len(data.val):
        raise DataError(
            f"dataset {data.name!r} has no validation samples (dataset.val_fraction="
            f"{cfg.dataset.val_fraction}), but trainer.monitor={cfg.trainer.monitor} and early "
            "stopping need them: set dataset.val_fraction to e.g. 0.1"
        )


def _as_write_error(err: BaseException, run: RunDir) -> BaseException:
    """A full or read-only disk as a one-line :class:`RunDirError` (the traceback of any
    other error stays what it is)."""
    if isinstance(err, OSError) and err.errno in rundir.WRITE_ERRNOS:
        return rundir.write_error(err, run.path)
    return err


def resume_checkpoint(cfg: DictConfig, run: RunDir) -> Path | None:
    """The checkpoint ``trainer.resume`` points at: None (start afresh), the run's last
    checkpoint (true) or a file; a missing file named explicitly is an error."""
    resume_setting = cfg.trainer.resume
    if not _resuming(cfg):
        return None
    path = run.checkpoint("last") if resume_setting in (True, "true") else Path(resume_setting)
    if path.exists():
        return path
    if resume_setting in (True, "true"):
        log.info("trainer.resume=true but %s does not exist: starting afresh", path)
        return None
    raise CheckpointError(f"trainer.resume={resume_setting}: no such checkpoint file")


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
    cfg: DictConfig,
    run: RunDir,
    built: build.BuiltRun,
    data: DataBundle,
    result: Any,
    plan: resume.ResumePlan | None = None,
) -> dict:
    """Test the best weights; write metrics, evaluation, figures, summary and report
    (``plan``: what a resume changed, recorded in both)."""
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
    summary["precision"], summary["channels_last"] = built.precision, built.channels_last
    sections: list[str] = []
    if plan is not None:
        summary["resumed"] = plan.describe()
        sections.append(_resume_section(plan))
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


def _resume_section(plan: resume.ResumePlan) -> str:
    lines = ["## Resumed", "", f"From `{plan.path}` after epoch {plan.epoch}."]
    if plan.changes:
        lines += ["", "| key | checkpoint | this run |", "|---|---|---|"]
        lines += [f"| {k} | {old} | {new} |" for k, (old, new) in plan.changes.items()]
        if plan.rebuild_cosine is not None:
            lines += [
                "",
                "The cosine schedule was rebuilt over the added epochs, starting at "
                "the last epoch's lr (metrics.csv, column lr).",
            ]
    else:
        lines += ["", "With the checkpoint's settings."]
    return "\n".join(lines)


def _load_best_weights(loop: Any, best: Any) -> None:
    """Put the best epoch's weights into the model (and its moving average)."""
    weights = best.best_weights
    path = best.best_path
    if weights is None and path.exists():
        weights = checkpoint.load(path)[checkpoint.MODEL]
    if weights is None and best.best_epoch != loop.state.epoch:
        log.warning(
            "the best epoch's (%d) weights were kept neither in best.pt (trainer.save=%s) nor "
            "in memory (the run was resumed after it): the test uses the last epoch's (%d)",
            best.best_epoch,
            "last" if best.files.keeps_last else "none",
            loop.state.epoch,
        )
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
        "classes": list(data.classes),
        "stop_reason": _stop_reason(result, state.epoch, run.checkpoint("last").exists()),
        "diagnoses": [],
    }


def _stop_reason(result: Any, epoch: int, last_saved: bool) -> str | None:
    if result.status == "diverged":
        if not epoch:
            where = "No epoch finished, so no weights were kept and nothing was tested."
        elif last_saved:
            where = (
                f"The last good weights (epoch {epoch}) are in checkpoints/last.pt; the test "
                "used the best epoch's."
            )
        else:
            where = "The best good epoch's weights were tested (no checkpoint files were saved)."
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

"""The files the diagnostics write after the test — tables, figures and their report
sections — in three parts the callback runs one by one: extra evaluation of the test split,
the training records, and interpretability."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from runner.data.base import Split
from runner.data.loader import BatchLoader
from runner.diagnostics import figures, sections
from runner.diagnostics.finding import AVERAGE_ROWS
from runner.diagnostics.probe import probe
from runner.io import write_csv

HIST_VALUES = 4000  # activation values sampled per layer and probe chunk for histograms


def write_evaluation(
    run_dir: Path, conf: Any, data: Any, loop: Any, predictions: tuple, summary: dict
) -> str:
    """ROC curves (a figure unless every class's AUC reaches ``conf.roc_table_auc``), the
    most confident mistakes, the validation split's per-class table; the report section."""
    from runner import evaluate, plots

    if not conf.evaluation:
        return ""
    proba, y, report = predictions
    classes = list(data.classes)
    roc = evaluate.roc_curves(y, proba, classes)
    write_csv(run_dir / "eval" / "roc_curves.csv", roc)
    aucs = report[~report["class"].isin(AVERAGE_ROWS)]["auc"]
    if aucs.notna().any():
        summary["test_macro_auc"] = float(aucs.mean())
    drawn = bool(len(roc)) and float(aucs.min()) < conf.roc_table_auc
    if drawn:
        plots.plot_roc(roc, run_dir / "eval" / "roc_curves.png")
    errors = None
    if data.kind == "image" and conf.misclassified > 0:
        errors = evaluate.confident_errors(proba, y, classes, conf.misclassified)
        if data.test.names is not None:
            errors.insert(1, "name", [data.test.names[i] for i in errors["index"]])
        write_csv(run_dir / "eval" / "misclassified.csv", errors)
        if len(errors):
            images = [data.test.x[i].numpy() for i in errors["index"]]
            plots.plot_misclassified(images, errors, run_dir / "eval" / "misclassified.png")
    if len(data.val):
        val_loader = BatchLoader(data.val, data, loop.val_loader.options.for_eval())
        logits, yv = loop.predict(val_loader)
        table = evaluate.evaluate_logits(logits, yv, classes).report
        write_csv(run_dir / "eval" / "val_classification_report.csv", table)
    return sections.evaluation_section(
        run_dir, roc, errors, conf.roc_table_auc if not drawn else None
    )


def write_training(run_dir: Path, conf: Any, recorder: Any, loop: Any) -> str:
    """The recorder's tables (always) and figures (``conf.figures``); the report section."""
    d = run_dir / "diagnostics"
    grads, steps, acts = recorder.gradients(), recorder.steps(), recorder.activations()
    tables = {"gradients": grads, "steps": steps, "activations": acts}
    tables["weight_stats"] = recorder.weight_stats()
    for name, frame in tables.items():
        if len(frame):
            write_csv(d / f"{name}.csv", frame)
    weight_hist = act_hist = None
    if recorder.weights_start:
        end = recorder.weights_end()
        start = recorder.weights_start
        samples = {k: {"start": v, "end": end[k]} for k, v in start.items() if k in end}
        weight_hist = figures.histogram_table(samples, conf.histogram_bins, ("start", "end"))
        write_csv(d / "weight_hist.csv", weight_hist)
    if recorder.probe_batches and conf.figures:
        _, act_end = probe(loop.model, recorder.probe_batches, HIST_VALUES)
        samples = {
            k: {"start": recorder.act_start.get(k, np.zeros(0)), "end": v}
            for k, v in act_end.items()
        }
        act_hist = figures.histogram_table(samples, conf.histogram_bins, ("start", "end"))
        write_csv(d / "activation_hist.csv", act_hist)
    panels = figures.activation_panels(acts) if len(acts) else []
    if conf.figures:
        _training_figures(
            d, conf, grads, steps, acts, act_hist, weight_hist, len(loop.train_loader)
        )
    probe_size = sum(len(b) for b in recorder.probe_batches)
    return sections.diagnostics_section(
        run_dir,
        {
            "interval": recorder.every,
            "probe_size": probe_size,
            "panels": panels,
            "activations": acts,
        },
    )


def _training_figures(
    d: Path, conf: Any, grads, steps, acts, act_hist, weight_hist, steps_per_epoch: int
) -> None:
    limit = conf.max_layers
    if len(grads):
        figures.plot_gradient_flow(grads, steps_per_epoch, d / "gradient_flow.png", limit)
    if len(acts):
        figures.plot_activations(acts, d / "activations.png", limit)
    if act_hist is not None:
        title = "activations on the probe images, per layer: before training vs evaluated weights"
        figures.plot_histograms(
            act_hist, d / "activation_hist.png", title, "activation value", limit, log=True
        )
    if weight_hist is not None:
        title = "weights per layer: initial vs evaluated weights"
        xlabel = "weight / the layer's initial standard deviation"
        figures.plot_histograms(weight_hist, d / "weights.png", title, xlabel, limit, relative=True)
    figures.plot_steps(steps, steps_per_epoch, d / "lr_loss.png")


def write_interpret(
    run_dir: Path, conf: Any, data: Any, loop: Any, stages: Any, predictions: tuple
) -> str:
    """Saliency, feature maps and Grad-CAM of a few test images; the report section."""
    from runner import interpret

    proba, y, _ = predictions
    c = conf.interpret
    chosen = interpret.select_images(proba, y, list(data.classes), c.images)
    if not len(chosen):
        return ""
    idx = torch.tensor(chosen["index"].tolist(), dtype=torch.long)
    images = data.test.x[idx]
    subset = Split(images, data.test.y[idx])
    options = loop.val_loader.options.for_eval(len(subset))
    inputs = next(iter(BatchLoader(subset, data, options).epoch()))[0]
    done = interpret.explain(
        loop.model,
        stages,
        images,
        inputs,
        chosen,
        list(data.classes),
        run_dir / "interpret",
        c.channels,
        c.min_map_size,
        c.feature_maps,
    )
    return sections.interpret_section(
        run_dir, done, interpret.describe_selection(chosen), c.min_map_size
    )

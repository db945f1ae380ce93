"""The diagnostics callback: record during training, then write tables, figures, diagnoses
and report sections when the run's summary is ready (``on_summary``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from runner.callbacks import TestOutputs
from runner.data.base import DataBundle, Split
from runner.data.loader import BatchLoader
from runner.diagnostics import figures, registry, sections
from runner.diagnostics.finding import AVERAGE_ROWS
from runner.diagnostics.probe import probe
from runner.diagnostics.recorder import TrainingRecorder
from runner.errors import ConfigError
from runner.io import write_csv

log = logging.getLogger(__name__)

HIST_VALUES = 4000  # activation values sampled per layer and probe chunk for histograms


class DiagnosticsCallback(TrainingRecorder):
    """Training diagnostics, extra evaluation, interpretability and automatic diagnoses.

    Args:
        conf: the ``diagnostics`` config (:class:`runner.schema.diagnostics.DiagnosticsConf`).
        run_dir: the run directory; files go to ``diagnostics/``, ``eval/``, ``interpret/``.
        data: the run's dataset.
        stages: ``model -> [(name, module)]``, the model's feature stages (from the model
            registry) for feature maps and Grad-CAM.
        seed: picks the probe images and sampled weights.
        config: the run's config as plain data, for the rules (:class:`registry.RunContext`).
    """

    def __init__(
        self,
        conf: Any,
        run_dir: Path,
        data: DataBundle,
        stages: Callable[[Any], list[tuple[str, Any]]],
        seed: int = 0,
        config: dict[str, Any] | None = None,
    ) -> None:
        check(conf)
        super().__init__(data, conf.interval, conf.probe_size, conf.weight_histograms, seed)
        self.conf, self.run_dir, self.stages = conf, Path(run_dir), stages
        self.config = config or {}
        self.start_sample_values = HIST_VALUES if conf.figures else 0
        self.failures: list[str] = []

    # ------------------------------------------------------------------ after the test
    def on_summary(self, loop: Any, summary: dict[str, Any], test: TestOutputs | None) -> list[str]:
        started = time.perf_counter()
        history = pd.DataFrame(loop.state.history)
        out: list[str] = []
        predictions = None
        if test is not None:
            predictions = self._guard("test predictions", lambda: self._predictions(test), None)
        if predictions is not None:
            out.append(
                self._guard("evaluation", lambda: self._evaluation(loop, summary, *predictions), "")
            )
        out.append(self._guard("training diagnostics", lambda: self._training(loop), ""))
        if predictions is not None and self.data.kind == "image" and self.conf.interpret.enabled:
            out.append(
                self._guard("interpretability", lambda: self._interpret(loop, *predictions), "")
            )
        context = registry.RunContext(
            history=history,
            summary=summary,
            report=predictions[2] if predictions is not None else None,
            gradients=self.gradients(),
            steps=self.steps(),
            activations=self.activations(),
            num_classes=len(self.data.classes),
            config=self.config,
        )
        found = registry.diagnose(self.conf, context, guard=self._guard)
        summary.setdefault("diagnoses", []).extend(found)
        if self.failures:
            out.append(
                "*Diagnostics not produced (see runner.log): " + "; ".join(self.failures) + ".*\n"
            )
        for d in found:
            log.log(
                logging.WARNING if d["severity"] != "info" else logging.INFO,
                "diagnosis %s (%s): %s",
                d["code"],
                d["severity"],
                d["message"],
            )
        log.info("diagnostics written in %.1fs", time.perf_counter() - started)
        return [s for s in out if s]

    def _guard(self, what: str, fn: Callable[[], Any], default: Any) -> Any:
        """Diagnostics never break a run: a failure is logged and named in the report."""
        started = time.perf_counter()
        try:
            result = fn()
            log.debug("diagnostics: %s in %.2fs", what, time.perf_counter() - started)
            return result
        except Exception as err:  # noqa: BLE001 - any bug here must not lose the run
            log.warning(
                "diagnostics: %s failed: %s: %s", what, type(err).__name__, err, exc_info=True
            )
            self.failures.append(f"{what} ({type(err).__name__})")
            return default

    def _predictions(self, test: TestOutputs):
        """Probabilities, labels and the per-class table of the test split."""
        proba = torch.softmax(test.logits, 1).numpy()
        return proba, test.labels.numpy(), test.evaluation.report

    def _evaluation(self, loop: Any, summary: dict[str, Any], proba, y, report) -> str:
        from runner import evaluate, plots

        if not self.conf.evaluation:
            return ""
        classes = list(self.data.classes)
        roc = evaluate.roc_curves(y, proba, classes)
        write_csv(self.run_dir / "eval" / "roc_curves.csv", roc)
        per_class = report[~report["class"].isin(AVERAGE_ROWS)]["auc"]
        if per_class.notna().any():
            summary["test_macro_auc"] = float(per_class.mean())
        if len(roc):
            plots.plot_roc(roc, self.run_dir / "eval" / "roc_curves.png")
        errors = None
        if self.data.kind == "image" and self.conf.misclassified > 0:
            errors = evaluate.confident_errors(proba, y, classes, self.conf.misclassified)
            names = self.data.test.names
            if names is not None:
                errors.insert(1, "name", [names[i] for i in errors["index"]])
            write_csv(self.run_dir / "eval" / "misclassified.csv", errors)
            if len(errors):
                images = [self.data.test.x[i].numpy() for i in errors["index"]]
                plots.plot_misclassified(
                    images, errors, self.run_dir / "eval" / "misclassified.png"
                )
        if len(self.data.val):
            val_loader = BatchLoader(self.data.val, self.data, loop.val_loader.options.for_eval())
            logits, yv = loop.predict(val_loader)
            table = evaluate.evaluate_logits(logits, yv, classes).report
            write_csv(self.run_dir / "eval" / "val_classification_report.csv", table)
        return sections.evaluation_section(self.run_dir, roc, errors)

    def _training(self, loop: Any) -> str:
        d = self.run_dir / "diagnostics"
        steps_per_epoch = len(loop.train_loader)
        grads, steps, acts = self.gradients(), self.steps(), self.activations()
        tables = {
            "gradients": grads,
            "steps": steps,
            "activations": acts,
            "weight_stats": self.weight_stats(),
        }
        for name, frame in tables.items():
            if len(frame):
                write_csv(d / f"{name}.csv", frame)
        bins, limit = self.conf.histogram_bins, self.conf.max_layers
        weight_hist = act_hist = None
        if self.weights_start:
            end = self.weights_end()
            samples = {
                k: {"start": v, "end": end[k]} for k, v in self.weights_start.items() if k in end
            }
            weight_hist = figures.histogram_table(samples, bins, ("start", "end"))
            write_csv(d / "weight_hist.csv", weight_hist)
        if self.probe_batches and self.conf.figures:
            _, act_end = probe(loop.model, self.probe_batches, HIST_VALUES)
            samples = {
                k: {"start": self.act_start.get(k, np.zeros(0)), "end": v}
                for k, v in act_end.items()
            }
            act_hist = figures.histogram_table(samples, bins, ("start", "end"))
            write_csv(d / "activation_hist.csv", act_hist)
        if self.conf.figures:
            if len(grads):
                figures.plot_gradient_flow(grads, steps_per_epoch, d / "gradient_flow.png", limit)
            if len(acts):
                figures.plot_activations(acts, d / "activations.png", limit)
            if act_hist is not None:
                figures.plot_histograms(
                    act_hist,
                    d / "activation_hist.png",
                    "activation values on the probe images: before training (start) vs evaluated "
                    "weights (end)",
                    "activation value",
                    limit,
                    log=True,
                )
            if weight_hist is not None:
                figures.plot_histograms(
                    weight_hist,
                    d / "weights.png",
                    "weights per layer: initial (start) vs evaluated weights (end)",
                    "weight value",
                    limit,
                )
            figures.plot_steps(steps, steps_per_epoch, d / "lr_loss.png")
        return sections.diagnostics_section(
            self.run_dir,
            {"interval": self.every, "probe_size": sum(len(b) for b in self.probe_batches)},
        )

    def _interpret(self, loop: Any, proba, y, report) -> str:
        from runner import interpret

        c = self.conf.interpret
        chosen = interpret.select_images(proba, y, list(self.data.classes), c.images)
        if not len(chosen):
            return ""
        idx = torch.tensor(chosen["index"].tolist(), dtype=torch.long)
        images = self.data.test.x[idx]
        subset = Split(images, self.data.test.y[idx])
        options = loop.val_loader.options.for_eval(len(subset))
        inputs = next(iter(BatchLoader(subset, self.data, options).epoch()))[0]
        written = interpret.explain(
            loop.model,
            self.stages,
            images,
            inputs,
            chosen,
            list(self.data.classes),
            self.run_dir / "interpret",
            c.channels,
            c.gradcam_min_size,
            c.feature_maps,
        )
        return sections.interpret_section(self.run_dir, written)


def check(conf: Any) -> None:
    """Range checks the schema's types cannot express; then every rule's thresholds."""

    def need(ok: bool, key: str, value: Any, rule: str) -> None:
        if not ok:
            raise ConfigError(f"diagnostics.{key}={value!r} is invalid: {rule}")

    need(conf.interval >= 0, "interval", conf.interval, "optimizer steps, >= 0 (0 = off)")
    need(conf.probe_size >= 0, "probe_size", conf.probe_size, "images, >= 0 (0 = off)")
    need(conf.histogram_bins >= 2, "histogram_bins", conf.histogram_bins, "must be >= 2")
    need(conf.max_layers >= 2, "max_layers", conf.max_layers, "must be >= 2")
    need(conf.misclassified >= 0, "misclassified", conf.misclassified, "images, >= 0")
    need(conf.interpret.images >= 0, "interpret.images", conf.interpret.images, "images, >= 0")
    need(conf.interpret.channels >= 1, "interpret.channels", conf.interpret.channels, ">= 1")
    registry.check_rules(conf)


def build_callbacks(cfg: DictConfig, run_dir: Path, data: DataBundle) -> list[DiagnosticsCallback]:
    """The diagnostics callback for ``cfg`` (none when the group is absent or disabled)."""
    from runner import zoo

    conf = cfg.diagnostics  # None when the optional group is left out
    if conf is None or not conf.enabled:
        return []
    entry = zoo.MODELS.get(cfg.model.family)
    stages, seed = entry.feature_stages, int(cfg.trainer.seed)
    config = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    return [DiagnosticsCallback(conf, run_dir, data, stages, seed=seed, config=config)]

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
from omegaconf import DictConfig

from runner.data.base import Split
from runner.data.loader import BatchLoader
from runner.diagnostics import figures, rules, sections
from runner.diagnostics.probe import probe
from runner.diagnostics.recorder import TrainingRecorder
from runner.errors import ConfigError
from runner.io import write_csv

log = logging.getLogger(__name__)

HIST_VALUES = 4000  # activation values sampled per layer and probe chunk for histograms


class DiagnosticsCallback(TrainingRecorder):
    """Training diagnostics, extra evaluation, interpretability and automatic diagnoses.

    Args:
        conf: the ``diagnostics`` config (:class:`runner.diagnostics.schema.DiagnosticsConf`).
        run_dir: the run directory; files go to ``diagnostics/``, ``eval/``, ``interpret/``.
        seed: picks the probe images and sampled weights.
    """

    def __init__(self, conf: Any, run_dir: Path, seed: int = 0) -> None:
        check(conf)
        super().__init__(conf.interval, conf.probe_size, conf.weight_histograms, seed)
        self.conf, self.run_dir = conf, Path(run_dir)
        self.start_sample_values = HIST_VALUES if conf.figures else 0
        self.failures: list[str] = []

    # ------------------------------------------------------------------ after the test
    def on_summary(self, trainer: Any, summary: dict[str, Any]) -> None:
        started = time.perf_counter()
        history = pd.DataFrame(trainer.state.history)
        out: list[str] = []
        test = self._guard("test predictions", lambda: self._test_predictions(trainer), None)
        if test is not None:
            out.append(
                self._guard("evaluation", lambda: self._evaluation(trainer, summary, *test), "")
            )
        out.append(self._guard("training diagnostics", lambda: self._training(trainer), ""))
        if test is not None and trainer.data.kind == "image" and self.conf.interpret.enabled:
            out.append(self._guard("interpretability", lambda: self._interpret(trainer, *test), ""))
        report = test[3] if test is not None else None
        found = self._guard(
            "diagnoses",
            lambda: rules.diagnose(
                self.conf,
                history,
                summary,
                report,
                self.gradients(),
                self.steps(),
                self.activations(),
            ),
            [],
        )
        summary.setdefault("diagnoses", []).extend(found)
        if self.failures:
            out.append(
                "*Diagnostics not produced (see runner.log): " + "; ".join(self.failures) + ".*\n"
            )
        trainer.report_sections = [*getattr(trainer, "report_sections", []), *(s for s in out if s)]
        for d in found:
            log.log(
                logging.WARNING if d["severity"] != "info" else logging.INFO,
                "diagnosis %s (%s): %s",
                d["code"],
                d["severity"],
                d["message"],
            )
        log.info("diagnostics written in %.1fs", time.perf_counter() - started)

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

    def _test_predictions(self, trainer: Any):
        data = trainer.data
        if not len(data.test) or not trainer.state.history:
            return None
        loader = BatchLoader(
            data.test,
            trainer.cfg.trainer.eval_batch_size,
            trainer.device,
            data,
            channels_last=trainer.channels_last,
        )
        from runner.evaluate import evaluate_logits

        cached = getattr(trainer, "test_logits", None)  # set by finish() where it keeps them
        logits, y = cached if cached is not None else trainer.predict(loader)
        result = evaluate_logits(logits, y, list(data.classes))
        proba = torch.softmax(logits, 1).numpy()
        return loader, proba, y.numpy(), result.report

    def _evaluation(self, trainer: Any, summary: dict[str, Any], loader, proba, y, report) -> str:
        from runner import evaluate, plots

        if not self.conf.evaluation:
            return ""
        classes = list(trainer.data.classes)
        roc = evaluate.roc_curves(y, proba, classes)
        write_csv(self.run_dir / "eval" / "roc_curves.csv", roc)
        per_class = report[~report["class"].isin(rules.AVERAGE_ROWS)]["auc"]
        if per_class.notna().any():
            summary["test_macro_auc"] = float(per_class.mean())
        if len(roc):
            plots.plot_roc(roc, self.run_dir / "eval" / "roc_curves.png")
        errors = None
        if trainer.data.kind == "image" and self.conf.misclassified > 0:
            errors = evaluate.confident_errors(proba, y, classes, self.conf.misclassified)
            names = trainer.data.test.names
            if names is not None:
                errors.insert(1, "name", [names[i] for i in errors["index"]])
            write_csv(self.run_dir / "eval" / "misclassified.csv", errors)
            if len(errors):
                images = [trainer.data.test.x[i].numpy() for i in errors["index"]]
                plots.plot_misclassified(
                    images, errors, self.run_dir / "eval" / "misclassified.png"
                )
        if len(trainer.data.val):
            val_loader = BatchLoader(
                trainer.data.val,
                trainer.cfg.trainer.eval_batch_size,
                trainer.device,
                trainer.data,
                channels_last=trainer.channels_last,
            )
            logits, yv = trainer.predict(val_loader)
            table = evaluate.evaluate_logits(logits, yv, classes).report
            write_csv(self.run_dir / "eval" / "val_classification_report.csv", table)
        return sections.evaluation_section(self.run_dir, roc, errors)

    def _training(self, trainer: Any) -> str:
        d = self.run_dir / "diagnostics"
        steps_per_epoch = len(trainer.train_loader)
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
            _, act_end = probe(trainer.model, self.probe_batches, HIST_VALUES)
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

    def _interpret(self, trainer: Any, loader, proba, y, report) -> str:
        from runner import interpret

        c = self.conf.interpret
        chosen = interpret.select_images(proba, y, list(trainer.data.classes), c.images)
        if not len(chosen):
            return ""
        idx = torch.tensor(chosen["index"].tolist(), dtype=torch.long)
        images = trainer.data.test.x[idx]
        subset = Split(images, trainer.data.test.y[idx])
        prepared = BatchLoader(subset, len(subset), trainer.device, trainer.data)
        inputs = next(iter(prepared.epoch()))[0]
        written = interpret.explain(
            trainer.model,
            images,
            inputs,
            chosen,
            list(trainer.data.classes),
            self.run_dir / "interpret",
            c.channels,
            c.gradcam_min_size,
            c.feature_maps,
        )
        note = ""
        if not any(p.name == "saliency_gradcam.png" for p in written):
            note = "*Saliency and Grad-CAM need captum (`pip install captum`); skipped.*"
        return sections.interpret_section(self.run_dir, written, note)


def check(conf: Any) -> None:
    """Range checks the schema's types cannot express."""

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
    need(
        0 < conf.gradients.edge_layers <= 0.5,
        "gradients.edge_layers",
        conf.gradients.edge_layers,
        "a share of the layers in (0, 0.5]",
    )


def build_callbacks(cfg: DictConfig, run_dir: Path) -> list[DiagnosticsCallback]:
    """The diagnostics callback for ``cfg`` (none when the group is absent or disabled)."""
    conf = cfg.diagnostics  # None when the optional group is left out
    if conf is None or not conf.enabled:
        return []
    return [DiagnosticsCallback(conf, run_dir, seed=int(cfg.trainer.seed))]

"""The diagnostics callback: record during training, then write tables, figures, diagnoses,
the verdict and report sections when the run's summary is ready (``on_summary``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from runner.callbacks import TestOutputs
from runner.data.base import DataBundle
from runner.diagnostics import outputs, registry
from runner.diagnostics.recorder import TrainingRecorder
from runner.diagnostics.verdict import rank, verdict
from runner.errors import ConfigError

log = logging.getLogger(__name__)


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
        self.start_sample_values = outputs.HIST_VALUES if conf.figures else 0
        self.failures: list[str] = []

    # ------------------------------------------------------------------ after the test
    def on_summary(self, loop: Any, summary: dict[str, Any], test: TestOutputs | None) -> list[str]:
        started = time.perf_counter()
        conf, run_dir, data = self.conf, self.run_dir, self.data
        predictions = None
        if test is not None:
            predictions = self._guard("test predictions", lambda: _predictions(test), None)
        out: list[str] = []
        if predictions is not None:
            write = outputs.write_evaluation
            out.append(
                self._guard(
                    "evaluation", lambda: write(run_dir, conf, data, loop, predictions, summary), ""
                )
            )
        out.append(
            self._guard(
                "training diagnostics",
                lambda: outputs.write_training(run_dir, conf, self, loop),
                "",
            )
        )
        if predictions is not None and data.kind == "image" and conf.interpret.enabled:
            write = outputs.write_interpret
            out.append(
                self._guard(
                    "interpretability",
                    lambda: write(run_dir, conf, data, loop, self.stages, predictions),
                    "",
                )
            )
        context = self._context(loop, summary, test)
        found = rank(registry.diagnose(conf, context, guard=self._guard))
        summary.setdefault("diagnoses", []).extend(found)
        summary["verdict"] = verdict(summary["diagnoses"], summary, context.chance)
        if self.failures:
            out.append(
                "*Diagnostics not produced (see runner.log): " + "; ".join(self.failures) + ".*\n"
            )
        _log_findings(found)
        log.info("diagnostics written in %.1fs", time.perf_counter() - started)
        return [s for s in out if s]

    def _context(self, loop: Any, summary: dict[str, Any], test: TestOutputs | None) -> Any:
        data = self.data
        duplicates = data.artifacts.get("duplicates.csv")
        if duplicates is None:
            duplicates = self._guard("duplicate check", lambda: _duplicates(data), None)
        return registry.RunContext(
            history=_history(loop.state.history),
            summary=summary,
            report=test.evaluation.report if test is not None else None,
            confusion=test.evaluation.confusion.to_numpy() if test is not None else None,
            gradients=self.gradients(),
            steps=self.steps(),
            activations=self.activations(),
            num_classes=len(data.classes),
            config=self.config,
            class_counts=data.split_counts(),
            duplicates=duplicates,
            trainable_params=sum(p.numel() for _, p in self.params),
            input_shape=tuple(data.input_shape()),
        )

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


def _predictions(test: TestOutputs) -> tuple:
    """Probabilities, labels and the per-class table of the test split."""
    proba = torch.softmax(test.logits, 1).numpy()
    return proba, test.labels.numpy(), test.evaluation.report


def _history(rows: list[dict[str, float]]) -> Any:
    import pandas as pd

    return pd.DataFrame(rows)


def _duplicates(data: DataBundle) -> Any:
    """Cross-split duplicates of a dataset whose loader did not look for them (digits,
    text): hashing a few thousand small inputs takes milliseconds."""
    import warnings

    import pandas as pd

    from runner.data.splits import DUPLICATE_COLUMNS, find_cross_split_duplicates

    splits = {
        k: (s.x, s.names)
        for k, s in (("train", data.train), ("val", data.val), ("test", data.test))
    }
    if sum(len(s.x) for s in (data.train, data.val, data.test)) > 200_000:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the finding reports them
        pairs = find_cross_split_duplicates(splits)
    return pd.DataFrame(pairs, columns=list(DUPLICATE_COLUMNS))


def _log_findings(found: list[dict[str, Any]]) -> None:
    for d in found:
        level = logging.WARNING if d["severity"] != "info" else logging.INFO
        log.log(level, "diagnosis %s (%s): %s", d["code"], d["severity"], d["message"])


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
    need(0 < conf.roc_table_auc <= 1, "roc_table_auc", conf.roc_table_auc, "an AUC in (0, 1]")
    need(conf.interpret.images >= 0, "interpret.images", conf.interpret.images, "images, >= 0")
    need(conf.interpret.channels >= 1, "interpret.channels", conf.interpret.channels, ">= 1")
    need(
        conf.interpret.min_map_size >= 1,
        "interpret.min_map_size",
        conf.interpret.min_map_size,
        "pixels, >= 1",
    )
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

"""The run directory: its file names, reading any run, and its status transitions.

Every module that writes or reads a run directory goes through :class:`RunDir` — train,
the Python API, sweeps, ``runner-report``, predict, export and verify — so a file name,
a status and the rule of which status may replace which are defined here only::

    <run>/.hydra/config.yaml   the composed config      <run>/summary.json  status, figures
    <run>/metrics.csv          one row per epoch        <run>/report.md     the human report
    <run>/checkpoints/         best.pt, last.pt         <run>/runner.log    the log
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SUMMARY = "summary.json"
METRICS = "metrics.csv"
REPORT = "report.md"
CURVES = "curves.png"
LOG = "runner.log"
CONFIG = ".hydra/config.yaml"
OVERRIDES = ".hydra/overrides.yaml"
HYDRA_RECORD = ".hydra/hydra.yaml"  # Hydra's own settings; runtime.choices = group members
CHECKPOINTS = "checkpoints"
CHECKPOINT_NAMES = ("best", "last")  # checkpoints/<name>.pt
EVAL = "eval"
CLASS_COUNTS = "class_counts.csv"
MODEL_SUMMARY = "model_summary.csv"
VOCAB = "vocab.json"  # a text run's vocabulary (runner.text.tokenizer.Vocabulary.to_dict)

RUNNING = "running"
COMPLETED = "completed"
EARLY_STOPPED = "early_stopped"
DIVERGED = "diverged"
INTERRUPTED = "interrupted"
FAILED = "failed"
MISSING = "missing"  # no summary.json (yet)
FINISHED = (COMPLETED, EARLY_STOPPED)  # ran to its end
RESULTS = (*FINISHED, DIVERGED)  # a result (diverged is a finding, not an error)
# files whose presence makes a folder a run directory
MARKERS = (SUMMARY, METRICS, CONFIG)


class RunDir:
    """One run directory (which may not exist yet)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __truediv__(self, rel: str) -> Path:
        return self.path / rel

    # ------------------------------------------------------------------ names
    def checkpoint(self, which: str = "best") -> Path:
        """``checkpoints/<which>.pt`` (best | last)."""
        if which not in CHECKPOINT_NAMES:
            raise ValueError(f"unknown checkpoint {which!r}; valid: {', '.join(CHECKPOINT_NAMES)}")
        return self.path / CHECKPOINTS / f"{which}.pt"

    @property
    def summary_path(self) -> Path:
        return self.path / SUMMARY

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS

    @property
    def report_path(self) -> Path:
        return self.path / REPORT

    # ------------------------------------------------------------------ reading
    def is_run(self) -> bool:
        """A directory written by one ``runner`` job."""
        return self.path.is_dir() and any((self.path / name).exists() for name in MARKERS)

    def summary(self) -> dict[str, Any]:
        """``summary.json`` as a dict; ``{}`` when absent, torn or not an object."""
        try:
            data = json.loads(self.summary_path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    @property
    def status(self) -> str:
        return str(self.summary().get("status", MISSING))

    def metrics(self) -> Any:
        """``metrics.csv`` as a DataFrame; ``None`` when absent or unreadable."""
        import pandas as pd

        if not self.metrics_path.exists():
            return None
        try:
            return pd.read_csv(self.metrics_path)
        except (OSError, ValueError, pd.errors.EmptyDataError) as err:
            log.warning("cannot read %s: %s", self.metrics_path, err)
            return None

    def config(self) -> Any:
        """The composed config (``.hydra/config.yaml``) as a DictConfig; ``None`` if absent.

        Plain data only: nothing read here is ever instantiated (models and datasets are
        rebuilt through their registries, :mod:`runner.zoo`, :mod:`runner.data.registry`).
        """
        from omegaconf import DictConfig, OmegaConf

        try:
            cfg = OmegaConf.load(self.path / CONFIG)
        except Exception:  # absent or not YAML
            return None
        return cfg if isinstance(cfg, DictConfig) else None

    def overrides(self) -> list[str]:
        """The command-line overrides Hydra recorded (``.hydra/overrides.yaml``)."""
        from omegaconf import DictConfig, OmegaConf

        try:
            data = OmegaConf.load(self.path / OVERRIDES)
        except Exception:
            return []
        return [] if isinstance(data, DictConfig) else [str(x) for x in data]

    def choices(self) -> dict[str, str]:
        """The member chosen for each config group (``{"model": "resnet18", ...}``, Hydra's
        ``runtime.choices`` in ``.hydra/hydra.yaml``); ``{}`` when Hydra left no record."""
        from omegaconf import OmegaConf

        try:
            record = OmegaConf.load(self.path / HYDRA_RECORD)
            choices = OmegaConf.select(record, "hydra.runtime.choices", default=None)
        except Exception:
            return {}
        if choices is None:
            return {}
        return {str(k): str(v) for k, v in choices.items() if v is not None}

    def finished_summary(self, max_epochs: int) -> dict[str, Any] | None:
        """The summary of a run that needs no more training (a larger ``max_epochs`` extends
        a completed run), else ``None``."""
        summary = self.summary()
        status = summary.get("status")
        if status == EARLY_STOPPED or (
            status == COMPLETED and int(summary.get("epochs_run", 0)) >= max_epochs
        ):
            return summary
        return None

    # ------------------------------------------------------------------ writing
    def start(self) -> None:
        """Mark the run as running (the only way a run directory gets a summary first)."""
        from runner.io import write_json

        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.summary_path, {"status": RUNNING})

    def finish(self, summary: dict[str, Any]) -> None:
        """Write the finished run's summary (its ``status`` one of the end states)."""
        from runner.io import write_json

        write_json(self.summary_path, summary)

    def fail(self, error: BaseException) -> None:
        """Record that the run (which :meth:`start` began) failed with ``error``."""
        from runner.io import write_json

        write_json(
            self.summary_path,
            {"status": FAILED, "error": f"{type(error).__name__}: {error}", "diagnoses": []},
        )

    def refused(self, error: BaseException) -> None:
        """Record that a job was refused before it started (a sweep lists it as failed) —
        only in a fresh directory: an earlier result is never overwritten."""
        from runner.io import write_json

        if self.path.is_dir() and not self.summary_path.exists():
            write_json(
                self.summary_path,
                {"status": FAILED, "error": f"{type(error).__name__}: {error}", "diagnoses": []},
            )

    def write_metrics(self, history: list[dict[str, float]]) -> None:
        from runner.io import write_rows

        write_rows(self.metrics_path, history)


def find_runs(path: str | Path) -> list[RunDir]:
    """The run directories directly under ``path`` (a sweep), numeric names in order."""
    root = Path(path)
    runs = [RunDir(p) for p in root.iterdir() if RunDir(p).is_run()]
    return sorted(
        runs,
        key=lambda r: (0, int(r.path.name), "") if r.path.name.isdigit() else (1, 0, r.path.name),
    )

"""MLflow tracker: params, per-epoch and final metrics, and the run's files as artifacts.

Default store: the SQLite file ``<outputs>/mlflow.db`` with artifacts in
``<outputs>/mlartifacts/<experiment>/`` (see :attr:`RunContext.outputs_dir`);
any MLflow tracking URI (a server, another SQLite file, a file store) when
``tracking_uri`` is set. Each run records its MLflow ids in
``<run>/tracking/mlflow_run.json``; a resumed run (``trainer.resume``) goes on
logging into the same MLflow run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from runner.errors import ConfigError
from runner.io import write_json
from runner.tracking.base import (
    RunContext,
    Tracker,
    epoch_scalars,
    final_metrics,
    flat_params,
)

log = logging.getLogger(__name__)

# runner status -> MLflow run status
STATUS = {
    "completed": "FINISHED",
    "early_stopped": "FINISHED",
    "diverged": "FAILED",
    "failed": "FAILED",
    "interrupted": "KILLED",
}
ARTIFACT_SUFFIXES = {".png", ".svg", ".csv", ".json", ".md", ".yaml", ".log", ".txt"}
MAX_PARAM_CHARS = 500
BATCH = 100  # MLflow accepts at most 100 params / 1000 metrics per log_batch call


class MLflowLogger(Tracker):
    """Log one run to MLflow through :class:`mlflow.tracking.MlflowClient`."""

    def __init__(self, conf: DictConfig, cfg: DictConfig, ctx: RunContext) -> None:
        super().__init__(conf, cfg, ctx)
        try:
            from mlflow.tracking import MlflowClient
        except ImportError as err:
            raise ConfigError(
                f"logger=mlflow needs the mlflow package ({err}): pip install mlflow  "
                "(or pip install 'runner[track]')"
            ) from None
        for name in ("alembic", "mlflow"):  # keep their INFO chatter out of the run log
            logging.getLogger(name).setLevel(logging.WARNING)
        self._client_cls = MlflowClient
        self.tracking_uri = conf.tracking_uri or default_tracking_uri(ctx)
        self.experiment_name = conf.experiment_name or default_experiment(ctx)
        self.client: Any = None
        self.run_id: str | None = None
        self.pointer = ctx.run_dir / "tracking" / "mlflow_run.json"

    # ------------------------------------------------------------------ hooks
    def on_fit_start(self, loop: Any) -> None:
        self.client = self._client_cls(tracking_uri=self.tracking_uri)
        with _sqlite_lock(self.tracking_uri):
            experiment_id = self._experiment_id()
        self.run_id = self._resumed_run(loop) or self._new_run(experiment_id)
        write_json(
            self.pointer,
            {
                "tracking_uri": self.tracking_uri,
                "experiment_id": experiment_id,
                "experiment_name": self.experiment_name,
                "run_id": self.run_id,
            },
        )
        name, uri = self.experiment_name, self.tracking_uri
        log.info("MLflow: experiment %r, run %s (%s)", name, self.run_id, uri)

    def on_train_batch_end(self, loop: Any, epoch: int, batch: int, loss: Any) -> None:
        if self.run_id and self.step_due(loop):
            step = loop.state.global_step
            self._metrics({"step_train_loss": float(loss.detach()), "step_lr": loop.lr}, step)

    def on_epoch_end(self, loop: Any, epoch: int, row: dict[str, float]) -> None:
        if self.run_id:
            self._metrics(epoch_scalars(row), epoch)

    def on_summary(self, loop: Any, summary: dict[str, Any], test: Any = None) -> list[str]:
        if not self.run_id:
            return []
        self._metrics(final_metrics(summary), summary.get("epochs_run") or 0)
        self.client.set_tag(self.run_id, "runner.status", str(summary.get("status")))
        return []

    def on_run_end(self, loop: Any, summary: dict[str, Any]) -> None:
        """After summary.json and report.md exist: upload files, close the MLflow run."""
        if not self.run_id:
            return
        if self.conf.log_artifacts:
            for path in artifact_files(self.ctx.run_dir, self.conf.log_checkpoint):
                rel = path.relative_to(self.ctx.run_dir).parent.as_posix()
                self.client.log_artifact(self.run_id, str(path), None if rel == "." else rel)
        status = STATUS.get(str(summary.get("status")), "FINISHED")
        self.client.set_terminated(self.run_id, status)
        self.run_id = None

    # ------------------------------------------------------------------ helpers
    def _experiment_id(self) -> str:
        from mlflow.exceptions import MlflowException

        found = self.client.get_experiment_by_name(self.experiment_name)
        if found is not None:
            if found.lifecycle_stage == "deleted":
                self.client.restore_experiment(found.experiment_id)
            return found.experiment_id
        try:
            return self.client.create_experiment(
                self.experiment_name, artifact_location=self._artifact_location()
            )
        except MlflowException:  # created meanwhile by a parallel sweep job
            found = self.client.get_experiment_by_name(self.experiment_name)
            if found is None:
                raise
            return found.experiment_id

    def _artifact_location(self) -> str | None:
        """Next to a local SQLite store; the server's default otherwise."""
        db = sqlite_path(self.tracking_uri)
        if db is None:
            return None
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", self.experiment_name)
        return (db.parent / "mlartifacts" / safe).as_uri()

    def _resumed_run(self, loop: Any) -> str | None:
        """The MLflow run of an earlier attempt at this run directory, when resuming."""
        if self.cfg.trainer.resume in (False, None, "false", "") or not self.pointer.exists():
            return None
        try:
            previous = json.loads(self.pointer.read_text())
            if previous.get("tracking_uri") != self.tracking_uri:
                return None
            run_id = previous["run_id"]
            self.client.update_run(run_id, status="RUNNING")
            return run_id
        except Exception as err:  # deleted run, another store: start a new one
            log.info("MLflow: cannot continue the previous run (%s); starting a new one", err)
            return None

    def _new_run(self, experiment_id: str) -> str:
        from mlflow.entities import Param

        ctx = self.ctx
        run = self.client.create_run(experiment_id, run_name=self._run_name(), tags=self._tags())
        params = [Param(k, str(v)[:MAX_PARAM_CHARS]) for k, v in flat_params(self.cfg).items()]
        for i in range(0, len(params), BATCH):
            self.client.log_batch(run.info.run_id, params=params[i : i + BATCH])
        if ctx.overrides:
            self.client.log_text(run.info.run_id, "\n".join(ctx.overrides) + "\n", "overrides.txt")
        return run.info.run_id

    def _run_name(self) -> str:
        if self.conf.run_name:
            return self.conf.run_name
        if self.ctx.sweep_dir is not None:
            shown = [o for o in self.ctx.overrides if not o.lstrip("+~").startswith("logger")]
            return f"{self.ctx.job_num}: {' '.join(shown)}"[:240]
        return self.ctx.run_dir.name

    def _tags(self) -> dict[str, str]:
        ctx = self.ctx
        tags = {
            "runner.run_dir": str(ctx.run_dir.resolve()),
            "runner.model": str(OmegaConf.select(self.cfg, "model.name")),
            "runner.dataset": str(OmegaConf.select(self.cfg, "dataset.name")),
            "runner.overrides": " ".join(ctx.overrides)[:5000],
            "runner.status": "running",
        }
        if ctx.sweep_dir is not None:
            tags["runner.sweep_dir"] = str(ctx.sweep_dir.resolve())
            tags["runner.job_num"] = str(ctx.job_num)
        notes = OmegaConf.select(self.cfg, "notes")
        if notes:
            tags["mlflow.note.content"] = str(notes)
        tags.update({str(k): str(v) for k, v in (self.conf.tags or {}).items()})
        return tags

    def _metrics(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, int(step)) for k, v in values.items()]
        for i in range(0, len(metrics), 1000):
            self.client.log_batch(self.run_id, metrics=metrics[i : i + 1000])


def default_experiment(ctx: RunContext) -> str:
    """``runner`` for single runs; ``sweep-<sweep directory name>`` for each multirun."""
    return f"sweep-{ctx.sweep_dir.name}" if ctx.sweep_dir is not None else "runner"


def default_tracking_uri(ctx: RunContext) -> str:
    """``sqlite:///<outputs>/mlflow.db`` (an absolute path, so any working directory works)."""
    return f"sqlite:///{(ctx.outputs_dir / 'mlflow.db').resolve()}"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, ``None`` for other stores."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///") :])


def artifact_files(run_dir: Path, with_checkpoint: bool = False) -> list[Path]:
    """The run's figures, tables, summary, report, config and log (no checkpoints or events)."""
    from runner.rundir import CHECKPOINTS, RunDir

    files = []
    for path in sorted(run_dir.rglob("*")):
        rel = path.relative_to(run_dir)
        if not path.is_file() or rel.parts[0] in (CHECKPOINTS, "tensorboard"):
            continue
        if path.name.startswith(".") or path.name == "mlflow_run.json":  # temporary files
            continue
        if path.suffix in ARTIFACT_SUFFIXES:
            files.append(path)
    best = RunDir(run_dir).checkpoint("best")
    if with_checkpoint and best.exists():
        files.append(best)
    return files


@contextlib.contextmanager
def _sqlite_lock(uri: str) -> Iterator[None]:
    """Serialise creating a SQLite store (its schema migration) across parallel sweep jobs."""
    db = sqlite_path(uri)
    if db is None:
        yield
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: no lock; MLflow's own retry has to do
        yield
        return
    with open(db.with_name(db.name + ".lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

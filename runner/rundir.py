"""The run directory: its file names, reading any run, its lock and its status transitions.

Every module that writes or reads a run directory goes through :class:`RunDir` — train,
the Python API, sweeps, ``runner-report``, predict, export and verify — so a file name,
a status and the rule of which status may replace which are defined here only::

    <run>/.hydra/config.yaml   the composed config      <run>/summary.json  status, figures
    <run>/metrics.csv          one row per epoch        <run>/report.md     the human report
    <run>/checkpoints/         best.pt, last.pt         <run>/runner.log    the log
    <run>/.lock                held by the job that writes the directory

The life of a run: :meth:`RunDir.claim` takes the lock (a second job into a busy
directory fails at once) and refuses a directory that holds another run unless it is
resumed; everything that can refuse the job (config, data, checkpoint) runs before
:meth:`RunDir.start`, which is the first write. Only a started run can be marked
``failed``; a job refused before it started leaves an existing run byte-identical
(:meth:`RunDir.refused` writes only into a fresh directory). The run's ``runner.log``
(:class:`RunLogHandler`) holds its records in memory until then for the same reason.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import sys
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import RunDirError

log = logging.getLogger(__name__)

SUMMARY = "summary.json"
METRICS = "metrics.csv"
REPORT = "report.md"
CURVES = "curves.png"
LOG = "runner.log"
CONFIG = ".hydra/config.yaml"
HYDRA = ".hydra/hydra.yaml"
OVERRIDES = ".hydra/overrides.yaml"
LOCK = ".lock"
RESERVE = ".reserve"  # space kept for the final summary.json when the disk fills up
RESERVE_BYTES = 256 * 1024
CHECKPOINTS = "checkpoints"
CHECKPOINT_NAMES = ("best", "last")  # checkpoints/<name>.pt
# while best.pt is replaced, a second name (a hard link) for the weights the last.pt on disk
# still takes from it; removed once the new last.pt is written (runner.checkpoint)
KEPT_BEST = ".best.kept.pt"
EVAL = "eval"
CLASS_COUNTS = "class_counts.csv"
MODEL_SUMMARY = "model_summary.csv"
WEIGHTS_PREPROCESSING = "preprocessing.json"  # the pretrained weights' preprocessing, when followed
VOCAB = "vocab.json"  # a text run's vocabulary (runner.text.tokenizer.Vocabulary.to_dict)

RUNNING = "running"
COMPLETED = "completed"
EARLY_STOPPED = "early_stopped"
DIVERGED = "diverged"
INTERRUPTED = "interrupted"
TIME_LIMIT = "time_limit"  # trainer.max_time ran out; resumable with a larger budget
FAILED = "failed"
MISSING = "missing"  # no summary.json (yet)
FINISHED = (COMPLETED, EARLY_STOPPED)  # ran to its end
RESULTS = (*FINISHED, DIVERGED, TIME_LIMIT)  # a result (diverged is a finding, not an error)
# files whose presence makes a folder a run directory
MARKERS = (SUMMARY, METRICS, CONFIG)
# errors of the file system that a user fixes (space, permissions), not bugs
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}


def checkpoint_name(which: str) -> str:
    """The file name of checkpoint ``which`` (best | last) inside ``checkpoints/``."""
    return f"{which}.pt"


@dataclass
class Record:
    """How the run was asked for, kept in ``.hydra/``: the composed config (YAML), Hydra's
    own settings (YAML, ``None`` outside a Hydra app) and the command-line overrides."""

    config: str
    overrides: list[str] = field(default_factory=list)
    hydra: str | None = None

    @classmethod
    def of(
        cls, cfg: Any, overrides: list[str] | None = None, choices: dict | None = None
    ) -> Record:
        """The record of ``cfg`` (without its ``hydra`` node); inside a Hydra app Hydra's
        settings and recorded overrides, else ``overrides`` and the group ``choices``."""
        from omegaconf import OmegaConf

        hydra, recorded = None, overrides
        with contextlib.suppress(Exception):  # not inside a Hydra app
            from hydra.core.hydra_config import HydraConfig

            node = HydraConfig.instance().cfg
            ours = os.path.abspath(str(cfg.run_dir)) == str(node.hydra.runtime.output_dir)
            if ours:  # the Hydra job that made this run (not an earlier one in this process)
                hydra = OmegaConf.to_yaml(node)
                if recorded is None:
                    recorded = [str(o) for o in node.hydra.overrides.task]
        if hydra is None and choices:  # what runner-report reads: runtime.choices
            hydra = OmegaConf.to_yaml({"hydra": {"runtime": {"choices": choices}}})
        return cls(OmegaConf.to_yaml(cfg), list(recorded or []), hydra)

    def write(self, run: RunDir) -> None:
        from runner.io import write_text

        write_text(run / CONFIG, self.config)
        listed = "".join(f"- {_yaml_scalar(o)}\n" for o in self.overrides) or "[]\n"
        write_text(run / OVERRIDES, listed)
        if self.hydra is not None:
            write_text(run / HYDRA, self.hydra)


def _yaml_scalar(text: str) -> str:
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(OmegaConf.create({"v": text})).split(":", 1)[1].strip()


class RunLogHandler(logging.FileHandler):
    """The run's ``runner.log``: a file handler that keeps its records in memory until the
    job claims the directory (:meth:`RunDir.start`, or :meth:`RunDir.refused` for a fresh
    one), so a job refused before it starts adds nothing to an earlier run's log. A write
    error (disk full) is reported once in one line, never as a logging traceback.
    """

    _live: weakref.WeakSet[RunLogHandler] = weakref.WeakSet()
    HOLD_LIMIT = 10_000  # records kept before the run starts

    def __init__(self, filename: str, mode: str = "a", encoding: str = "utf-8", **_: Any):
        super().__init__(filename, mode, encoding=encoding, delay=True)
        self._held: list[logging.LogRecord] | None = []  # None once open
        self._dropped = False
        self._complained = False
        RunLogHandler._live.add(self)

    def emit(self, record: logging.LogRecord) -> None:
        if self._dropped:
            return
        if self._held is not None:
            if len(self._held) < self.HOLD_LIMIT:
                self._held.append(record)
            return
        try:
            super().emit(record)
        except Exception:  # opening the file (delayed) failed: read-only, removed folder
            self.handleError(record)

    def handleError(self, record: logging.LogRecord) -> None:
        if not self._complained:
            self._complained = True
            err = sys.exc_info()[1]
            sys.stderr.write(f"runner: cannot write {self.baseFilename} ({err}); log lines lost\n")

    def close(self) -> None:
        self._held = None if self._held is None else []
        super().close()

    def _release(self) -> None:
        held, self._held = self._held or [], None
        for record in held:
            self.emit(record)

    def _drop(self) -> None:
        self._held, self._dropped = [], True

    @classmethod
    def _of(cls, folder: Path) -> list[RunLogHandler]:
        target = os.path.abspath(folder)
        return [h for h in list(cls._live) if os.path.dirname(h.baseFilename) == target]

    @classmethod
    def open_held(cls, folder: Path) -> None:
        """Write the held records of ``folder``'s log and log directly from now on."""
        for handler in cls._of(folder):
            handler.acquire()
            try:
                handler._release()
            finally:
                handler.release()

    @classmethod
    def drop_held(cls, folder: Path) -> None:
        """Forget the held records of ``folder``'s log and keep out any later ones."""
        for handler in cls._of(folder):
            handler._drop()


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
        return self.path / CHECKPOINTS / checkpoint_name(which)

    def checkpoint_files(self) -> list[Path]:
        """The checkpoint files present: best.pt, last.pt and a leftover kept link."""
        names = [*(checkpoint_name(n) for n in CHECKPOINT_NAMES), KEPT_BEST]
        return [p for p in (self.path / CHECKPOINTS / n for n in names) if p.is_file()]

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
            record = OmegaConf.load(self.path / HYDRA)
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

    def holds_run(self) -> bool:
        """A run was started here (not only a job refused before it started)."""
        if not self.is_run():
            return False
        summary = self.summary()
        return not (summary.get("status") == FAILED and summary.get("refused"))

    # ------------------------------------------------------------------ writing
    @contextlib.contextmanager
    def hold_if_idle(self) -> Iterator[bool]:
        """Take the run's lock if no job holds it; yields whether it was taken (then no job
        can start in the directory until the block ends). Writes nothing else."""
        lock = _try_lock(self.path / LOCK) if self.path.is_dir() else None
        try:
            yield lock is not None
        finally:
            if lock is not None:
                lock.release()

    @contextlib.contextmanager
    def claim(self, resume: bool) -> Iterator[RunDir]:
        """Hold the directory for one job (its lock, ``.lock``, until the block ends).

        Raises :class:`RunDirError` — before anything is written — when the path is a
        file or cannot be created, another process holds the lock, or the directory
        already holds a run and ``resume`` is false (a new run never replaces another).
        """
        from filelock import FileLock, Timeout

        if self.path.exists() and not self.path.is_dir():
            raise RunDirError(
                f"the run directory {self.path} is a file; choose another hydra.run.dir"
            )
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            lock = FileLock(str(self.path / LOCK), timeout=0)
            lock.acquire()
        except Timeout:
            raise RunDirError(
                f"{self.path} is in use by another runner job (it holds {self.path / LOCK}); "
                "wait for it to end, or choose another hydra.run.dir"
            ) from None
        except OSError as err:
            raise write_error(err, self.path) from None
        try:
            if not resume and self.holds_run():
                raise RunDirError(
                    f"{self.path} already holds a run (status {self.status}); a new run never "
                    "overwrites it: add trainer.resume=true to continue that run, or choose "
                    "another hydra.run.dir"
                )
            yield self
        finally:
            if getattr(self, "_started", False):  # a killed run's reserve is not ours
                self._release_reserve()
            lock.release()

    def start(self, record: Record | None = None) -> None:
        """Mark the run as running — the first write of a job; ``record`` goes to ``.hydra/``.

        Opens the run's held log (:class:`RunLogHandler`) and keeps a little space aside
        (``.reserve``) so that a disk that fills up later can still be recorded as
        ``failed`` (:meth:`fail`).
        """
        from runner.io import write_json

        try:
            self.path.mkdir(parents=True, exist_ok=True)
            RunLogHandler.open_held(self.path)
            if record is not None:
                record.write(self)
            write_json(self.summary_path, {"status": RUNNING})
        except OSError as err:
            raise write_error(err, self.path) from None
        self._started = True
        try:
            (self.path / RESERVE).write_bytes(bytes(RESERVE_BYTES))
        except OSError:  # already too full for it: go on without
            self._release_reserve()

    def finish(self, summary: dict[str, Any]) -> None:
        """Write the finished run's summary (its ``status`` one of the end states)."""
        from runner.io import write_json

        write_json(self.summary_path, summary)
        self._release_reserve()

    def fail(self, error: BaseException) -> None:
        """Record that the run (which :meth:`start` began) failed with ``error``; a job that
        never started writes nothing here. On a full disk the space :meth:`start` kept
        aside is given back first, so the status is still written (atomically)."""
        from runner.io import write_json

        if not getattr(self, "_started", False):
            return
        summary = {"status": FAILED, "error": _describe(error), "diagnoses": []}
        try:
            write_json(self.summary_path, summary)
        except OSError:
            self._release_reserve()
            with contextlib.suppress(OSError):
                write_json(self.summary_path, summary)

    def refused(self, error: BaseException, record: Record | None = None) -> None:
        """Record that a job was refused before it started (a sweep lists it as failed) —
        only in a fresh directory that no other job holds: an earlier run is never
        touched, not even its log, and a busy directory is left to its job."""
        from runner.io import write_json

        if getattr(self, "_started", False) or not self.path.is_dir():
            return
        lock = _try_lock(self.path / LOCK)
        if lock is None or self.holds_run():
            RunLogHandler.drop_held(self.path)
        else:
            with contextlib.suppress(OSError):
                RunLogHandler.open_held(self.path)
                if record is not None and not (self.path / CONFIG).exists():
                    record.write(self)
                summary = {"status": FAILED, "refused": True, "error": _describe(error)}
                write_json(self.summary_path, {**summary, "diagnoses": []})
        if lock is not None:
            lock.release()

    def write_metrics(self, history: list[dict[str, float]]) -> None:
        from runner.io import write_rows

        write_rows(self.metrics_path, history)

    def _release_reserve(self) -> None:
        with contextlib.suppress(OSError):
            (self.path / RESERVE).unlink(missing_ok=True)


def _try_lock(path: Path) -> Any:
    """The lock at ``path`` if nobody holds it (``None`` if busy or not creatable)."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(path), timeout=0)
    try:
        lock.acquire()
    except (Timeout, OSError):
        return None
    return lock


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def write_error(err: OSError, where: Path) -> RunDirError:
    """A file-system error (no space, read-only, no permission) as a one-line message."""
    name = err.filename or where
    reason = err.strerror or str(err)
    if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        fix = "free some space, or choose another hydra.run.dir"
    elif err.errno == errno.EEXIST or err.errno == errno.ENOTDIR:
        fix = "a file is in the way; choose another hydra.run.dir"
    else:
        fix = "choose a writable hydra.run.dir"
    return RunDirError(f"cannot write {name}: {reason}; {fix}")


def find_runs(path: str | Path) -> list[RunDir]:
    """The run directories directly under ``path`` (a sweep), numeric names in order."""
    root = Path(path)
    runs = [RunDir(p) for p in root.iterdir() if RunDir(p).is_run()]
    return sorted(
        runs,
        key=lambda r: (0, int(r.path.name), "") if r.path.name.isdigit() else (1, 0, r.path.name),
    )

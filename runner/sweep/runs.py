"""Find and read the run directories of a sweep (or any list of runs).

A run directory is what ``runner`` writes for one job: ``summary.json``,
``metrics.csv`` and Hydra's ``.hydra/`` record. A sweep directory holds one
run directory per job (``0/``, ``1/`` ...) and Hydra's ``multirun.yaml``.
Everything here reads files only, so it works on sweeps that are still
running, partly failed or copied from another machine.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig, ListConfig, OmegaConf

from runner.rundir import MISSING, RESULTS, RunDir, find_runs

OK_STATUSES = RESULTS  # statuses of a job that produced a result (diverged is a finding)

log = logging.getLogger(__name__)

SEED_KEY = "trainer.seed"
FOLD_KEY = "dataset.fold"
# Keys whose values repeat one configuration (seeds, cross-validation folds): the summary
# gives the mean ± std over them.
REPLICATE_KEYS = (SEED_KEY, FOLD_KEY)


@dataclass
class Job:
    """One run directory of a sweep, read from disk.

    ``status`` is summary.json's status (completed | early_stopped | diverged |
    interrupted | failed | running) or ``missing`` when the job has no summary yet.
    ``choices``: the member of each config group (Hydra's record; ``{}`` without one).
    """

    num: str
    path: Path
    overrides: dict[str, str]
    summary: dict[str, Any]
    metrics: pd.DataFrame | None
    config: DictConfig | None
    choices: dict[str, str] = field(default_factory=dict)

    def value(self, key: str) -> str | None:
        """The job's setting of an override ``key``, whether or not the job overrode it: a
        group's chosen member (``model`` → ``resnet18``), else the composed config's value
        (``model.stem`` → ``cifar``, a default included), else the override as written;
        ``None`` when the job has no such setting."""
        group = key.split("@")[0]
        if group in self.choices:
            return self.choices[group]
        found = _select(self.config, key)
        if isinstance(found, DictConfig) and "name" in found:  # a group without a record
            found = found.get("name")
        if found is not None and not isinstance(found, DictConfig):
            return _text(found)
        return self.overrides.get(key)

    @property
    def status(self) -> str:
        return str(self.summary.get("status", MISSING))

    @property
    def model_name(self) -> str:
        name = _select(self.config, "model.name")
        return str(name) if name is not None else "?"

    @property
    def monitor(self) -> str | None:
        value = self.summary.get("monitor") or _select(self.config, "trainer.monitor")
        return None if value is None else str(value)


@dataclass
class Sweep:
    """Jobs plus what the sweep declared (``multirun.yaml``), if there is one."""

    root: Path | None
    jobs: list[Job]
    swept: list[str] = field(default_factory=list)
    multirun: DictConfig | None = None


def is_run_dir(path: Path) -> bool:
    """A directory written by one ``runner`` job."""
    return RunDir(path).is_run()


def job_dirs(sweep_dir: Path) -> list[Path]:
    """Run directories directly under ``sweep_dir``, numeric names in numeric order."""
    return [run.path for run in find_runs(sweep_dir)]


def load_sweep(paths: Sequence[str | Path]) -> Sweep:
    """Read one sweep directory, or any mix of sweep and run directories.

    Raises ``ValueError`` naming the path when a path holds no run directory.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("no path given: pass a sweep directory or run directories")
    run_paths: list[Path] = []
    roots: list[Path] = []
    for path in paths:
        if not path.is_dir():
            raise ValueError(f"{path}: no such directory")
        if is_run_dir(path):
            run_paths.append(path)
            continue
        found = job_dirs(path)
        if not found:
            raise ValueError(
                f"{path}: neither a run directory (summary.json, metrics.csv or .hydra/) nor a "
                "sweep directory holding run directories"
            )
        roots.append(path)
        run_paths.extend(found)
    single_sweep = len(roots) == 1 and len(paths) == 1
    root = roots[0] if single_sweep else None
    jobs = [read_job(p, p.name if single_sweep else str(i)) for i, p in enumerate(run_paths)]
    multirun = _load_yaml(root / "multirun.yaml") if root else None
    declared = declared_sweep_keys(multirun) if multirun is not None else []
    return Sweep(root=root, jobs=jobs, swept=swept_keys(jobs, declared), multirun=multirun)


def read_job(path: Path, num: str) -> Job:
    """Read one run directory; missing or torn files give empty parts, never an error."""
    run = RunDir(path)
    return Job(
        num=num,
        path=path,
        overrides=parse_overrides(run.overrides()),
        summary=run.summary(),
        metrics=run.metrics(),
        config=run.config(),
        choices=run.choices(),
    )


def parse_overrides(lines: Iterable[str]) -> dict[str, str]:
    """``["optimizer=sgd", "+x.y=1"]`` → ``{"optimizer": "sgd", "x.y": "1"}`` (order kept)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    result: dict[str, str] = {}
    for line in lines:
        try:
            override = parser.parse_override(str(line))
        except Exception:  # not Hydra syntax (hand-written file): split on the first '='
            key, _, value = str(line).partition("=")
            result[key.lstrip("+~")] = value
            continue
        if override.is_delete():
            continue
        result[_key(override)] = override.get_value_element_as_str()
    return result


def declared_sweep_keys(multirun: DictConfig) -> list[str]:
    """Keys a multirun sweeps: sweep syntax on the command line or in ``hydra.sweeper.params``."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = _select(multirun, "hydra.sweeper.params") or {}
    # The sweeper's params first: a command-line value for the same key replaces them.
    lines = [f"{k}={v}" for k, v in params.items()]
    lines += [str(x) for x in (_select(multirun, "hydra.overrides.task") or [])]
    parser = OverridesParser.create()
    swept: dict[str, bool] = {}
    for line in lines:
        try:
            override = parser.parse_override(line)
        except Exception:
            continue
        swept[_key(override)] = override.is_sweep_override()
    return [key for key, is_sweep in swept.items() if is_sweep]


def swept_keys(jobs: Sequence[Job], declared: Sequence[str] = ()) -> list[str]:
    """Keys declared as swept, plus any overridden key whose value differs between jobs —
    the job's actual value (:meth:`Job.value`), so a key one run overrode and another left
    at the same default is not "swept", and one that differs from another's default is.

    Ordered as they first appear in the jobs' overrides (declared-only keys last).
    """
    order: list[str] = []
    for job in jobs:
        order += [k for k in job.overrides if k not in order and not _is_hydra_setting(k)]
    order += [k for k in declared if k not in order]
    varying = {k for k in order if len({job.value(k) for job in jobs}) > 1}
    return [k for k in order if k in varying or k in declared]


def monitor_of(jobs: Sequence[Job]) -> str:
    """The monitored metric most jobs report (``val_loss`` when none says)."""
    names = [j.monitor for j in jobs if j.monitor]
    return max(set(names), key=names.count) if names else "val_loss"


def _key(override: Any) -> str:
    key = override.key_or_group
    return key if override.package is None else f"{key}@{override.package}"


def _is_hydra_setting(key: str) -> bool:
    """``hydra.run.dir=…``, ``hydra/launcher=joblib``: where and how a job ran, not what."""
    return key.startswith(("hydra.", "hydra/"))


def _text(value: Any) -> str:
    """A config value as the command line writes it (``true``, ``null``, ``[8, 16]``)."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, (list, tuple, ListConfig)):
        return "[" + ", ".join(_text(v) for v in value) + "]"
    return str(value)


def _select(cfg: DictConfig | None, key: str) -> Any:
    if cfg is None:
        return None
    try:
        return OmegaConf.select(cfg, key, throw_on_resolution_failure=False)
    except Exception:
        return None


def _load_yaml(path: Path) -> DictConfig | None:
    try:
        cfg = OmegaConf.load(path)
    except Exception:
        return None
    return cfg if isinstance(cfg, DictConfig) else None

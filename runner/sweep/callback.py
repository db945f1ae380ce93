"""Hydra callback that writes the sweep summary when a ``runner -m`` multirun ends.

Registered in ``conf/config.yaml`` under ``hydra.callbacks.sweep_summary``. It runs in
the launching process after every job has returned, whatever the launcher (basic,
joblib, submitit, ray) or sweeper (basic, Optuna), and reads only the job directories,
so it sees jobs that ran in other processes or on other machines.

:data:`LAST_SWEEP` keeps the result so that ``runner``'s ``main()`` can exit non-zero
when a job failed.
"""

from __future__ import annotations

import logging
import traceback
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger("runner")

# The statuses of the latest multirun of this process ({job: status}) and where it lives.
LAST_SWEEP: dict[str, Any] | None = None
# The config of a multirun that started and has not ended (see summarise_unfinished).
_RUNNING: DictConfig | None = None


class SweepSummary(Callback):
    """``on_multirun_end``: summary.csv/.md, curves.png, effects.csv/.png at the sweep root."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        global LAST_SWEEP, _RUNNING
        LAST_SWEEP = None
        _RUNNING = config
        _make_sqlite_dir(config)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        summarise(config)


def summarise_unfinished() -> None:
    """Write the summary of a multirun that the sweeper itself aborted.

    Hydra skips ``on_multirun_end`` when the sweeper raises (e.g. Optuna when every trial
    failed, or a job config that does not compose); ``runner``'s ``main()`` calls this then.
    """
    if _RUNNING is not None:
        summarise(_RUNNING)


def summarise(config: DictConfig) -> None:
    """Record the jobs' statuses in :data:`LAST_SWEEP` and write the summary files."""
    global LAST_SWEEP, _RUNNING
    from runner.sweep.runs import OK_STATUSES, job_dirs, read_job

    _RUNNING = None
    sweep_dir = Path(str(config.hydra.sweep.dir))
    if not sweep_dir.is_dir():
        return
    _save_multirun_config(config, sweep_dir)
    statuses = {p.name: read_job(p, p.name).status for p in job_dirs(sweep_dir)}
    failed = [job for job, status in statuses.items() if status not in OK_STATUSES]
    LAST_SWEEP = {"dir": sweep_dir, "statuses": statuses, "failed": failed}
    if not statuses:
        return
    try:
        from runner.sweep.summary import write_sweep_summary

        result = write_sweep_summary([sweep_dir])
    except Exception as err:  # the jobs' results stay; say how to retry the summary
        log.error(
            "sweep summary failed (%s: %s); rebuild it with `runner-report %s`\n%s",
            type(err).__name__,
            err,
            sweep_dir,
            traceback.format_exc(),
        )
        return
    log.info(
        "sweep of %d jobs (%d failed): summary in %s",
        len(statuses),
        len(failed),
        result.out_dir / "summary.md",
    )


def _save_multirun_config(config: DictConfig, sweep_dir: Path) -> None:
    """Keep the sweep's config (the swept keys, Optuna's storage) for ``runner-report``.

    Hydra's basic sweeper writes multirun.yaml itself; the Optuna sweeper does not.
    """
    from omegaconf import OmegaConf

    path = sweep_dir / "multirun.yaml"
    if not path.exists():
        OmegaConf.save(config, path)


def _make_sqlite_dir(config: DictConfig) -> None:
    """Optuna's sqlite storage needs its folder to exist before the study is created."""
    from omegaconf import OmegaConf

    storage = OmegaConf.select(config, "hydra.sweeper.storage", default=None)
    if isinstance(storage, str) and storage.startswith("sqlite:///"):
        Path(storage[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)

"""The ``runner`` command: Hydra wiring only; the work is :func:`runner.train.train`."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import traceback
import uuid
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from runner.errors import RunnerError
from runner.schema import register_all

log = logging.getLogger("runner")

# Jobs of this process's multirun that failed (the sweep callback counts all launchers').
_FAILED_JOBS = 0


def conf_dir() -> str:
    """The configs: ``conf/`` of the checkout (editable installs) or the packaged copy."""
    checkout = Path(__file__).resolve().parents[1] / "conf"
    if (checkout / "config.yaml").exists():
        return str(checkout)
    return "pkg://runner.conf"


def project_root() -> Path:
    """The checkout for editable installs; otherwise the current directory."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").exists() else Path.cwd()


def register_resolvers() -> None:
    from runner.paths import register_resolvers as register_path_resolvers

    register_path_resolvers()  # first_path: dataset.root and dataset.cache_dir
    uid = uuid.uuid4().hex[:6]
    if not OmegaConf.has_resolver("runner_uid"):
        OmegaConf.register_new_resolver("runner_uid", lambda: uid, use_cache=True)
    if not OmegaConf.has_resolver("runner_root"):
        OmegaConf.register_new_resolver("runner_root", lambda: str(project_root()))


register_resolvers()
register_all()


def _is_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    try:
        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:
        return False


def run_job(cfg: DictConfig) -> float | None:
    """Run one job; turn failures into a short message, a failed summary and an exit code.

    Returns the best value of ``trainer.monitor`` (what an Optuna sweeper optimises), or
    ``None`` when the job failed. In a multirun a failure is recorded (summary.json status
    failed, traceback in the job's runner.log) and the sweep goes on: the basic and joblib
    launchers run the other jobs, and Optuna marks the trial failed and keeps searching.
    """
    from runner.train import train

    _share_cores_with_parallel_jobs()
    try:
        summary = train(cfg)
    except RunnerError as err:
        return _fail(cfg, err, f"runner: error: {err}")
    except Exception as err:  # a bug or an unforeseen problem: keep the traceback in the log
        _log_to_file_only(f"unexpected error:\n{traceback.format_exc()}")
        hint = "set HYDRA_FULL_ERROR=1 for the traceback here; it is also in the run's runner.log"
        return _fail(cfg, err, f"runner: training failed: {type(err).__name__}: {err}\n({hint})")
    _check_optuna_direction(summary)
    return _monitored(summary)


def _share_cores_with_parallel_jobs() -> None:
    """Under the joblib launcher, tell ``set_threads`` how many jobs share the cores.

    ``RUNNER_PARALLEL_JOBS`` (if the user set it) wins; otherwise it is the launcher's
    ``n_jobs`` as joblib counts it (-1 = all cores), so 2 jobs on 2 cores get 1 thread each.
    """
    if "RUNNER_PARALLEL_JOBS" in os.environ:
        return
    from hydra.core.hydra_config import HydraConfig

    try:
        launcher = HydraConfig.get().launcher
    except ValueError:  # not started by Hydra (tests calling run_job directly)
        return
    if "joblib" not in str(launcher.get("_target_", "")) or launcher.get("n_jobs") is None:
        return
    from joblib import effective_n_jobs

    os.environ["RUNNER_PARALLEL_JOBS"] = str(effective_n_jobs(int(launcher.n_jobs)))


def _check_optuna_direction(summary: dict[str, Any]) -> None:
    """Warn when an Optuna sweeper maximises a loss or minimises an accuracy."""
    from hydra.core.hydra_config import HydraConfig

    try:
        direction = HydraConfig.get().sweeper.get("direction")
    except ValueError:
        return
    from runner.metrics import lower_is_better

    monitor = str(summary.get("monitor", "val_loss"))
    wanted = "minimize" if lower_is_better(monitor) else "maximize"
    if isinstance(direction, str) and direction != wanted:
        log.warning(
            "hydra.sweeper.direction=%s but trainer.monitor=%s: Optuna is optimising the wrong "
            "way; set hydra.sweeper.direction=%s",
            direction,
            monitor,
            wanted,
        )


def _log_to_file_only(text: str) -> None:
    """Put a traceback in the run's log file without printing it on the console."""
    record = logging.LogRecord("runner", logging.ERROR, __file__, 0, text, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def _monitored(summary: dict[str, Any]) -> float | None:
    key = summary.get("monitor", "val_loss")
    value = summary.get(f"best_{key}")
    return None if value is None else float(value)


def _fail(cfg: DictConfig, err: BaseException, message: str) -> None:
    """Report a failed job: a run that had started is already marked failed by train(); a
    job refused before it started is recorded only in a fresh directory."""
    from runner.rundir import RunDir

    with contextlib.suppress(Exception):  # run_dir unresolvable without Hydra: nothing to do
        RunDir(cfg.run_dir).refused(err)
    if os.environ.get("HYDRA_FULL_ERROR") == "1" and not isinstance(err, RunnerError):
        raise err
    print(message, file=sys.stderr)
    if _is_multirun():  # record it and let the sweep go on; main() exits non-zero at the end
        _count_failed_job()
        return None
    raise SystemExit(2 if isinstance(err, RunnerError) else 1)


def _count_failed_job() -> None:
    global _FAILED_JOBS
    _FAILED_JOBS += 1


@hydra.main(version_base="1.3", config_path=conf_dir(), config_name="config")
def _hydra_main(cfg: DictConfig) -> float | None:
    return run_job(cfg)


def main() -> None:
    """Console-script entry point. A multirun exits 1 when any of its jobs failed."""
    from runner.sweep import callback

    if {"--help", "-h"} & set(sys.argv[1:]):
        _print_help()
        return
    try:
        _hydra_main()
    except SystemExit:
        callback.summarise_unfinished()  # a sweeper that gave up: summarise what ran
        raise
    failed, where = _failed_sweep_jobs()
    if failed:
        print(f"runner: {failed} sweep job(s) failed; see {where}", file=sys.stderr)
        raise SystemExit(1)


def _print_help() -> None:
    """Hydra's ``--help`` without the typed-schema groups (``schema/*``), which are the
    runner's internals, not choices for the user."""
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.suppress(SystemExit):
        _hydra_main()
    lines = buffer.getvalue().splitlines()
    print("\n".join(line for line in lines if not line.startswith("schema/")))


def _failed_sweep_jobs() -> tuple[int, str]:
    """Failed jobs of the multirun that just ended: from the sweep callback (all launchers,
    read from the job directories) or, without it, this process's own count."""
    from runner.sweep import callback

    sweep = callback.LAST_SWEEP
    if sweep is not None:
        where = ", ".join(f"job {j}" for j in sweep["failed"])
        return len(sweep["failed"]), f"{where} in {sweep['dir'] / 'summary.md'}"
    return _FAILED_JOBS, "the messages above"


if __name__ == "__main__":
    main()

"""The ``runner`` command: Hydra wiring only; the work is :func:`runner.train.train`.

Exit codes (README "What happens when…"): 0 the run finished (completed or early-stopped,
or it had already finished); 1 an unexpected error (a bug; the traceback is in the run's
runner.log), or a sweep with failed jobs; 2 refused: a bad config, data, checkpoint or
run directory (busy, holding another run, read-only, disk full) — nothing of an earlier
run is changed; 3 the run diverged (its result is recorded, status ``diverged``); 4 it
was interrupted by a signal (status ``interrupted``; resume with ``trainer.resume=true``).
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import traceback
import uuid
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from runner.errors import Exit, RunnerError
from runner.schema import register_all

log = logging.getLogger("runner")

# Jobs of this process's multirun that failed (the sweep callback counts all launchers').
_FAILED_JOBS = 0
EXIT_OK, EXIT_BUG, EXIT_REFUSED = Exit.OK, Exit.FAILED, Exit.REFUSED
EXIT_DIVERGED, EXIT_INTERRUPTED = Exit.DIVERGED, Exit.INTERRUPTED
STATUS_EXIT = {"diverged": EXIT_DIVERGED, "interrupted": EXIT_INTERRUPTED}
# Set by main() while it owns error reporting (it sets HYDRA_FULL_ERROR so that Hydra's
# own errors reach it instead of being printed as a stack trace).
_OWN_ERRORS = "RUNNER_OWN_ERRORS"


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
    if not OmegaConf.has_resolver("runner_output_dir"):
        OmegaConf.register_new_resolver("runner_output_dir", _output_dir)


def _output_dir() -> str:
    """``run_dir``: the job's output directory; before a job runs (``runner --cfg job
    --resolve``) the directory it would get, ``hydra.run.dir``. Outside a Hydra app it
    raises, as ``${hydra:...}`` does (``runner.api`` then uses ``hydra.run.dir``)."""
    from hydra.core.hydra_config import HydraConfig

    hydra_cfg = HydraConfig.get()  # ValueError outside a Hydra app
    runtime = hydra_cfg.runtime
    if OmegaConf.is_missing(runtime, "output_dir") or not runtime.output_dir:
        return str(hydra_cfg.run.dir)
    return str(runtime.output_dir)


register_resolvers()
register_all()


def _use_checked_sweeper() -> None:
    """Make the runner's sweeper (every job checked before the first) ``hydra/sweeper/basic``.

    Hydra's plugin scan walks the folders of the ``hydra_plugins`` namespace; an editable
    install (the README's) maps the runner's plugin by name only, so the scan misses it, and
    the scan re-runs the basic sweeper's module, whose ConfigStore entry would then win. So
    after the scan (once per process) the plugin's ConfigStore entry is stored again and its
    class entered in the scan's table of plugin classes, which Hydra instantiates from.
    """
    from hydra.core.plugins import Plugins

    plugins = Plugins.instance()  # the scan
    module = importlib.import_module("hydra_plugins.runner_sweeper.checked_sweeper")
    module.register()
    cls = module.CheckedSweeper
    plugins.class_name_to_class.setdefault(f"{cls.__module__}.{cls.__name__}", cls)


_use_checked_sweeper()


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
    code = STATUS_EXIT.get(str(summary.get("status")), EXIT_OK)
    if code and not _is_multirun():  # a sweep keeps a diverged job as one of its rows
        reason = summary.get("stop_reason") or summary.get("status")
        print(f"runner: {summary.get('status')}: {reason}", file=sys.stderr)
        raise SystemExit(code)
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
    """Report a failed job (train() has recorded it: ``failed`` for a run that had
    started, a refusal only in a fresh directory) and exit, or let a sweep go on."""
    if _full_error() and not isinstance(err, RunnerError):
        raise err
    print(message, file=sys.stderr)
    if _is_multirun():  # record it and let the sweep go on; main() exits non-zero at the end
        _count_failed_job()
        return None
    raise SystemExit(EXIT_REFUSED if isinstance(err, RunnerError) else EXIT_BUG)


def _full_error() -> bool:
    """The user asked for full tracebacks (HYDRA_FULL_ERROR=1 set by them, not by main())."""
    return os.environ.get("HYDRA_FULL_ERROR") == "1" and os.environ.get(_OWN_ERRORS) != "1"


def _count_failed_job() -> None:
    global _FAILED_JOBS
    _FAILED_JOBS += 1


@hydra.main(version_base="1.3", config_path=conf_dir(), config_name="config")
def _hydra_main(cfg: DictConfig) -> float | None:
    return run_job(cfg)


def main() -> None:
    """Console-script entry point. A multirun exits 1 when any of its jobs failed."""
    from runner.sweep import callback

    global _FAILED_JOBS
    if {"--help", "-h"} & set(sys.argv[1:]):
        _print_help()
        return
    if sys.argv[1:2] == ["--list-models"]:
        _list_models(sys.argv[2:])
        return
    _FAILED_JOBS = 0
    saved = {k: os.environ.get(k) for k in ("HYDRA_FULL_ERROR", _OWN_ERRORS)}
    if saved["HYDRA_FULL_ERROR"] != "1":  # Hydra's errors come here, not as stack traces
        os.environ.update({"HYDRA_FULL_ERROR": "1", _OWN_ERRORS: "1"})
    try:
        _hydra_main()
    except SystemExit:
        callback.summarise_unfinished()  # a sweeper that gave up: summarise what ran
        raise
    except Exception as err:  # composing the config or making the run directory failed
        if _full_error():
            raise
        callback.summarise_unfinished()
        print(f"runner: error: {_startup_error(err)}", file=sys.stderr)
        raise SystemExit(EXIT_REFUSED if _is_input_error(err) else EXIT_BUG) from None
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    failed, where = _failed_sweep_jobs()
    if failed:
        print(f"runner: {failed} sweep job(s) failed; see {where}", file=sys.stderr)
        raise SystemExit(EXIT_BUG)


def _is_input_error(err: BaseException) -> bool:
    """An error in what the user gave (config files, overrides, paths), not a bug."""
    import yaml
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    kinds = (RunnerError, HydraException, OmegaConfBaseException, yaml.YAMLError, OSError)
    return isinstance(err, kinds)


def _startup_error(err: BaseException) -> str:
    """One line (or a few) for an error raised before a job runs: a YAML syntax error with
    its file and line, a file-system error with its path, Hydra's own message."""
    import yaml
    from hydra.errors import CompactHydraException

    cause = err.__cause__ or err.__context__
    if isinstance(cause, yaml.YAMLError) and not isinstance(err, yaml.YAMLError):
        err = cause
    if isinstance(err, yaml.YAMLError):
        mark = getattr(err, "problem_mark", None)
        where = f"{mark.name}, line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        context = getattr(err, "context", None)
        detail = f"{problem} ({context})" if context else problem
        return f"YAML syntax error in {where}: {detail}; fix the file"
    if isinstance(err, OSError) and err.filename:
        return (
            f"cannot create or write {err.filename}: {err.strerror}; choose another "
            "hydra.run.dir (or hydra.sweep.dir) where a directory can be made"
        )
    text = str(err)
    if isinstance(err, CompactHydraException) and cause is not None and str(cause) not in text:
        text += f"\n{cause}"
    from runner.suggest import explain

    return explain(text, sys.argv[1:], _conf_path()) or text or type(err).__name__


def _conf_path() -> Path:
    """The config folder: the checkout's ``conf/`` or the installed ``runner.conf``."""
    checkout = Path(conf_dir())
    if not checkout.is_dir():  # an installed copy: the packaged configs
        import runner.conf

        checkout = Path(next(iter(runner.conf.__path__)))  # a package without __init__
    return checkout


def _list_models(args: list[str]) -> None:
    """``runner --list-models [PATTERN]``: model names by source and their weights."""
    from runner.hub.listing import lines

    print("\n".join(lines(_conf_path(), args[0] if args else "")))


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
    if sweep is not None and len(sweep["failed"]) >= _FAILED_JOBS:
        where = ", ".join(f"job {j}" for j in sweep["failed"])
        return len(sweep["failed"]), f"{where} in {sweep['dir'] / 'summary.md'}"
    return _FAILED_JOBS, "the messages above"


if __name__ == "__main__":
    main()

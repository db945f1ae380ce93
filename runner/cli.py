"""The ``runner`` command: Hydra wiring only; the work is :func:`runner.train.train`."""

from __future__ import annotations

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

    In a multirun the failure is recorded and the sweep goes on (the value returned to an
    Optuna sweeper is NaN-free: ``None``).
    """
    from runner.train import train

    try:
        summary = train(cfg)
    except RunnerError as err:
        return _fail(cfg, err, f"runner: error: {err}")
    except Exception as err:  # a bug or an unforeseen problem: keep the traceback in the log
        _log_to_file_only(f"unexpected error:\n{traceback.format_exc()}")
        hint = "set HYDRA_FULL_ERROR=1 for the traceback here; it is also in the run's runner.log"
        return _fail(cfg, err, f"runner: training failed: {type(err).__name__}: {err}\n({hint})")
    return _monitored(summary)


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
    from runner.io import write_json

    try:
        run_dir = Path(cfg.run_dir)
    except Exception:  # run_dir unresolvable (e.g. composed without Hydra): nothing to record
        run_dir = None
    if run_dir is not None and run_dir.exists():
        summary_path = run_dir / "summary.json"
        write_json(
            summary_path,
            {"status": "failed", "error": f"{type(err).__name__}: {err}", "diagnoses": []},
        )
    if os.environ.get("HYDRA_FULL_ERROR") == "1" and not isinstance(err, RunnerError):
        raise err
    print(message, file=sys.stderr)
    if _is_multirun():
        return None
    raise SystemExit(2 if isinstance(err, RunnerError) else 1)


@hydra.main(version_base="1.3", config_path=conf_dir(), config_name="config")
def _hydra_main(cfg: DictConfig) -> float | None:
    return run_job(cfg)


def main() -> None:
    """Console-script entry point."""
    _hydra_main()


if __name__ == "__main__":
    main()

"""Optional parts of a sweep summary: sweep-level diagnoses and Optuna's result.

Each degrades to nothing with a log line (a diagnostics bug, ``optuna`` absent), never to a
failed summary.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import OmegaConf

from runner.io import write_csv
from runner.sweep.runs import Job, Sweep, _select

log = logging.getLogger(__name__)


def sweep_diagnoses(jobs: Sequence[Job]) -> list[str]:
    """Findings of the sweep-level diagnostics rules (e.g. degradation) as text.

    The thresholds are the jobs' ``diagnostics`` config (the first job that has one), else
    ``conf/diagnostics/default.yaml``. Returns [] when the diagnostics are switched off or
    find nothing.
    """
    from runner.diagnostics import registry

    runs = [
        {
            "model": job.model_name,
            "summary": job.summary,
            "metrics": job.metrics if job.metrics is not None else pd.DataFrame(),
            "job": job.num,
            "overrides": job.overrides,
        }
        for job in jobs
        if job.summary
    ]
    conf = next(
        (c for c in (_select(j.config, "diagnostics") for j in jobs) if c is not None), None
    )
    try:
        found = registry.sweep_diagnoses(runs, conf)
    except Exception as err:  # a diagnostics bug must not cost the sweep its summary
        log.warning(
            "sweep diagnoses failed (%s: %s); summary written without them", type(err).__name__, err
        )
        return []
    return [describe_finding(f) for f in found]


def describe_finding(finding: Any) -> str:
    """One markdown line for a finding given as a dict, a dataclass or text."""
    if dataclasses.is_dataclass(finding) and not isinstance(finding, type):
        finding = dataclasses.asdict(finding)
    if not isinstance(finding, dict):
        return str(finding)
    name = next((finding[k] for k in ("id", "name", "rule", "code", "kind") if finding.get(k)), "")
    text = next(
        (
            finding[k]
            for k in ("message", "text", "summary", "detail", "explanation")
            if finding.get(k)
        ),
        "",
    )
    advice = finding.get("advice") or finding.get("suggestion") or finding.get("remedy")
    severity = f" ({finding['severity']})" if finding.get("severity") else ""
    line = f"**{name}**{severity}: {text}" if name and text else str(name or text or finding)
    if advice:
        line += f" — {advice if isinstance(advice, str) else '; '.join(map(str, advice))}"
    return line


def optuna_result(sweep: Sweep, out: Path) -> dict[str, Any]:
    """Best parameters (``optimization_results.yaml``) and, for stored studies, every trial.

    Returns {"lines": markdown lines, "files": written paths}; empty for non-Optuna sweeps.
    Writes ``optuna_trials.csv`` (all trials of the study, earlier invocations included)
    when the sweeper used persistent storage.
    """
    result: dict[str, Any] = {"lines": [], "files": []}
    if sweep.root is None:
        return result
    path = sweep.root / "optimization_results.yaml"
    if path.exists():
        best = OmegaConf.to_container(OmegaConf.load(path))
        if isinstance(best, dict) and "best_params" in best:
            result["lines"] += [
                f"Best value: {best.get('best_value')} (from `{path.name}`). Best parameters:",
                "",
                *[f"- `{k}={v}`" for k, v in best["best_params"].items()],
            ]
    storage = _select(sweep.multirun, "hydra.sweeper.storage")
    study_name = _select(sweep.multirun, "hydra.sweeper.study_name")
    if storage and study_name:
        frame = _trials(str(storage), str(study_name))
        if frame is not None:
            result["files"].append(write_csv(out / "optuna_trials.csv", frame))
            done = int((frame["state"] == "COMPLETE").sum()) if "state" in frame else len(frame)
            result["lines"] += [
                "",
                f"Study `{study_name}` in `{storage}`: {len(frame)} trials ({done} complete) "
                "over all invocations, listed in `optuna_trials.csv`. Run the same command "
                "again to add trials to it.",
            ]
    return result


def _trials(storage: str, study_name: str) -> pd.DataFrame | None:
    if storage.startswith("sqlite:///") and not Path(storage[len("sqlite:///") :]).exists():
        log.warning(
            "Optuna storage %s not found from %s: no optuna_trials.csv", storage, Path.cwd()
        )
        return None  # optuna would create an empty database there
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.load_study(study_name=study_name, storage=storage)
        return study.trials_dataframe()
    except Exception as err:  # optuna absent, storage moved: the summary goes on
        log.warning("cannot read Optuna study %s from %s: %s", study_name, storage, err)
        return None

"""Sweep tables: one row per job, mean ± std over seeds, and the effect of each swept key.

:func:`write_sweep_summary` writes, into the sweep directory (or any folder):

- ``summary.csv``  one row per job: job, one column per swept key, status, the
  monitored metric, the summary.json figures, diagnoses, error, run_dir;
- ``summary.md``   the same sorted by the monitored metric (best first), the
  mean ± std over seeds and cross-validation folds of each configuration for seed
  sweeps (``trainer.seed=0,1,2``) and k-fold sweeps (``+cv=kfold``: ``dataset.fold``), the
  effects table, sweep diagnoses and Optuna's result;
- ``curves.png``   validation loss and accuracy of every job (seed sweeps: the
  mean ± std of each configuration);
- ``effects.csv`` / ``effects.png``  for each swept key and value: the best and the
  mean ± std of the monitored metric (and of validation accuracy) over the other keys;
- ``summary_seeds.csv`` / ``summary_folds.csv``  (seed / fold sweeps only) the
  per-configuration mean/std table.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from runner.io import write_csv, write_text
from runner.metrics import lower_is_better
from runner.rundir import FINISHED
from runner.sweep import extras, figures
from runner.sweep.runs import (
    FOLD_KEY,
    OK_STATUSES,
    REPLICATE_KEYS,
    SEED_KEY,
    Job,
    Sweep,
    load_sweep,
    monitor_of,
)

log = logging.getLogger(__name__)

# summary.json fields that are not one number or word per job, or are repeated elsewhere.
_SKIP_FIELDS = {"status", "error", "classes", "diagnoses", "monitor"}
_TRAILING = ["diagnoses", "error", "run_dir"]
# Whole numbers (nullable, so failed jobs stay blank rather than turning them into floats).
_INT_COLUMNS = (
    "best_epoch", "epochs_run", "params", "flops", "runs", "configs", "seeds", "folds", "rank",
)  # fmt: skip


@dataclass
class SweepResult:
    """What :func:`write_sweep_summary` found and wrote."""

    out_dir: Path
    monitor: str
    statuses: dict[str, str]  # job → status
    files: list[Path] = field(default_factory=list)

    @property
    def failed(self) -> list[str]:
        """Jobs that did not run to an end (failed, interrupted, still running, no summary)."""
        return [job for job, status in self.statuses.items() if status not in OK_STATUSES]


def write_sweep_summary(
    paths: Sequence[str | Path] | Sweep, out_dir: str | Path | None = None
) -> SweepResult:
    """Read the runs and write the sweep files into ``out_dir`` (default: the sweep root).

    ``paths``: one sweep directory, or any list of sweep and run directories (then
    ``out_dir`` is required), or an already loaded :class:`Sweep`.
    """
    sweep = paths if isinstance(paths, Sweep) else load_sweep(paths)
    if out_dir is None:
        if sweep.root is None:
            raise ValueError("out_dir is required when the runs are not one sweep directory")
        out_dir = sweep.root
    out = Path(out_dir)
    monitor = monitor_of(sweep.jobs)
    table = jobs_table(sweep.jobs, sweep.swept, monitor)
    result = SweepResult(out, monitor, dict(zip(table["job"].astype(str), table["status"])))
    metric = f"best_{monitor}"
    seeded = is_seed_sweep(table, sweep.swept)
    configs = config_table(table, sweep.swept, metrics_of(table, metric)) if seeded else None
    effects = effects_table(table, sweep.swept, metrics_of(table, metric), configs)

    result.files.append(write_csv(out / "summary.csv", table))
    result.files.append(write_csv(out / "effects.csv", effects))
    if configs is not None:
        for key, name in ((SEED_KEY, "summary_seeds.csv"), (FOLD_KEY, "summary_folds.csv")):
            if key in replicated(table, sweep.swept):
                result.files.append(write_csv(out / name, configs))
    findings = extras.sweep_diagnoses(sweep.jobs)
    optuna = extras.optuna_result(sweep, out)
    result.files += optuna.pop("files", [])
    md = markdown_summary(sweep, table, configs, effects, monitor, findings, optuna)
    result.files.append(write_text(out / "summary.md", md))
    series = curve_series(sweep.jobs, table, sweep.swept, seeded)
    noun = "job" if sweep.root else "run"
    result.files.append(figures.plot_sweep_curves(series, monitor, out / "curves.png", noun))
    keys = "swept key" if sweep.root else "differing key"
    result.files.append(figures.plot_effects(effects, metric, out / "effects.png", keys))
    return result


# ------------------------------------------------------------------ tables


def jobs_table(jobs: Sequence[Job], swept: Sequence[str], monitor: str) -> pd.DataFrame:
    """summary.csv: one row per job, best first by the monitored metric, failures last."""
    metric = f"best_{monitor}"
    rows = []
    for job in jobs:
        row: dict[str, Any] = {"job": job.num}
        row.update({key: job.value(key) for key in swept})
        row["status"] = job.status
        row[metric] = job.summary.get(metric)
        for key, value in job.summary.items():
            if key not in _SKIP_FIELDS and key not in row and _is_scalar(value):
                row[key] = value
        row["diagnoses"] = "; ".join(_finding_name(d) for d in job.summary.get("diagnoses") or [])
        row["error"] = job.summary.get("error", "")
        row["run_dir"] = str(job.path)
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return pd.DataFrame(columns=["job", *swept, "status", metric, *_TRAILING])
    table = table[[c for c in table.columns if c not in _TRAILING] + _TRAILING]
    table[metric] = pd.to_numeric(table[metric], errors="coerce")
    for col in _INT_COLUMNS:
        if col in table:
            table[col] = pd.to_numeric(table[col], errors="coerce").round().astype("Int64")
    ok = table["status"].isin(OK_STATUSES) & table[metric].notna()
    order = table.assign(_ok=~ok).sort_values(
        ["_ok", metric], ascending=[True, lower_is_better(monitor)], kind="stable"
    )
    return order.drop(columns="_ok").reset_index(drop=True)


def metrics_of(table: pd.DataFrame, metric: str) -> list[str]:
    """The monitored metric first, then validation/test accuracy and macro-F1 when present."""
    wanted = [metric, "best_val_acc", "test_acc", "test_macro_f1"]
    names = list(dict.fromkeys(wanted))
    return [
        m for m in names if m in table.columns and pd.to_numeric(table[m], "coerce").notna().any()
    ]


def replicated(table: pd.DataFrame, swept: Sequence[str]) -> list[str]:
    """The replicate keys (seed, fold) this sweep varies."""
    return [k for k in REPLICATE_KEYS if k in swept and table[k].nunique(dropna=True) > 1]


def is_seed_sweep(table: pd.DataFrame, swept: Sequence[str]) -> bool:
    """Whether the sweep repeats configurations over seeds or cross-validation folds."""
    return bool(replicated(table, swept))


def config_keys(swept: Sequence[str]) -> list[str]:
    """The swept keys that define a configuration (all but the seed and the fold)."""
    return [k for k in swept if k not in REPLICATE_KEYS]


def config_table(table: pd.DataFrame, swept: Sequence[str], metrics: Sequence[str]) -> pd.DataFrame:
    """Mean, std and count over seeds (and folds) of each configuration (finished jobs)."""
    keys = config_keys(swept)
    ok = table[table["status"].isin(OK_STATUSES)].copy()
    for m in metrics:
        ok[m] = pd.to_numeric(ok[m], errors="coerce")
    grouped = ok.groupby(keys, sort=False, dropna=False) if keys else [((), ok)]
    rows = []
    for values, group in grouped:
        values = values if isinstance(values, tuple) else (values,)
        row: dict[str, Any] = dict(zip(keys, values))
        for key, column in ((SEED_KEY, "seeds"), (FOLD_KEY, "folds")):
            if key in swept:
                row[column] = int(group[key].nunique())
        row["jobs"] = " ".join(str(j) for j in group["job"])
        for m in metrics:
            row[f"{m}_mean"] = group[m].mean()
            row[f"{m}_std"] = group[m].std(ddof=1) if group[m].count() > 1 else math.nan
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty or not metrics:
        return frame
    first = f"{metrics[0]}_mean"
    return frame.sort_values(first, ascending=lower_is_better(metrics[0])).reset_index(drop=True)


def effects_table(
    table: pd.DataFrame,
    swept: Sequence[str],
    metrics: Sequence[str],
    configs: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """effects.csv: per metric, swept key and value — runs, best, mean and std.

    ``best`` is the best configuration with that value (its mean over seeds in a seed
    sweep); ``mean``/``std`` are over every finished run with that value.
    """
    keys = config_keys(swept)
    if not keys:  # only seeds or folds vary: the effect of each, run by run
        keys, configs = list(swept), None
    ok = table[table["status"].isin(OK_STATUSES)].copy()
    for m in metrics:
        ok[m] = pd.to_numeric(ok[m], errors="coerce")
    by_job = table.sort_values("job", key=lambda c: pd.to_numeric(c, errors="coerce"))
    rows = []
    for m in metrics:
        lower = lower_is_better(m)
        per_config = configs if configs is not None else ok.rename(columns={m: f"{m}_mean"})
        for key in keys:
            for value in ordered_values(by_job[key]):
                runs = ok[ok[key] == value][m].dropna()
                cands = per_config[per_config[key] == value].dropna(subset=[f"{m}_mean"])
                best_row = _best_row(cands, f"{m}_mean", lower)
                rows.append(
                    {
                        "metric": m,
                        "key": key,
                        "value": value,
                        "runs": len(runs),
                        "configs": len(cands),
                        "best": None if best_row is None else best_row[f"{m}_mean"],
                        "best_std": None if best_row is None else best_row.get(f"{m}_std"),
                        "mean": runs.mean() if len(runs) else None,
                        "std": runs.std(ddof=1) if len(runs) > 1 else None,
                        "best_jobs": None
                        if best_row is None
                        else str(best_row.get("jobs", best_row.get("job"))),
                    }
                )
    columns = ["metric", "key", "value", "runs", "configs", "best", "best_std", "mean", "std"]
    frame = pd.DataFrame(rows, columns=[*columns, "best_jobs"])
    return frame if configs is not None else frame.drop(columns="best_std")


def ordered_values(column: pd.Series) -> list[Any]:
    """Distinct values: numeric order when all are numbers, else first-seen order."""
    values = list(dict.fromkeys(v for v in column.tolist() if v is not None and v == v))
    try:
        return sorted(values, key=float)
    except (TypeError, ValueError):
        return values


def curve_series(
    jobs: Sequence[Job], table: pd.DataFrame, swept: Sequence[str], seeded: bool
) -> list[tuple[str, list[pd.DataFrame]]]:
    """(label, metrics frames) per line of curves.png, best first (the table's order)."""
    by_num = {job.num: job for job in jobs}
    keys = config_keys(swept) if seeded else list(swept)
    series: dict[str, list[pd.DataFrame]] = {}
    for _, row in table.iterrows():
        job = by_num[str(row["job"])]
        if job.metrics is None or "epoch" not in job.metrics or job.metrics.empty:
            continue
        label = short_label(row, keys)
        if seeded:
            label = label or "all"
            series.setdefault(label, []).append(job.metrics)
        else:
            status = "" if row["status"] in FINISHED else f" [{row['status']}]"
            series[f"#{row['job']} {label}{status}".strip()] = [job.metrics]
    if seeded:
        return [(f"{label} ({len(f)} runs)", f) for label, f in series.items()]
    return list(series.items())


def short_label(row: pd.Series, keys: Sequence[str]) -> str:
    """``optimizer=sgd, kernel_size=5`` — last key component when it is unambiguous; a key
    a run does not have at all reads ``unset``."""
    last = [k.split(".")[-1] for k in keys]
    names = [s if last.count(s) == 1 else k for s, k in zip(last, keys)]
    return ", ".join(f"{n}={_shown(row[k])}" for n, k in zip(names, keys))


def _shown(value: Any) -> str:
    return "unset" if value is None or value is pd.NA or value != value else str(value)


# ------------------------------------------------------------------ markdown


def markdown_summary(
    sweep: Sweep,
    table: pd.DataFrame,
    configs: pd.DataFrame | None,
    effects: pd.DataFrame,
    monitor: str,
    findings: list[str],
    optuna: dict[str, Any],
) -> str:
    """summary.md: status counts, the ranked jobs, seeds, effects, diagnoses, figures."""
    metric = f"best_{monitor}"
    direction = "lower" if lower_is_better(monitor) else "higher"
    runs = f"{len(table)} {'job' if sweep.root else 'run'}{'s' if len(table) != 1 else ''}"
    keys = ", ".join(f"`{k}`" for k in sweep.swept)
    if sweep.root:  # one sweep directory
        title, differ, key_noun = f"Sweep summary: {sweep.root.name}", "Swept", "swept key"
    else:  # any runs side by side: only what differs between them is shown
        title, differ, key_noun = f"Comparison of {runs}", "Settings that differ", "differing key"
    counts = table["status"].value_counts()
    lines = [
        f"# {title}",
        "",
        f"{runs}: " + ", ".join(f"{n} {s}" for s, n in counts.items()) + ".",
        f"Ranked by `{metric}` ({direction} is better). "
        f"{differ}: {keys or 'nothing (the runs share every overridden setting)'}.",
        f"Rebuild these files at any time with `runner-report {sweep.root or '<run dirs>'}`.",
        "",
        f"## {'Jobs' if sweep.root else 'Runs'}, best first",
        "",
        markdown_table(_md_jobs(table, sweep.swept, metric)),
    ]
    if configs is not None and not configs.empty:
        over = " and ".join(
            {SEED_KEY: "seeds", FOLD_KEY: "folds"}[k] for k in replicated(table, sweep.swept)
        )
        lines += ["", f"## Mean ± std over {over}", "", markdown_table(_md_seeds(configs))]
    if not effects.empty:
        lines += ["", f"## Effect of each {key_noun} on `{metric}`", ""]
        lines.append("best: the best configuration with that value; mean ± std: all its runs.")
        lines += ["", markdown_table(_md_effects(effects, metric))]
    if findings:
        lines += ["", "## Sweep diagnoses", "", *[f"- {f}" for f in findings]]
    if optuna.get("lines"):
        lines += ["", "## Optuna", "", *optuna["lines"]]
    lines += [
        "",
        "## Figures",
        "",
        "![validation curves of every job](curves.png)",
        "",
        f"![effect of each {key_noun}](effects.png)",
        "",
    ]
    return "\n".join(lines)


def _md_jobs(table: pd.DataFrame, swept: Sequence[str], metric: str) -> pd.DataFrame:
    shown = ["job", *swept, "status", metric]
    shown += ["best_val_acc", "test_acc", "test_macro_f1", "best_epoch", "epochs_run"]
    shown += ["train_seconds", "diagnoses", "error"]
    frame = table[[c for c in dict.fromkeys(shown) if c in table.columns]].copy()
    for col in ("diagnoses", "error"):
        if col in frame and not frame[col].fillna("").astype(str).str.len().any():
            frame = frame.drop(columns=col)
    frame.insert(0, "rank", range(1, len(frame) + 1))
    return frame


def _md_seeds(configs: pd.DataFrame) -> pd.DataFrame:
    frame = pd.DataFrame()
    for col in configs.columns:
        if col.endswith("_mean"):
            base = col[: -len("_mean")]
            frame[base] = [_pm(m, s) for m, s in zip(configs[col], configs[f"{base}_std"])]
        elif not col.endswith("_std"):
            frame[col] = configs[col]
    return frame


def _md_effects(effects: pd.DataFrame, metric: str) -> pd.DataFrame:
    rows = effects[effects["metric"] == metric]
    best_std = rows["best_std"] if "best_std" in rows else [None] * len(rows)
    return pd.DataFrame(
        {
            "key": rows["key"],
            "value": rows["value"],
            "runs": rows["runs"],
            "best": [_pm(b, s) for b, s in zip(rows["best"], best_std)],
            "mean ± std": [_pm(m, s) for m, s in zip(rows["mean"], rows["std"])],
            "best jobs": rows["best_jobs"],
        }
    )


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub markdown table (no extra dependency); numbers rounded for reading."""
    if frame.empty:
        return "(no rows)"
    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = [
        "| " + " | ".join(_cell(v, str(c)) for c, v in row.items()) + " |"
        for _, row in frame.iterrows()
    ]
    return "\n".join([header, rule, *body])


def _cell(value: Any, column: str) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        if column.endswith("seconds"):
            return f"{value:.1f}"
        return _num(value)
    text = str(value).replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= 120 else text[:117] + "..."


def _num(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    value = float(value)
    return f"{value:.0f}" if value.is_integer() and abs(value) >= 100 else f"{value:.4f}"


def _pm(mean: Any, std: Any) -> str:
    if mean is None or mean != mean:
        return ""
    return _num(mean) if std is None or std != std else f"{_num(mean)} ± {_num(std)}"


def _best_row(frame: pd.DataFrame, column: str, lower: bool) -> pd.Series | None:
    if frame.empty:
        return None
    index = frame[column].idxmin() if lower else frame[column].idxmax()
    return frame.loc[index]


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _finding_name(item: Any) -> str:
    if isinstance(item, dict):
        for key in ("id", "name", "rule", "code", "kind"):
            if item.get(key):
                return str(item[key])
    return str(item)

"""``report.md``: the human-readable account of one run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from runner.io import write_text

STATUS_WORDS = {
    "completed": "trained for every configured epoch",
    "early_stopped": "stopped early (the monitored metric stopped improving)",
    "diverged": "stopped because the loss became NaN or infinite",
    "interrupted": "stopped by a signal; it can be resumed with trainer.resume=true",
    "time_limit": "stopped at an epoch end when trainer.max_time ran out; resume with a "
    "larger trainer.max_time and trainer.resume=true",
    "failed": "failed with an error",
}


def _table(frame: pd.DataFrame, floatfmt: str = ".4f") -> str:
    """A markdown table without the optional tabulate dependency."""
    cols = list(frame.columns)
    lines = ["| " + " | ".join(str(c) for c in cols) + " |", "|" + "---|" * len(cols)]
    for _, row in frame.iterrows():
        cells = [_cell(v, floatfmt) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(value: Any, floatfmt: str) -> str:
    if isinstance(value, float):
        return (
            str(int(value)) if value.is_integer() and abs(value) >= 1 else format(value, floatfmt)
        )
    return str(value)


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.4f}"
    if isinstance(value, int):
        return f"{value:,}"
    return "" if value is None else str(value)


def links(run_dir: Path, rels: list[str]) -> str:
    """Markdown links to the files of ``rels`` (relative to ``run_dir``) that exist."""
    return ", ".join(f"[{r}]({r})" for r in rels if (run_dir / r).exists())


def figure(run_dir: Path, rel: str, caption: str, data: list[str] | tuple[str, ...] = ()) -> str:
    """An image link plus links to the CSVs behind it; ``""`` if the image does not exist."""
    if not (run_dir / rel).exists():
        return ""
    behind = links(run_dir, list(data))
    return f"![{caption}]({rel})\n" + (f"\nData: {behind}\n" if behind else "")


SEVERITY_WORDS = {"error": "Problem", "warning": "Warning", "info": "Note"}


def _evidence(evidence: dict[str, Any]) -> str:
    parts = []
    for key, value in evidence.items():
        if isinstance(value, float):
            value = f"{value:.3g}"
        parts.append(f"{key} = {value}")
    return "; ".join(parts)


def render_diagnoses(diagnoses: list[dict[str, Any]]) -> list[str]:
    """Diagnoses in plain words, most severe first: what, why (evidence), what to try next."""
    if not diagnoses:
        return ["No problems detected by the automatic checks."]
    order = {"error": 0, "warning": 1, "info": 2}
    out = []
    for d in sorted(diagnoses, key=lambda d: order.get(d.get("severity"), 3)):
        label = SEVERITY_WORDS.get(d.get("severity"), str(d.get("severity")))
        out += [f"- **{label} — {d['code']}**: {d['message']}"]
        if d.get("advice"):
            out += [f"  - *What to try next:* {d['advice']}"]
        if d.get("evidence"):
            out += [f"  - *Evidence:* {_evidence(d['evidence'])}"]
    return out


def _outcome(summary: dict[str, Any]) -> str:
    """One sentence: test accuracy, macro-F1, best epoch."""
    bits = []
    if summary.get("test_acc") is not None:
        bits.append(f"test accuracy {100 * summary['test_acc']:.2f} %")
    if summary.get("test_macro_f1") is not None:
        bits.append(f"macro-F1 {summary['test_macro_f1']:.4f}")
    if summary.get("best_val_acc") is not None:
        bits.append(
            f"best validation accuracy {100 * summary['best_val_acc']:.2f} % at epoch "
            f"{summary.get('best_epoch')} of {summary.get('epochs_run', '?')}"
        )
    return ("Result: " + ", ".join(bits) + ".") if bits else ""


def render(
    run_dir: Path,
    cfg: DictConfig,
    summary: dict[str, Any],
    history: pd.DataFrame,
    report_table: pd.DataFrame | None,
    sections: list[str] | None = None,
) -> str:
    """The report text: outcome, key figures, curves, per-class table, diagnoses, config."""
    status = summary["status"]
    out = [f"# Run report — {cfg.model.name} on {cfg.dataset.name}", ""]
    if cfg.get("notes"):
        out += [f"> {cfg.notes}", ""]
    out += [f"**Outcome:** {status} — {STATUS_WORDS.get(status, status)}."]
    if summary.get("stop_reason"):
        out += [f"*{summary['stop_reason']}*"]
    if summary.get("error"):
        out += ["", "```", str(summary["error"]), "```"]
    if _outcome(summary):
        out += ["", _outcome(summary)]
    keys = [
        "best_epoch",
        "best_val_acc",
        "best_val_loss",
        "final_train_acc",
        "final_val_acc",
        "test_acc",
        "test_top5_acc",
        "test_macro_f1",
        "test_macro_auc",
        "params",
        "flops",
        "train_seconds",
        "images_per_second",
        "device",
        "precision",
        "channels_last",
    ]
    out += ["", "## Key figures", "", "| figure | value |", "|---|---|"]
    out += [f"| {k} | {_fmt(summary.get(k))} |" for k in keys if k in summary]
    diagnoses = summary.get("diagnoses") or []
    out += ["", "## Diagnoses", "", *render_diagnoses(diagnoses)]
    out += ["", "## Training curves", "", figure(run_dir, "curves.png", "loss and accuracy")]
    if len(history):
        out += ["Per-epoch numbers: [metrics.csv](metrics.csv)", ""]
        shown = history[
            [
                c
                for c in (
                    "epoch",
                    "train_loss",
                    "train_acc",
                    "val_loss",
                    "val_acc",
                    "lr",
                    "epoch_seconds",
                )
                if c in history
            ]
        ]
        if len(shown) > 12:  # first, last and the best epoch are what a reader needs
            keep = {0, len(shown) - 1, int(summary.get("best_epoch", 1)) - 1}
            shown = shown.iloc[sorted(i for i in keep if 0 <= i < len(shown))]
        out += [_table(shown), ""]
    if report_table is not None:
        out += [
            "## Test split: per-class metrics",
            "",
            "From [eval/classification_report.csv](eval/classification_report.csv).",
            "",
            _table(report_table),
            "",
            "Confusion matrix: rows are true classes, columns predictions; the right panel "
            "divides each row by its total (recall on the diagonal).",
            "",
            figure(
                run_dir,
                "eval/confusion_matrix.png",
                "confusion matrix",
                ["eval/confusion_matrix.csv"],
            ),
        ]
    out += sections or []
    cfg_yaml = OmegaConf.to_yaml(
        OmegaConf.masked_copy(cfg, ["model", "dataset", "optimizer", "scheduler", "trainer"])
    )
    out += [
        "## Configuration",
        "",
        "```yaml",
        cfg_yaml.rstrip(),
        "```",
        "",
        "Full record of the composed config and overrides: `.hydra/`.",
        "",
    ]
    return "\n".join(out)


def write_report(run_dir: Path, *args: Any, **kwargs: Any) -> Path:
    from runner.rundir import REPORT

    return write_text(run_dir / REPORT, render(run_dir, *args, **kwargs))

"""``report.md``: the human-readable account of one run.

It opens with the verdict (did the run train well, the one change to try next, where the
evidence is — :mod:`runner.diagnostics.verdict`), then the outcome, key figures, diagnoses,
curves, per-class table, the diagnostics' own sections and the configuration. With the
diagnostics off it says that nothing was checked instead of claiming there were no problems.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from runner.io import write_text

if TYPE_CHECKING:
    import pandas as pd

STATUS_WORDS = {
    "completed": "trained for every configured epoch",
    "early_stopped": "stopped early (the monitored metric stopped improving)",
    "diverged": "stopped because the loss became NaN or infinite",
    "interrupted": "stopped by a signal; it can be resumed with trainer.resume=true",
    "time_limit": "stopped at an epoch end when trainer.max_time ran out; resume with a "
    "larger trainer.max_time and trainer.resume=true",
    "failed": "failed with an error",
}
SEVERITY_WORDS = {"error": "Problem", "warning": "Warning", "info": "Note"}
WELL_WORDS = {"yes": "Yes", "partly": "Partly", "no": "No"}
KEY_FIGURES = (
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
    "trainable_params",
    "flops",
    "train_seconds",
    "images_per_second",
    "device",
    "precision",
    "channels_last",
)
CURVE_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_seconds")
OFF = (
    "Automatic diagnoses were off (`diagnostics=off` or `diagnostics.enabled=false`): nothing "
    "was checked, so this report cannot say whether the run trained well. Compare train and "
    "validation in [curves.png](curves.png), or run again with the diagnostics on."
)


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


def _evidence(evidence: dict[str, Any]) -> str:
    parts = []
    for key, value in evidence.items():
        if isinstance(value, float):
            value = f"{value:.3g}"
        parts.append(f"{key} = {value}")
    return "; ".join(parts)


def render_diagnoses(
    diagnoses: list[dict[str, Any]], checked: bool = True, run_dir: Path | None = None
) -> list[str]:
    """Diagnoses in plain words, in the given order (most important first): what, what to
    try next, where to look, the evidence. ``checked``: whether any rule ran."""
    if not checked:
        return [OFF]
    if not diagnoses:
        return ["No problems detected by the automatic checks."]
    out = []
    for d in diagnoses:
        label = SEVERITY_WORDS.get(d.get("severity"), str(d.get("severity")))
        out += [f"- **{label} — {d['code']}**: {d['message']}"]
        if d.get("advice"):
            out += [f"  - *What to try next:* {d['advice']}"]
        see = _see(d.get("see") or [], run_dir)
        if see:
            out += [f"  - *Where to look:* {see}"]
        if d.get("evidence"):
            out += [f"  - *Evidence:* {_evidence(d['evidence'])}"]
    return out


def _see(files: list[str], run_dir: Path | None) -> str:
    present = [f for f in files if run_dir is None or (run_dir / f).exists()]
    return ", ".join(f"[{f}]({f})" for f in present)


def render_verdict(
    summary: dict[str, Any], checked: bool, run_dir: Path | None = None
) -> list[str]:
    """The verdict paragraph (``summary["verdict"]``), or why there is none."""
    v = summary.get("verdict")
    if not checked:
        return ["## Verdict", "", OFF, ""]
    if not v:
        return [
            "## Verdict",
            "",
            "No verdict: the diagnostics did not finish (see runner.log).",
            "",
        ]
    well = WELL_WORDS.get(v["trained_well"], v["trained_well"])
    lines = [f"**Did it train well?** {well} — {v['headline']}."]
    if v.get("next"):
        action = v["next"]
        action = f"`{action}`" if "=" in action and " " not in action else action
        lines.append(f"**Change next:** {action} — because {v['why']}.")
    elif v["trained_well"] == "yes":
        lines.append("**Change next:** nothing pressing.")
    see = _see(v.get("see") or [], run_dir) or _see(["curves.png"], run_dir)
    if see:
        lines.append(f"**Evidence:** {see}; each finding with its numbers under Diagnoses.")
    return ["## Verdict", "", *[part for line in lines for part in (line, "")]]


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


def finetune_section(
    loaded: str | None,
    frozen: str,
    frozen_norms: int,
    trainable: int,
    total: int,
    unfrozen_at: int | None,
    lr_multipliers: list[tuple[str, float]] | None,
) -> str:
    """The "Fine-tuning" section: weights loaded, what was frozen, trainable parameters,
    unfreezing and the learning rate of each stage (a multiple of optimizer.lr)."""
    lines = ["## Fine-tuning", ""]
    lines.append(f"- Weights: {loaded or 'none (the architecture’s own initialisation)'}")
    norms = f"; {frozen_norms} BatchNorm layers kept in eval mode" if frozen_norms else ""
    lines.append(f"- Frozen: {frozen}{norms}")
    share = f" ({100 * trainable / total:.3g} %)" if total else ""
    lines.append(f"- Trainable parameters: {trainable:,} of {total:,}{share}")
    if unfrozen_at is not None:
        lines.append(f"- Unfrozen at epoch {unfrozen_at}: all {total:,} parameters trained since")
    if lr_multipliers:
        rates = ", ".join(f"{name} × {mult:g}" for name, mult in lr_multipliers)
        lines.append(f"- Learning rates (× optimizer.lr; classifier × 1): {rates}")
    return "\n".join([*lines, ""]) + "\n"


def _outcome_lines(summary: dict[str, Any], checked: bool) -> list[str]:
    status = summary["status"]
    out = [f"**Outcome:** {status} — {STATUS_WORDS.get(status, status)}."]
    reason = summary.get("stop_reason")
    if reason:
        if checked and status == "diverged":  # the diagnoses give advice fitted to the config
            reason = reason.split(" Try ")[0]
        out += [f"*{reason}*"]
    if summary.get("error"):
        out += ["", "```", str(summary["error"]), "```"]
    if _outcome(summary):
        out += ["", _outcome(summary)]
    return out


def _curves_lines(run_dir: Path, summary: dict[str, Any], history: pd.DataFrame) -> list[str]:
    out = ["## Training curves", "", figure(run_dir, "curves.png", "loss and accuracy")]
    if len(history):
        out += ["Per-epoch numbers: [metrics.csv](metrics.csv)", ""]
        shown = history[[c for c in CURVE_COLUMNS if c in history]]
        if len(shown) > 12:  # first, last and the best epoch are what a reader needs
            keep = {0, len(shown) - 1, int(summary.get("best_epoch", 1)) - 1}
            shown = shown.iloc[sorted(i for i in keep if 0 <= i < len(shown))]
        out += [_table(shown), ""]
    return out


def _per_class_lines(run_dir: Path, report_table: pd.DataFrame | None) -> list[str]:
    if report_table is None:
        return []
    return [
        "## Test split: per-class metrics",
        "",
        "From [eval/classification_report.csv](eval/classification_report.csv).",
        "",
        _table(report_table),
        "",
        "Confusion matrix: rows are true classes, columns predictions; each cell holds a count "
        "and is coloured by its share of the row (recall on the diagonal).",
        "",
        figure(
            run_dir, "eval/confusion_matrix.png", "confusion matrix", ["eval/confusion_matrix.csv"]
        ),
    ]


def _config_lines(cfg: DictConfig) -> list[str]:
    groups = ["model", "dataset", "optimizer", "scheduler", "trainer"]
    cfg_yaml = OmegaConf.to_yaml(OmegaConf.masked_copy(cfg, groups))
    return [
        "## Configuration",
        "",
        "```yaml",
        cfg_yaml.rstrip(),
        "```",
        "",
        "Full record of the composed config and overrides: `.hydra/`.",
        "",
    ]


def diagnostics_ran(cfg: DictConfig, summary: dict[str, Any]) -> bool:
    """Whether the automatic checks ran for this run."""
    conf = cfg.get("diagnostics")
    return bool(conf is not None and conf.get("enabled")) or "verdict" in summary


def render(
    run_dir: Path,
    cfg: DictConfig,
    summary: dict[str, Any],
    history: pd.DataFrame,
    report_table: pd.DataFrame | None,
    sections: list[str] | None = None,
) -> str:
    """The report text: verdict, outcome, key figures, diagnoses, curves, per-class table,
    the diagnostics' sections, config."""
    checked = diagnostics_ran(cfg, summary)
    out = [f"# Run report — {cfg.model.name} on {cfg.dataset.name}", ""]
    if cfg.get("notes"):
        out += [f"> {cfg.notes}", ""]
    out += render_verdict(summary, checked, run_dir)
    out += _outcome_lines(summary, checked)
    out += ["", "## Key figures", "", "| figure | value |", "|---|---|"]
    out += [f"| {k} | {_fmt(summary.get(k))} |" for k in KEY_FIGURES if k in summary]
    diagnoses = summary.get("diagnoses") or []
    out += ["", "## Diagnoses", "", *render_diagnoses(diagnoses, checked, run_dir), ""]
    out += _curves_lines(run_dir, summary, history)
    out += _per_class_lines(run_dir, report_table)
    out += sections or []
    out += _config_lines(cfg)
    return "\n".join(out)


def write_report(run_dir: Path, *args: Any, **kwargs: Any) -> Path:
    from runner.rundir import REPORT

    return write_text(run_dir / REPORT, render(run_dir, *args, **kwargs))

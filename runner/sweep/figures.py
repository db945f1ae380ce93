"""Sweep figures: validation curves of every job overlaid, and the effect of each key.

The numbers behind them are in each job's metrics.csv and in effects.csv.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from runner.io import save_figure
from runner.metrics import lower_is_better
from runner.plots import _plt

_STYLES = ["-", "--", "-.", ":"]
_MAX_LABEL = 70  # characters of a legend entry


def plot_sweep_curves(
    series: Sequence[tuple[str, list[pd.DataFrame]]], monitor: str, path: Path, noun: str = "job"
) -> Path:
    """Validation loss (left) and accuracy (right) per epoch, one line per job (``noun``:
    what the title calls one line, "job" of a sweep or "run").

    ``series``: (label, metrics frames) best first; several frames (seeds) are drawn as
    their mean with a ± std band. Colours follow the rank (best first) so that 2 or 30
    lines stay distinguishable; the legend sits below the axes in rank order.
    """
    plt = _plt()
    n = max(1, len(series))
    ncol = 1 if n <= 4 else min(4, math.ceil(n / 8))
    legend_rows = math.ceil(n / ncol)
    fontsize = 9 if n <= 10 else 7.5
    legend_height = legend_rows * fontsize * 1.6 / 72 + 0.3  # inches
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.4 + legend_height))
    many_epochs = _draw_series(axes, series, _colors(n, plt), n)
    _finish_axes(axes, many_epochs)
    if not series:
        for ax in axes:
            ax.text(
                0.5, 0.5, "no job has metrics yet", ha="center", va="center", transform=ax.transAxes
            )
    fig.suptitle(_curves_title(series, monitor, noun))
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(
            handles,
            labels,
            loc="lower center",
            ncol=ncol,
            fontsize=fontsize,
            frameon=False,
            bbox_to_anchor=(0.5, 0.0),
        )
    fig.tight_layout(rect=(0, legend_height / fig.get_figheight(), 1, 0.95))
    save_figure(path, fig)
    plt.close(fig)
    return path


def _draw_series(axes, series: Sequence[tuple[str, list[pd.DataFrame]]], colors, n: int) -> bool:
    """One line per job (mean ± std band over seeds) on the loss and accuracy axes; returns
    whether any job has more than 25 epochs (then no markers)."""
    many_epochs = False
    for i, (label, frames) in enumerate(series):
        style = dict(
            color=colors[i],
            ls=_STYLES[(i // 10) % len(_STYLES)] if n > 10 else "-",
            lw=2.4 if i == 0 else 1.4,
            alpha=1.0 if i < 10 else 0.85,
        )
        for ax, column in ((axes[0], "val_loss"), (axes[1], "val_acc")):
            epochs, mean, std = _mean_curve(frames, column)
            if epochs is None:
                continue
            many_epochs = many_epochs or len(epochs) > 25
            marker = "o" if len(epochs) <= 25 else None
            label_here = _clip(label) if ax is axes[0] else None
            ax.plot(epochs, mean, marker=marker, ms=3, label=label_here, **style)
            if std is not None:
                ax.fill_between(epochs, mean - std, mean + std, color=colors[i], alpha=0.15, lw=0)
    return many_epochs


def _curves_title(
    series: Sequence[tuple[str, list[pd.DataFrame]]], monitor: str, noun: str = "job"
) -> str:
    direction = "lower" if lower_is_better(monitor) else "higher"
    runs = sum(len(frames) for _, frames in series)
    what = (
        f"{len(series)} {noun}s"
        if runs == len(series)
        else f"{len(series)} configurations ({runs} {noun}s, mean ± std over seeds or folds)"
    )
    return (
        f"validation curves of {what}; legend best first by best {monitor} ({direction} is better)"
    )


def plot_effects(
    effects: pd.DataFrame, metric: str, path: Path, key_noun: str = "swept key"
) -> Path:
    """Per swept key: mean ± std over runs (dot and bar) and the best configuration (diamond).

    One row of panels for the monitored metric and one for validation accuracy (when the
    monitor is not accuracy); at most 4 keys per row. A key with one value has no panel
    (there is nothing to compare). ``key_noun`` names the keys in the title ("swept key",
    or "differing key" for runs that are not one sweep).
    """
    plt = _plt()
    metrics = [m for m in dict.fromkeys([metric, "best_val_acc"]) if m in set(effects["metric"])]
    keys = panel_keys(effects)
    cols = max(1, min(4, len(keys)))
    key_rows = max(1, math.ceil(len(keys) / cols))
    rows = max(1, len(metrics)) * key_rows
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols + 0.6, 3.4 * rows), squeeze=False)
    for mi, m in enumerate(metrics):
        for ki, key in enumerate(keys):
            ax = axes[mi * key_rows + ki // cols][ki % cols]
            _effect_panel(ax, effects[(effects["metric"] == m) & (effects["key"] == key)], m, key)
    for ax in axes.flat:
        if not ax.has_data():
            ax.set_visible(False)
    if not metrics or not keys:
        ax = axes[0][0]
        ax.set_visible(True)
        ax.text(
            0.5,
            0.5,
            "no finished jobs to compare" if keys else f"no {key_noun} has two values",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
        ax.set_axis_off()
    fig.suptitle(
        f"effect of each {key_noun}: mean ± std over its runs (●) and its best configuration (◆)"
    )
    fig.tight_layout()
    save_figure(path, fig)
    plt.close(fig)
    return path


def panel_keys(effects: pd.DataFrame) -> list[str]:
    """The keys of effects.csv that get a panel: those with at least two values."""
    if effects.empty:
        return []
    values = effects.groupby("key", sort=False)["value"].nunique()
    return [k for k in dict.fromkeys(effects["key"]) if values[k] > 1]


def _effect_panel(ax, rows: pd.DataFrame, metric: str, key: str) -> None:
    x = np.arange(len(rows))
    mean = pd.to_numeric(rows["mean"], errors="coerce").to_numpy(dtype=float)
    std = pd.to_numeric(rows["std"], errors="coerce").fillna(0).to_numpy(dtype=float)
    best = pd.to_numeric(rows["best"], errors="coerce").to_numpy(dtype=float)
    ax.errorbar(
        x,
        mean,
        yerr=std,
        fmt="o",
        color="tab:blue",
        ecolor="tab:blue",
        capsize=5,
        label="mean ± std",
    )
    ax.scatter(x, best, marker="D", s=40, color="black", zorder=3, label="best")
    for xi, b, runs in zip(x, best, rows["runs"]):
        if b == b:
            ax.annotate(
                f"{b:.3f}", (xi, b), textcoords="offset points", xytext=(6, 4), fontsize=7.5
            )
        elif not runs:
            ax.text(
                xi,
                0.5,
                "no finished run",
                rotation=90,
                ha="center",
                va="center",
                fontsize=8,
                color="tab:red",
                transform=ax.get_xaxis_transform(),
            )
    labels = [f"{v}\nn={r}" for v, r in zip(rows["value"], rows["runs"])]
    rotate = len(labels) > 5 or any(len(str(v)) > 8 for v in rows["value"])
    ax.set_xticks(
        x, labels, rotation=30 if rotate else 0, ha="right" if rotate else "center", fontsize=8
    )
    ax.set_xlim(-0.6, len(rows) - 0.4)
    ax.margins(y=0.15)  # room for the value labels
    arrow = "lower is better" if lower_is_better(metric) else "higher is better"
    ax.set_ylabel(f"{metric} ({arrow})", fontsize=8.5)
    ax.set_title(key, fontsize=10)
    ax.grid(alpha=0.3, axis="y")


def _mean_curve(frames: Sequence[pd.DataFrame], column: str):
    usable = [f[["epoch", column]] for f in frames if column in f and "epoch" in f]
    if not usable:
        return None, None, None
    joined = pd.concat(usable).apply(pd.to_numeric, errors="coerce").dropna()
    if joined.empty:
        return None, None, None
    grouped = joined.groupby("epoch")[column]
    mean = grouped.mean()
    std = grouped.std(ddof=1) if len(usable) > 1 else None
    return mean.index.to_numpy(), mean.to_numpy(), None if std is None else std.fillna(0).to_numpy()


def _finish_axes(axes, many_epochs: bool) -> None:
    for ax, name in ((axes[0], "validation loss"), (axes[1], "validation accuracy")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.set_title(name)
        ax.grid(alpha=0.3)
        if not many_epochs:
            ax.xaxis.get_major_locator().set_params(integer=True)
    lines = [line.get_ydata() for line in axes[0].get_lines()]
    values = np.concatenate([np.asarray(v, dtype=float) for v in lines]) if lines else np.array([])
    finite = values[np.isfinite(values)]
    if finite.size and finite.min() > 0 and finite.max() / finite.min() > 100:
        axes[0].set_yscale("log")  # a diverged job must not flatten every other curve


def _colors(n: int, plt) -> list:
    if n <= 10:
        return [plt.get_cmap("tab10")(i) for i in range(n)]
    cmap = plt.get_cmap("turbo")
    return [cmap(0.05 + 0.9 * i / (n - 1)) for i in range(n)]


def _clip(label: str) -> str:
    return label if len(label) <= _MAX_LABEL else label[: _MAX_LABEL - 1] + "…"

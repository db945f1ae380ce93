"""Figures of the training diagnostics; each draws a table that is written as CSV beside it.

Layouts are fixed in inches and drawn once (:mod:`runner.plots` explains why): on 2 cores
that halves the cost of a figure.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from runner.plots import _plt, log_axis, margins, save_and_close, set_title

if TYPE_CHECKING:
    import pandas as pd

LABEL_FONT = 8
PHASE_WORDS = {"start": "start (before training)", "end": "end (evaluated weights)"}
MANY_LAYERS = 12  # above this, per-layer panels get the full figure width (stacked)
MIN_DEAD = 0.05  # dead-unit panels only when a ReLU layer has this share dead after training began


def _colours(plt, n: int) -> list:
    """Distinct, dark-enough line colours: tab10 up to 10 lines, else a truncated viridis."""
    if n <= 10:
        return [plt.get_cmap("tab10")(i) for i in range(n)]
    return [plt.get_cmap("viridis")(0.85 * i / max(n - 1, 1)) for i in range(n)]


def pick_layers(layers: list[str], limit: int) -> list[str]:
    """At most ``limit`` layers, evenly spaced, always the first and the last."""
    if limit <= 0 or len(layers) <= limit:
        return list(layers)
    idx = np.unique(np.round(np.linspace(0, len(layers) - 1, limit)).astype(int))
    return [layers[i] for i in idx]


def _label_inches(names: list[str]) -> float:
    """Height the layer names take below an axis (rotated by 60° when long), inches."""
    longest = max((len(n) for n in names), default=0)
    return 0.045 * longest + 0.15 if _rotated(names) else 0.25


def _rotated(names: list[str]) -> bool:
    return max((len(n) for n in names), default=0) * len(names) >= 60


def _panels(plt, names: list[str], count: int, per_layer: int, height: float = 4.2):
    """``count`` panels side by side, or stacked at full width when the first
    ``per_layer`` panels have a per-layer axis with many layers (readable tick labels)."""
    below = _label_inches(names) + 0.35  # tick labels and the axis label
    if len(names) <= MANY_LAYERS:
        fig, axes = plt.subplots(1, count, figsize=(5.2 * count, height + below), squeeze=False)
        margins(fig, left=0.8, bottom=below, top=0.45, wspace=0.3)
        return fig, list(axes[0])
    width = min(24.0, max(14.0, 0.32 * len(names)))
    gaps = [below + 0.45 if i < per_layer else 0.95 for i in range(count)]  # below each panel
    total = count * height + sum(gaps) + 0.45
    fig = plt.figure(figsize=(width, total))
    axes, top = [], total - 0.45
    for gap in gaps:
        bottom = top - height
        axes.append(fig.add_axes((0.9 / width, bottom / total, 1 - 1.15 / width, height / total)))
        top = bottom - gap
    return fig, axes


def _layer_axis(ax, names: list[str]) -> None:
    ax.set_xticks(range(len(names)))
    rotate = 60 if _rotated(names) else 0
    ax.set_xticklabels(
        names, rotation=rotate, ha="right" if rotate else "center", fontsize=LABEL_FONT
    )
    ax.set_xlim(-0.6, len(names) - 0.4)


def plot_gradient_flow(
    gradients: pd.DataFrame, steps_per_epoch: int, path: Path, max_layers: int = 12
) -> Path | None:
    """Left: median RMS gradient per weight of every layer, first vs last epoch (log scale).
    Right: the RMS gradient of the first, last and some middle layers over training."""
    g = gradients[np.isfinite(gradients["grad_rms"].astype(float))]
    if not len(g):
        return None
    plt = _plt()
    order = g.drop_duplicates("index").sort_values("index")["layer"].tolist()
    fig, axes = _panels(plt, order, 2, 1)
    ax = axes[0]
    epochs = sorted(g["epoch"].unique())
    shown = [epochs[0]] if len(epochs) == 1 else [epochs[0], epochs[-1]]
    by_epoch = g.groupby(["epoch", "layer"])["grad_rms"].median()
    for epoch, (marker, colour) in zip(shown, (("o-", "tab:orange"), ("s-", "tab:blue"))):
        med = by_epoch.loc[epoch].reindex(order).to_numpy(float)
        y = np.maximum(med, 1e-30)
        ax.plot(range(len(order)), y, marker, color=colour, ms=4, label=f"epoch {epoch}")
    log_axis(ax)
    _layer_axis(ax, order)
    ax.set_ylabel("median RMS gradient per weight (log)")
    set_title(ax, "gradient flow: input side (left) → output side (right)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    ax = axes[1]
    chosen = pick_layers(order, min(max_layers, 6))
    for name, colour in zip(chosen, _colours(plt, len(chosen))):
        part = g[g["layer"] == name]
        x = part["step"].to_numpy(float) / max(steps_per_epoch, 1)
        y = np.maximum(part["grad_rms"].to_numpy(float), 1e-30)
        style = "o-" if len(part) <= 30 else "-"
        ax.plot(x, y, style, ms=3, lw=1.2, color=colour, label=name)
    log_axis(ax)
    ax.set_xlabel("epoch")
    ax.set_ylabel("RMS gradient per weight (log)")
    set_title(ax, "first, middle and last layers over training")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=LABEL_FONT, title="layer (input → output)", title_fontsize=LABEL_FONT)
    return save_and_close(plt, fig, path)


def activation_panels(activations: pd.DataFrame) -> list[str]:
    """The panels :func:`plot_activations` draws for this table: ``dead`` (start vs end per
    layer) and ``dead_time`` when some ReLU layer has :data:`MIN_DEAD` dead units at an
    epoch after the first probe, ``saturation`` when there
    are bounded activations (sigmoid, tanh), and always ``spread`` (mean and std)."""
    from runner.diagnostics.probe import RELU_KINDS

    relu = activations[activations["kind"].isin(RELU_KINDS)]
    trained = relu[relu["epoch"] > relu["epoch"].min()] if len(relu) else relu
    dead = bool(len(trained)) and float(trained["dead_share"].max()) >= MIN_DEAD
    bounded = "saturated_share" in activations and activations["saturated_share"].notna().any()
    panels = ["dead"] if dead else []
    panels += ["saturation"] if bounded else []
    return [*panels, "spread", *(["dead_time"] if dead else [])]


def plot_activations(activations: pd.DataFrame, path: Path, max_layers: int = 12) -> Path | None:
    """The panels of :func:`activation_panels`: dead units per activation layer before
    training vs at the end and over the epochs, the saturated share of bounded activations,
    and the activation mean and spread at the end."""
    if not len(activations):
        return None
    activations = activations.drop_duplicates(["epoch", "layer"], keep="last")
    plt = _plt()
    layers = activations.drop_duplicates("layer")
    order, kinds = layers["layer"].tolist(), layers["kind"].tolist()
    same = len(set(kinds)) == 1  # one kind: say it once in the titles, not on every tick
    labels = order if same else [f"{n} ({k})" for n, k in zip(order, kinds)]
    first, last = activations["epoch"].min(), activations["epoch"].max()
    start = activations[activations["epoch"] == first].set_index("layer").reindex(order)
    end = activations[activations["epoch"] == last].set_index("layer").reindex(order)
    panels = activation_panels(activations)
    per_layer = len([p for p in panels if p != "dead_time"])
    fig, axes = _panels(plt, labels, len(panels), per_layer)
    axes = dict(zip(panels, axes))
    words = f" ({kinds[0]})" if same else ""
    if "dead" in axes:
        _dead_bars(axes["dead"], start, end, labels, (first, last), words)
        _dead_over_time(plt, axes["dead_time"], activations, order, max_layers)
    if "saturation" in axes:
        _start_end_bars(axes["saturation"], start, end, labels, "saturated_share", (first, last))
        axes["saturation"].set_ylabel("outputs within 2 % of a bound (%)")
        set_title(axes["saturation"], f"saturated outputs (gradient ≈ 0){words}")
    _spread(axes["spread"], end, labels, last)
    return save_and_close(plt, fig, path)


def _start_end_bars(ax, start, end, labels: list[str], column: str, epochs: tuple) -> list:
    x = np.arange(len(labels))
    bars = [
        ax.bar(x - 0.2, 100 * start[column], 0.4, color="0.65", label=f"epoch {epochs[0]} (start)"),
        ax.bar(x + 0.2, 100 * end[column], 0.4, color="tab:red", label=f"epoch {epochs[1]} (end)"),
    ]
    if len(labels) <= 16:  # numbers on the bars: a 0 % layer is visibly measured, not missing
        for container in bars:
            ax.bar_label(container, fmt="%.0f%%", fontsize=7, padding=1)
    _layer_axis(ax, labels)
    ax.set_ylim(0, 105)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=9)
    return bars


def _dead_bars(ax, start, end, labels: list[str], epochs: tuple, words: str) -> None:
    _start_end_bars(ax, start, end, labels, "dead_share", epochs)
    ax.set_ylabel("dead units (%): never positive on the probe images")
    set_title(ax, f"dead units per activation layer{words}")


def _dead_over_time(plt, ax, activations, order: list[str], max_layers: int) -> None:
    chosen = pick_layers(order, max_layers)
    for name, colour in zip(chosen, _colours(plt, len(chosen))):
        part = activations[activations["layer"] == name]
        y = 100 * part["dead_share"]
        ax.plot(part["epoch"], y, "o-", ms=3, lw=1.2, color=colour, label=name)
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax.set_xlabel("epoch (0 = before training)")
    ax.set_ylabel("dead units (%)")
    ax.set_ylim(-3, 103)
    set_title(ax, "dead units over training")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=LABEL_FONT, ncol=1 if len(chosen) <= 8 else 2)


def _spread(ax, end, labels: list[str], epoch: int) -> None:
    x = np.arange(len(labels))
    ax.plot(x, end["mean"], "o", color="tab:blue", label="mean")
    ax.plot(x, end["std"], "s", color="tab:orange", label="standard deviation")
    _layer_axis(ax, labels)
    ax.axhline(0, color="0.5", lw=0.8)
    ax.set_ylabel("activation value")
    set_title(ax, f"activation mean and spread at epoch {epoch}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)


def histogram_table(
    samples: dict[str, dict[str, np.ndarray]], bins: int, phases: tuple[str, ...]
) -> pd.DataFrame:
    """Histograms on common bin edges per layer: layer, phase, bin_left, bin_right, count."""
    import pandas as pd

    cols = ["layer", "phase", "bin_left", "bin_right", "count"]
    parts: dict[str, list] = {c: [] for c in cols}
    for layer, by_phase in samples.items():
        values = [by_phase[p] for p in phases if p in by_phase and by_phase[p].size]
        if not values:
            continue
        lo = min(float(v.min()) for v in values)
        hi = max(float(v.max()) for v in values)
        if not np.isfinite(lo) or not np.isfinite(hi):
            continue
        edges = np.linspace(lo, hi if hi > lo else lo + 1e-6, bins + 1)
        for phase in phases:
            if phase not in by_phase:
                continue
            counts, _ = np.histogram(by_phase[phase], edges)
            parts["layer"] += [layer] * bins
            parts["phase"] += [phase] * bins
            parts["bin_left"].append(edges[:-1])
            parts["bin_right"].append(edges[1:])
            parts["count"].append(counts)
    if not parts["layer"]:
        return pd.DataFrame(columns=cols)
    for c in ("bin_left", "bin_right", "count"):
        parts[c] = np.concatenate(parts[c])
    return pd.DataFrame(parts, columns=cols)


def plot_histograms(
    table: pd.DataFrame,
    path: Path,
    title: str,
    xlabel: str,
    max_layers: int = 12,
    log: bool = False,
    relative: bool = False,
) -> Path | None:
    """One row per layer (input side at the top), each phase's histogram (start grey, end
    blue) scaled to the row's height — log-scaled counts when ``log`` — drawn on one axes.

    relative: x in units of each layer's standard deviation at the start (weights of
    different layers differ by orders of magnitude; the row label gives that std).
    """
    if not len(table):
        return None
    plt = _plt()
    layers = pick_layers(table.drop_duplicates("layer")["layer"].tolist(), max_layers)
    fig, ax = plt.subplots(figsize=(9.5, 0.62 * len(layers) + 1.4))
    longest = max(len(n) for n in layers) + (14 if relative else 0)
    margins(fig, left=0.2 + 0.065 * longest, right=0.25, bottom=0.6, top=0.65)
    colours = {"start": "0.45", "end": "tab:blue"}
    groups = dict(tuple(table.groupby("layer", sort=False)))
    labels = []
    for row, layer in enumerate(layers):
        base = len(layers) - 1 - row
        part = groups[layer]
        unit = _start_std(part) if relative else 1.0
        labels.append(f"{layer} (std {unit:.2g})" if relative else layer)
        counts = part["count"].to_numpy(float)
        top = float(np.log1p(counts).max() if log else counts.max()) or 1.0
        for phase, hist in part.groupby("phase", sort=False):
            edges = np.append(hist["bin_left"].to_numpy(float), hist["bin_right"].iloc[-1]) / unit
            height = hist["count"].to_numpy(float)
            height = 0.9 * (np.log1p(height) if log else height) / top
            colour = colours.get(phase, "tab:blue")
            label = PHASE_WORDS.get(phase, phase) if row == 0 else None
            ax.stairs(base + height, edges, baseline=base, fill=True, alpha=0.3, color=colour)
            ax.stairs(base + height, edges, baseline=base, color=colour, lw=1.1, label=label)
    ax.set_yticks(range(len(layers)), labels[::-1], fontsize=LABEL_FONT)
    ax.set_ylim(-0.15, len(layers))
    ax.set_xlabel(xlabel)
    ax.grid(alpha=0.3, axis="x")
    ax.legend(fontsize=LABEL_FONT, loc="upper right")
    set_title(ax, title + (" — log counts" if log else ""), fontsize=10)
    return save_and_close(plt, fig, path)


def _start_std(part: pd.DataFrame) -> float:
    """Standard deviation of the start phase's histogram (bin centres weighted by counts)."""
    start = part[part["phase"] == "start"]
    if not len(start) or not start["count"].sum():
        start = part
    centres = (start["bin_left"].to_numpy(float) + start["bin_right"].to_numpy(float)) / 2
    weights = start["count"].to_numpy(float)
    mean = np.average(centres, weights=weights)
    std = float(np.sqrt(np.average((centres - mean) ** 2, weights=weights)))
    return std if std > 0 else 1.0


def plot_steps(steps: pd.DataFrame, steps_per_epoch: int, path: Path) -> Path | None:
    """Training loss of every step (with its per-epoch mean) above the learning rate."""
    if not len(steps):
        return None
    plt = _plt()
    ratios = {"height_ratios": [1.6, 1], "hspace": 0.12}
    fig, axes = plt.subplots(2, 1, figsize=(10, 6.0), sharex=True, gridspec_kw=ratios)
    margins(fig, left=0.9, bottom=0.55, top=0.4, hspace=0.12)
    x = steps["step"].to_numpy(float) / max(steps_per_epoch, 1)
    loss = steps["loss"].to_numpy(float)
    ax = axes[0]
    ax.plot(x, loss, lw=0.7, color="tab:blue", alpha=0.5, label="loss of each step")
    means = steps.groupby("epoch")["loss"].mean()
    mid = means.index.to_numpy(float) - 0.5
    ax.plot(
        mid, means.to_numpy(float), "o-", color="tab:blue", ms=3, label="epoch mean (mid-epoch)"
    )
    finite = loss[np.isfinite(loss)]
    if finite.size and finite.min() > 0 and finite.max() / finite.min() > 30:
        log_axis(ax)
    ax.set_ylabel("training loss")
    set_title(ax, "training loss and learning rate per optimizer step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    ax = axes[1]
    ax.plot(x, steps["lr"], color="tab:green", lw=1.3, drawstyle="steps-post")
    ax.set_ylabel("learning rate")
    ax.set_xlabel("epoch")
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    ax.grid(alpha=0.3)
    return save_and_close(plt, fig, path)

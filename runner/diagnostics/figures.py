"""Figures of the training diagnostics; each draws a table that is written as CSV beside it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from runner.io import save_figure
from runner.plots import _plt

LABEL_FONT = 8
PHASE_WORDS = {"start": "start (before training)", "end": "end (evaluated weights)"}


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


MANY_LAYERS = 12  # above this, per-layer panels get the full figure width (stacked)


def _panels(plt, n_layers: int, count: int, per_layer: int, height: float = 5.2):
    """``count`` panels side by side, or stacked at full width when the first
    ``per_layer`` panels have a per-layer axis with many layers (readable tick labels)."""
    if n_layers <= MANY_LAYERS:
        fig, axes = plt.subplots(1, count, figsize=(5.4 * count, height))
        return fig, list(np.atleast_1d(axes))
    width = min(24.0, max(14.0, 0.32 * n_layers))
    ratios = [1.25] * per_layer + [1.0] * (count - per_layer)
    fig, axes = plt.subplots(
        count, 1, figsize=(width, 4.2 * count + 0.8), gridspec_kw={"height_ratios": ratios}
    )
    return fig, list(np.atleast_1d(axes))


def _layer_axis(ax, names: list[str]) -> None:
    ax.set_xticks(range(len(names)))
    rotate = 0 if max((len(n) for n in names), default=0) * len(names) < 60 else 60
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
    fig, axes = _panels(plt, len(order), 2, 1)
    ax = axes[0]
    epochs = sorted(g["epoch"].unique())
    shown = [epochs[0]] if len(epochs) == 1 else [epochs[0], epochs[-1]]
    for epoch, style in zip(shown, (("o-", "tab:orange"), ("s-", "tab:blue"))):
        med = g[g["epoch"] == epoch].groupby("layer")["grad_rms"].median().reindex(order)
        ax.plot(
            range(len(order)),
            np.maximum(med.to_numpy(float), 1e-30),
            style[0],
            color=style[1],
            ms=4,
            label=f"epoch {epoch}",
        )
    ax.set_yscale("log")
    _layer_axis(ax, order)
    ax.set_ylabel("median RMS gradient per weight (log)")
    ax.set_title("gradient flow: input side (left) → output side (right)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=9)
    ax = axes[1]
    chosen = pick_layers(order, min(max_layers, 6))
    for name, colour in zip(chosen, _colours(plt, len(chosen))):
        part = g[g["layer"] == name]
        x = part["step"].to_numpy(float) / max(steps_per_epoch, 1)
        ax.plot(
            x,
            np.maximum(part["grad_rms"].to_numpy(float), 1e-30),
            "o-" if len(part) <= 30 else "-",
            ms=3,
            lw=1.2,
            color=colour,
            label=name,
        )
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("RMS gradient per weight (log)")
    ax.set_title("first, middle and last layers over training")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=LABEL_FONT, title="layer (input → output)", title_fontsize=LABEL_FONT)
    fig.tight_layout()
    save_figure(path, fig)
    plt.close(fig)
    return path


def plot_activations(activations: pd.DataFrame, path: Path, max_layers: int = 12) -> Path | None:
    """Left: share of dead units per activation layer before training vs at the end.
    Middle: activation mean ± std per layer at the end. Right: dead share over epochs."""
    if not len(activations):
        return None
    activations = activations.drop_duplicates(["epoch", "layer"], keep="last")
    plt = _plt()
    order = activations.drop_duplicates("layer")["layer"].tolist()
    kinds = activations.drop_duplicates("layer")["kind"].tolist()
    same = len(set(kinds)) == 1  # one kind: say it once in the titles, not on every tick
    labels = order if same else [f"{n} ({k})" for n, k in zip(order, kinds)]
    kind_words = f" ({kinds[0]})" if same else ""
    first, last = activations["epoch"].min(), activations["epoch"].max()
    start = activations[activations["epoch"] == first].set_index("layer").reindex(order)
    end = activations[activations["epoch"] == last].set_index("layer").reindex(order)
    fig, axes = _panels(plt, len(order), 3, 2)
    x = np.arange(len(order))
    width = 0.4
    ax = axes[0]
    bars = [
        ax.bar(
            x - width / 2,
            100 * start["dead_share"],
            width,
            color="0.65",
            label=f"epoch {first} (start)",
        ),
        ax.bar(
            x + width / 2,
            100 * end["dead_share"],
            width,
            color="tab:red",
            label=f"epoch {last} (end)",
        ),
    ]
    if len(order) <= 16:  # numbers on the bars: a 0 % layer is visibly measured, not missing
        for container in bars:
            ax.bar_label(container, fmt="%.0f%%", fontsize=7, padding=1)
    _layer_axis(ax, labels)
    ax.set_ylim(0, 105)
    ax.set_ylabel("dead units (%): never positive on the probe images")
    ax.set_title(f"dead units per activation layer{kind_words}")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=9)
    ax = axes[1]
    ax.plot(x, end["mean"], "o", color="tab:blue", label="mean")
    ax.plot(x, end["std"], "s", color="tab:orange", label="standard deviation")
    _layer_axis(ax, labels)
    ax.axhline(0, color="0.5", lw=0.8)
    ax.set_ylabel("activation value")
    ax.set_title(f"activation mean and spread at epoch {last}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    ax = axes[2]
    chosen = pick_layers(order, max_layers)
    for name, colour in zip(chosen, _colours(plt, len(chosen))):
        part = activations[activations["layer"] == name]
        ax.plot(
            part["epoch"], 100 * part["dead_share"], "o-", ms=3, lw=1.2, color=colour, label=name
        )
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax.set_xlabel("epoch (0 = before training)")
    ax.set_ylabel("dead units (%)")
    ax.set_ylim(-3, 103)
    ax.set_title("dead units over training")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=LABEL_FONT, ncol=1 if len(chosen) <= 8 else 2)
    fig.tight_layout()
    save_figure(path, fig)
    plt.close(fig)
    return path


def histogram_table(
    samples: dict[str, dict[str, np.ndarray]], bins: int, phases: tuple[str, ...]
) -> pd.DataFrame:
    """Histograms on common bin edges per layer: layer, phase, bin_left, bin_right, count."""
    rows = []
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
            rows.append(
                pd.DataFrame(
                    {
                        "layer": layer,
                        "phase": phase,
                        "bin_left": edges[:-1],
                        "bin_right": edges[1:],
                        "count": counts,
                    }
                )
            )
    cols = ["layer", "phase", "bin_left", "bin_right", "count"]
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=cols)


def plot_histograms(
    table: pd.DataFrame,
    path: Path,
    title: str,
    xlabel: str,
    max_layers: int = 12,
    log: bool = False,
) -> Path | None:
    """A grid with one histogram per layer; each phase (e.g. start/end) one colour."""
    if not len(table):
        return None
    plt = _plt()
    layers = pick_layers(table.drop_duplicates("layer")["layer"].tolist(), max_layers)
    cols = min(4, len(layers))
    rows = -(-len(layers) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.8 * rows + 0.6), squeeze=False)
    colours = {"start": "0.55", "end": "tab:blue"}
    for ax in axes.ravel()[len(layers) :]:
        ax.axis("off")
    for ax, layer in zip(axes.ravel(), layers):
        part = table[table["layer"] == layer]
        for phase, hist in part.groupby("phase", sort=False):
            edges = np.append(hist["bin_left"].to_numpy(float), hist["bin_right"].iloc[-1])
            counts = hist["count"].to_numpy(float)
            colour = colours.get(phase, "tab:blue")
            ax.stairs(counts, edges, fill=True, alpha=0.35, color=colour)
            ax.stairs(counts, edges, color=colour, lw=1.2, label=PHASE_WORDS.get(phase, phase))
        if log:
            ax.set_yscale("log")
            ax.set_ylim(bottom=0.8)
        ax.set_title(layer, fontsize=9)
        ax.tick_params(labelsize=LABEL_FONT)
        ax.set_xlabel(xlabel, fontsize=LABEL_FONT)
    axes.ravel()[0].legend(fontsize=LABEL_FONT)
    axes.ravel()[0].set_ylabel("count (log)" if log else "count", fontsize=LABEL_FONT)
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(path, fig)
    plt.close(fig)
    return path


def plot_steps(steps: pd.DataFrame, steps_per_epoch: int, path: Path) -> Path | None:
    """Training loss of every step (with its per-epoch mean) above the learning rate."""
    if not len(steps):
        return None
    plt = _plt()
    fig, axes = plt.subplots(
        2, 1, figsize=(10, 6.2), sharex=True, gridspec_kw={"height_ratios": [1.6, 1]}
    )
    x = steps["step"].to_numpy(float) / max(steps_per_epoch, 1)
    loss = steps["loss"].to_numpy(float)
    ax = axes[0]
    ax.plot(x, loss, lw=0.7, color="tab:blue", alpha=0.5, label="loss of each step")
    means = steps.groupby("epoch")["loss"].mean()
    ax.plot(
        means.index.to_numpy(float) - 0.5,
        means.to_numpy(float),
        "o-",
        color="tab:blue",
        ms=3,
        label="epoch mean (mid-epoch)",
    )
    finite = loss[np.isfinite(loss)]
    if finite.size and finite.min() > 0 and finite.max() / finite.min() > 30:
        ax.set_yscale("log")
    ax.set_ylabel("training loss")
    ax.set_title("training loss and learning rate per optimizer step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    ax = axes[1]
    ax.plot(x, steps["lr"], color="tab:green", lw=1.3, drawstyle="steps-post")
    ax.set_ylabel("learning rate")
    ax.set_xlabel("epoch")
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(path, fig)
    plt.close(fig)
    return path

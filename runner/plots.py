"""Figures of one run. Every figure's numbers are also in a CSV next to it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from runner.io import save_figure


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(history: pd.DataFrame, best_epoch: int, path: Path, title: str = "") -> Path:
    """Loss and accuracy per epoch, train vs validation, best epoch marked."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, metric, label in ((axes[0], "loss", "loss"), (axes[1], "acc", "accuracy")):
        ax.plot(history["epoch"], history[f"train_{metric}"], "o-", ms=3, label="train")
        ax.plot(history["epoch"], history[f"val_{metric}"], "s-", ms=3, label="validation")
        if best_epoch:
            ax.axvline(best_epoch, color="grey", ls="--", lw=1, label=f"best epoch ({best_epoch})")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
        if len(history) <= 20:
            ax.set_xticks(history["epoch"])
    losses = history[["train_loss", "val_loss"]].to_numpy(dtype=float)
    finite = losses[np.isfinite(losses)]
    if finite.size and finite.min() > 0 and finite.max() / finite.min() > 100:
        axes[0].set_yscale("log")  # losses near zero stay readable
    axes[0].set_title("loss")
    axes[1].set_title("accuracy")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save_figure(path, fig)
    plt.close(fig)
    return path


def plot_confusion(confusion: pd.DataFrame, path: Path, title: str = "test split") -> Path:
    """Counts (left) and row-normalised recall per true class (right)."""
    plt = _plt()
    counts = confusion.to_numpy()
    rows = counts.sum(1, keepdims=True)
    norm = np.divide(counts, rows, out=np.zeros_like(counts, dtype=float), where=rows > 0)
    k = len(confusion)
    side = min(14, 3 + 0.45 * k)
    fig, axes = plt.subplots(1, 2, figsize=(2 * side + 1, side))
    labels = [str(c) for c in confusion.columns]
    for ax, data, fmt, name in (
        (axes[0], counts, "d", "counts"),
        (axes[1], norm, ".2f", "row-normalised (recall)"),
    ):
        im = ax.imshow(data, cmap="Blues", vmin=0)
        ax.set_xticks(range(k), labels, rotation=45, ha="right")
        ax.set_yticks(range(k), labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{title}: {name}")
        if k <= 25:
            hi = data.max() if data.size else 0
            for i in range(k):
                for j in range(k):
                    if data[i, j] == 0:
                        continue  # blank zeros keep the errors visible
                    color = "white" if data[i, j] > hi * 0.6 else "black"
                    ax.text(
                        j,
                        i,
                        format(data[i, j], fmt),
                        ha="center",
                        va="center",
                        color=color,
                        fontsize=8,
                    )
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    save_figure(path, fig)
    plt.close(fig)
    return path

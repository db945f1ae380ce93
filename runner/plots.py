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


def image_for_display(image: np.ndarray) -> tuple[np.ndarray, str | None]:
    """A (C, H, W) image as something ``imshow`` draws, and the colour map it needs.

    1 channel → grey; 3 → RGB; any other count → the first channel in grey. uint8 stays
    uint8; floats are scaled to [0, 1] by their own range.
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[None]
    shown = image.transpose(1, 2, 0) if image.shape[0] == 3 else image[0]
    if shown.dtype != np.uint8:
        lo, hi = float(shown.min()), float(shown.max())
        shown = (shown - lo) / (hi - lo) if hi > lo else np.zeros_like(shown, dtype=float)
    return shown, (None if shown.ndim == 3 else "gray")


def plot_roc(roc: pd.DataFrame, path: Path, title: str = "test split") -> Path:
    """One-vs-rest ROC curve per class (AUC in the legend) and the micro average, dashed;
    the right panel zooms into the top-left corner, where good classifiers' curves crowd.

    With more than 12 classes only the 6 lowest-AUC classes are named and coloured; the rest
    are drawn in light grey, so the weak classes stand out.
    """
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(13, 6))
    per_class = roc[roc["class"] != "micro avg"]
    aucs = per_class.groupby("class", sort=False)["auc"].first().sort_values()
    named = list(aucs.index[:6]) if len(aucs) > 12 else list(aucs.index)
    cmap = plt.get_cmap("tab10" if len(named) <= 10 else "tab20")
    micro = roc[roc["class"] == "micro avg"]
    zoom_x = 0.2
    low = 1.0
    for ax in axes:
        for name in aucs.index:  # weakest class first in the legend
            part = per_class[per_class["class"] == name]
            if name in named:
                colour = cmap(named.index(name) % cmap.N)
                label = f"{_short(name)} (AUC {aucs[name]:.3f})"
                ax.plot(part["fpr"], part["tpr"], lw=1.6, color=colour, label=label)
                low = min(low, float(np.interp(zoom_x, part["fpr"], part["tpr"])))
            else:
                ax.plot(part["fpr"], part["tpr"], lw=0.8, color="0.8")
        if len(micro):
            label = f"micro average (AUC {micro['auc'].iloc[0]:.3f})"
            ax.plot(micro["fpr"], micro["tpr"], "k--", lw=1.4, label=label)
        ax.plot([0, 1], [0, 1], color="0.6", ls=":", lw=1, label="chance (AUC 0.5)")
        ax.set_xlabel("false positive rate (1 − specificity)")
        ax.set_ylabel("true positive rate (recall)")
        ax.grid(alpha=0.3)
    axes[0].set_xlim(-0.01, 1.01)
    axes[0].set_ylim(-0.01, 1.01)
    axes[0].set_title(f"{title}: one-vs-rest ROC curves")
    axes[0].legend(loc="lower right", fontsize=8 if len(named) > 6 else 9)
    bottom = max(0.0, low - 0.05)
    axes[1].set_xlim(-0.002, zoom_x)
    axes[1].set_ylim(bottom, 1.0 + (1.0 - bottom) * 0.02)
    axes[1].set_title(f"zoom: false positive rate ≤ {zoom_x}")
    fig.tight_layout()
    save_figure(path, fig)
    plt.close(fig)
    return path


def plot_misclassified(
    images: list[np.ndarray], errors: pd.DataFrame, path: Path, title: str = ""
) -> Path:
    """A grid of wrongly classified images, each titled with its true and predicted class
    and the predicted-class probability; ``errors`` rows match ``images``."""
    plt = _plt()
    n = len(images)
    cols = min(8, max(1, n))
    rows = max(1, -(-n // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols, 2.25 * rows + 0.5), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image, (_, row) in zip(axes.ravel(), images, errors.iterrows()):
        shown, cmap = image_for_display(image)
        ax.imshow(shown, cmap=cmap, interpolation="nearest")
        ax.set_title(
            f"true: {_short(row['true'])}\npred: {_short(row['pred'])} ({row['confidence']:.2f})",
            fontsize=8.5,
            color="firebrick",
        )
    fig.suptitle(title or "most confident mistakes (probability of the predicted class)")
    fig.tight_layout()
    save_figure(path, fig)
    plt.close(fig)
    return path


def _short(label: object, width: int = 16) -> str:
    text = str(label)
    return text if len(text) <= width else text[: width - 1] + "…"

"""Figures of one run. Every figure's numbers are also in a CSV next to it.

matplotlib is imported on first use (after training). Drawing is kept to one pass, because
text layout dominates a figure's cost on 2 cores: margins are fixed in inches
(:func:`margins`) instead of ``tight_layout`` or a tight bounding box (each lays every text
out once more), titles sit at a fixed height (:func:`set_title`; matplotlib otherwise measures
the tick labels to place each one), and log axes have no minor ticks and no mathtext labels
(:func:`log_axis`; the mathtext parser alone costs half a second to set up).
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from runner.io import save_figure

if TYPE_CHECKING:
    import pandas as pd

ZOOM_MEDIAN_AUC = 0.95  # ROC figures get a zoom into the top-left corner from this median AUC


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_and_close(plt: Any, fig: Any, path: Path) -> Path:
    """Save ``fig`` to ``path`` (atomically, as laid out) and free it."""
    # zlib level 1: a third of the PNG encoding time of the default level 6 for files
    # about 1.3× larger (figures are mostly flat colour)
    save_figure(path, fig, bbox_inches=None, pil_kwargs={"compress_level": 1})
    plt.close(fig)
    return path


def margins(
    fig: Any,
    left: float = 0.8,
    right: float = 0.2,
    bottom: float = 0.6,
    top: float = 0.45,
    **spacing: float,
) -> None:
    """Subplot margins in inches (converted to the figure's fractions); ``spacing``:
    ``wspace`` / ``hspace`` as in ``subplots_adjust``."""
    w, h = fig.get_size_inches()
    fig.subplots_adjust(
        left=min(left / w, 0.45),
        right=1 - min(right / w, 0.45),
        bottom=min(bottom / h, 0.45),
        top=1 - min(top / h, 0.45),
        **spacing,
    )


def set_title(ax: Any, text: str, **kwargs: Any) -> None:
    """An axes title at a fixed height above the axes."""
    ax.set_title(text, y=1.0, pad=kwargs.pop("pad", 6), **kwargs)


def log_axis(ax: Any, axis: str = "y") -> None:
    """A log-scaled axis with major ticks only, labelled like ``0.001`` / ``1e-05``."""
    from matplotlib import ticker

    getattr(ax, f"set_{axis}scale")("log")
    scale = getattr(ax, f"{axis}axis")
    scale.set_minor_locator(ticker.NullLocator())
    scale.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))


def plot_curves(history: pd.DataFrame, best_epoch: int, path: Path, title: str = "") -> Path:
    """Loss and accuracy per epoch, train vs validation, best epoch marked."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    margins(fig, top=0.75 if title else 0.4, wspace=0.22)
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
        log_axis(axes[0])  # losses near zero stay readable
    set_title(axes[0], "loss")
    set_title(axes[1], "accuracy")
    if title:
        fig.suptitle(title, y=1 - 0.12 / fig.get_figheight(), va="top")
    return save_and_close(plt, fig, path)


def plot_confusion(confusion: pd.DataFrame, path: Path, title: str = "test split") -> Path:
    """Counts, each cell coloured by its share of the true class's row (recall on the
    diagonal); empty cells are zeros."""
    plt = _plt()
    counts = confusion.to_numpy()
    rows = counts.sum(1, keepdims=True)
    norm = np.divide(counts, rows, out=np.zeros_like(counts, dtype=float), where=rows > 0)
    k = len(confusion)
    labels = [str(c) for c in confusion.columns]
    longest = max(map(len, labels), default=1)
    label_in = 0.3 + 0.075 * min(longest, 30)  # room for the class names, inches
    side = min(14.0, 2.2 + 0.42 * k)
    fig, ax = plt.subplots(figsize=(side + label_in + 1.6, side + label_in + 0.5))
    margins(fig, left=label_in + 0.45, right=1.5, bottom=label_in + 0.4, top=0.45)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    rotate = longest > 2
    ax.set_xticks(
        range(k), labels, rotation=45 if rotate else 0, ha="right" if rotate else "center"
    )
    ax.set_yticks(range(k), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    set_title(ax, f"{title}: counts, coloured by share of the true class")
    if k <= 25:
        for i, j in zip(*np.nonzero(counts)):  # blank zeros keep the errors visible
            colour = "white" if norm[i, j] > 0.6 else "black"
            ax.text(j, i, str(counts[i, j]), ha="center", va="center", color=colour, fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the true class (recall)")
    return save_and_close(plt, fig, path)


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
    when the median AUC is at least :data:`ZOOM_MEDIAN_AUC` a second panel zooms into the
    top-left corner, where good classifiers' curves crowd.

    With more than 12 classes only the 6 lowest-AUC classes are named and coloured; the rest
    are drawn in light grey, so the weak classes stand out.
    """
    plt = _plt()
    per_class = roc[roc["class"] != "micro avg"]
    aucs = per_class.groupby("class", sort=False)["auc"].first().sort_values()
    zoom = float(aucs.median()) >= ZOOM_MEDIAN_AUC
    fig, axes = plt.subplots(1, 2 if zoom else 1, figsize=(13 if zoom else 6.8, 6), squeeze=False)
    axes = list(axes[0])
    margins(fig, bottom=0.65, wspace=0.2)
    named = list(aucs.index[:6]) if len(aucs) > 12 else list(aucs.index)
    low = _draw_roc(plt, axes, roc, aucs, named, 0.2)
    axes[0].set_xlim(-0.01, 1.01)
    axes[0].set_ylim(-0.01, 1.01)
    set_title(axes[0], f"{title}: one-vs-rest ROC curves")
    axes[0].legend(loc="lower right", fontsize=8 if len(named) > 6 else 9)
    if zoom:
        bottom = max(0.0, low - 0.05)
        axes[1].set_xlim(-0.002, 0.2)
        axes[1].set_ylim(bottom, 1.0 + (1.0 - bottom) * 0.02)
        set_title(axes[1], "zoom: false positive rate ≤ 0.2")
    return save_and_close(plt, fig, path)


def _draw_roc(plt, axes: list, roc, aucs, named: list, zoom_x: float) -> float:
    """The curves on every axis; returns the lowest true-positive rate of a named curve at
    ``zoom_x`` (the zoom panel's bottom)."""
    per_class = roc[roc["class"] != "micro avg"]
    micro = roc[roc["class"] == "micro avg"]
    cmap = plt.get_cmap("tab10" if len(named) <= 10 else "tab20")
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
    return low


def to_rgb(image: np.ndarray, cmap: str | None = None) -> np.ndarray:
    """Float RGB in [0, 1] of: a uint8 grey (H, W) or colour (H, W, 3) image as it is; a
    float (H, W) map scaled to its own range, through ``cmap`` (grey when None)."""
    array = np.asarray(image)
    if array.dtype == np.uint8:
        array = array.astype(np.float64) / 255.0
        return array if array.ndim == 3 else np.repeat(array[..., None], 3, axis=2)
    array = array.astype(np.float64)
    if array.ndim == 3:
        return np.clip(array, 0.0, 1.0)
    lo, hi = float(np.nanmin(array)), float(np.nanmax(array))
    scaled = (array - lo) / (hi - lo) if hi > lo else np.zeros_like(array)
    if cmap is None:
        return np.repeat(scaled[..., None], 3, axis=2)
    return _plt().get_cmap(cmap)(scaled)[..., :3]


@dataclass
class Tile:
    """One picture of a :func:`plot_tiles` grid: RGB pixels, a caption and its colour."""

    rgb: np.ndarray
    caption: str = ""
    colour: str = "black"


def plot_tiles(
    rows: list[list[Tile]], path: Path, title: str, tile_inches: float = 1.7, lines: int = 2
) -> Path:
    """Pictures on a grid drawn as one image (one axes, one ``imshow``: a figure of 16
    pictures costs what one costs), each with a caption of up to ``lines`` lines above it.
    Tiles are upscaled to a common size (nearest neighbour)."""
    plt = _plt()
    cols = max(len(r) for r in rows)
    side = max(max(t.rgb.shape[0], t.rgb.shape[1]) for r in rows for t in r)
    scale = max(1, int(np.ceil(48 / side)))  # tiny images (8×8 digits) get whole pixels
    size = side * scale
    gap, band = max(2, size // 12), int(size * 0.16 * (lines + 0.5))
    pad = gap  # left and right, so edge captions wider than a tile stay inside
    canvas = np.ones((len(rows) * (size + band + gap), cols * (size + gap) - gap + 2 * pad, 3))
    spots = []
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            pixels = np.kron(tile.rgb, np.ones((scale, scale, 1)))[:size, :size]
            top, left = r * (size + band + gap) + band, pad + c * (size + gap)
            canvas[top : top + pixels.shape[0], left : left + pixels.shape[1]] = pixels
            spots.append((left + size / 2, top - 2, tile))
    height_in = tile_inches * canvas.shape[0] / size
    width_in = tile_inches * canvas.shape[1] / size
    title = "\n".join(textwrap.wrap(title, width=max(30, int(max(width_in, 4.0) * 11))))
    head = 0.2 + 0.19 * (title.count("\n") + 1)  # the title band, inches
    fig = plt.figure(figsize=(max(width_in, 4.0), height_in + head))
    ax = fig.add_axes((0, 0, 1, height_in / (height_in + head)))
    ax.imshow(canvas, interpolation="nearest", aspect="equal")
    font = max(6.5, min(9.0, 5.2 * tile_inches))
    for x, y, tile in spots:
        ax.text(x, y, tile.caption, ha="center", va="bottom", fontsize=font, color=tile.colour)
    ax.set_axis_off()
    fig.suptitle(title, y=1 - 0.08 / fig.get_figheight(), va="top", fontsize=10)
    return save_and_close(plt, fig, path)


def plot_misclassified(
    images: list[np.ndarray], errors: pd.DataFrame, path: Path, title: str = ""
) -> Path:
    """A grid of wrongly classified images, each titled with its true and predicted class
    and the predicted-class probability; ``errors`` rows match ``images``."""
    tiles = []
    for image, (_, row) in zip(images, errors.iterrows()):
        shown, _ = image_for_display(image)
        caption = (
            f"true: {_short(row['true'])}\npred: {_short(row['pred'])} ({row['confidence']:.2f})"
        )
        tiles.append(Tile(to_rgb(shown), caption, "firebrick"))
    cols = min(8, max(1, len(tiles)))
    grid = [tiles[i : i + cols] for i in range(0, len(tiles), cols)]
    title = title or "most confident mistakes (probability of the predicted class)"
    return plot_tiles(grid, path, title)


def _short(label: object, width: int = 16) -> str:
    text = str(label)
    return text if len(text) <= width else text[: width - 1] + "…"

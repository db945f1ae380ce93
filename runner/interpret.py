"""Interpretability figures for a few fixed test images (SEEDS.md S1, S3).

- feature maps of every conv stage (forward hooks; no extra dependency);
- vanilla-gradient saliency and Grad-CAM through captum (``captum.attr.Saliency``,
  ``captum.attr.LayerGradCam``), on the deepest stage the model registry names.

Images: for each class one correctly and one wrongly classified test image where available
(classes with a mistake first), capped at ``images``.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from runner.io import save_figure, write_csv
from runner.plots import _plt, _short, image_for_display

log = logging.getLogger(__name__)


def select_images(proba: np.ndarray, y: np.ndarray, classes: list[str], cap: int) -> pd.DataFrame:
    """Per class the most confident correct and the most confident wrong test image.

    Classes with at least one mistake come first, so a small ``cap`` still shows mistakes.
    Columns: index (row of the test split), true, pred, confidence, correct.
    """
    pred = proba.argmax(1)
    conf = proba[np.arange(len(pred)), pred]
    picks: list[list[int]] = []
    for c in range(len(classes)):
        members = np.flatnonzero(y == c)
        chosen = []
        for ok in (True, False):
            group = members[(pred[members] == c) == ok]
            if len(group):
                chosen.append(int(group[np.argmax(conf[group])]))
        if chosen:
            picks.append(chosen)
    picks.sort(key=lambda p: all(pred[i] == y[i] for i in p))  # classes with a mistake first
    order = [i for pair in picks for i in pair][: max(cap, 0)]
    names = np.asarray(classes, dtype=object)
    return pd.DataFrame(
        {
            "index": order,
            "true": names[y[order]] if order else [],
            "pred": names[pred[order]] if order else [],
            "confidence": conf[order] if order else [],
            "correct": (pred[order] == y[order]) if order else [],
        }
    )


def feature_map_slots(chosen: pd.DataFrame, count: int) -> list[int]:
    """Rows of ``chosen`` for the feature-map figure: the first correct and the first wrong
    image, then the others in order, ``count`` in all."""
    correct = [i for i, ok in enumerate(chosen["correct"]) if ok]
    wrong = [i for i, ok in enumerate(chosen["correct"]) if not ok]
    first = sorted(correct[:1] + wrong[:1])
    rest = [i for i in range(len(chosen)) if i not in first]
    return (first + rest)[: max(count, 0)]


def _no_inplace(model: nn.Module) -> nn.Module:
    """An eval-mode copy with in-place activations turned off (hooks and captum need the
    tensors they saw to stay unchanged)."""
    twin = copy.deepcopy(model).eval()
    for m in twin.modules():
        if getattr(m, "inplace", False):
            m.inplace = False
    return twin


@torch.no_grad()
def feature_maps(
    model: nn.Module, stages: list[tuple[str, nn.Module]], x: torch.Tensor
) -> dict[str, torch.Tensor]:
    """4-D outputs (N, C, h, w) of each of ``stages`` (modules of ``model``) for ``x``, on
    the CPU."""
    maps: dict[str, torch.Tensor] = {}
    handles = []
    for name, module in stages:

        def hook(_m, _i, out, name=name):
            if isinstance(out, torch.Tensor) and out.ndim == 4:
                maps[name] = out.detach().float().cpu()

        handles.append(module.register_forward_hook(hook))
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    return maps


def attributions(
    model: nn.Module, x: torch.Tensor, targets: torch.Tensor, layer: nn.Module
) -> tuple[np.ndarray, np.ndarray]:
    """Saliency (|d score / d input|, max over channels) and Grad-CAM upsampled to the input,
    both (N, H, W), for class ``targets`` (captum, imported here: it is slow to import)."""
    from captum.attr import LayerAttribution, LayerGradCam, Saliency

    inputs = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        sal = Saliency(model).attribute(inputs, target=targets, abs=True)
        cam = LayerGradCam(model, layer).attribute(inputs, target=targets, relu_attributions=True)
    cam = LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), interpolate_mode="bilinear")
    return sal.amax(1).detach().cpu().numpy(), cam[:, 0].detach().cpu().numpy()


def explain(
    model: nn.Module,
    stages_of: Callable[[nn.Module], list[tuple[str, nn.Module]]],
    images: torch.Tensor,
    inputs: torch.Tensor,
    chosen: pd.DataFrame,
    classes: list[str],
    out_dir: Path,
    channels: int = 8,
    gradcam_min_size: int = 4,
    feature_map_images: int = 2,
) -> list[Path]:
    """Write the interpretability figures and CSVs for the ``chosen`` images into ``out_dir``.

    Args:
        model: the trained model (left untouched; a copy is explained).
        stages_of: the model's feature stages, input to output (the model registry's
            :meth:`runner.zoo.ModelEntry.feature_stages`); none = no figures.
        images: the chosen uint8 images (N, C, H, W), for display.
        inputs: the same images normalised as the model sees them, on the model's device.
        chosen: :func:`select_images` rows, in the same order.
        channels: most active channels shown per stage.
        feature_map_images: images in the feature-map figure (a correct and a wrong one
            first).
        gradcam_min_size: Grad-CAM uses the deepest stage whose maps are at least this
            many pixels on each side (else the first stage).
    Returns the written figures.
    """
    if not len(chosen):
        return []
    twin = _no_inplace(model)
    stages = dict(stages_of(twin))
    write_csv(out_dir / "images.csv", chosen)
    maps = feature_maps(twin, list(stages.items()), inputs)
    written = []
    slots = feature_map_slots(chosen, feature_map_images)
    if maps and slots:
        path = out_dir / "feature_maps.png"
        rows = _plot_feature_maps(images, maps, chosen, slots, path, channels)
        write_csv(out_dir / "feature_maps.csv", pd.DataFrame(rows))
        written.append(path)
    usable = [n for n, m in maps.items() if min(m.shape[-2:]) >= gradcam_min_size] or list(maps)[:1]
    if usable:
        targets = torch.as_tensor([classes.index(p) for p in chosen["pred"]], device=inputs.device)
        result = attributions(twin, inputs, targets, stages[usable[-1]])
        written.append(_write_attributions(images, chosen, *result, usable[-1], out_dir))
    return written


def _mosaic(tiles: list[np.ndarray], per_row: int) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Tiles on a grid of ``per_row`` columns, each scaled to [0, 1] by its own range, with
    NaN gaps (a label band above each row of tiles). Returns the image and each tile's label
    position (x, y) in pixel coordinates."""
    h, w = tiles[0].shape
    gap_x, band = max(1, w // 8), max(1, h // 3)
    rows = -(-len(tiles) // per_row)
    out = np.full((rows * (h + band), per_row * (w + gap_x) - gap_x), np.nan)
    spots = []
    for i, tile in enumerate(tiles):
        r, c = divmod(i, per_row)
        top, left = r * (h + band) + band, c * (w + gap_x)
        lo, hi = float(tile.min()), float(tile.max())
        out[top : top + h, left : left + w] = (tile - lo) / (hi - lo) if hi > lo else 0.0
        spots.append((left + (w - 1) / 2, top - 0.5))
    return out, spots


def _plot_feature_maps(
    images: torch.Tensor,
    maps: dict[str, torch.Tensor],
    chosen: pd.DataFrame,
    slots: list[int],
    path: Path,
    channels: int,
) -> list[dict[str, Any]]:
    """Rows: the input and each conv stage; columns: the chosen images. Each stage cell shows
    the mean over channels, then the most active channels, each scaled to its own range."""
    plt = _plt()
    stages = list(maps)
    tiles = 1 + channels
    per_row = -(-tiles // 2) if tiles > 5 else tiles
    fig, axes = plt.subplots(
        len(stages) + 1,
        len(slots),
        figsize=(max(6.0, 1.1 * per_row * len(slots) + 1.5), 2.5 * (len(stages) + 1) + 0.8),
        squeeze=False,
    )
    cmap = plt.get_cmap("viridis").with_extremes(bad="white")
    rows = []
    for col, slot in enumerate(slots):
        info = chosen.iloc[slot]
        verdict = "correct" if info["correct"] else "WRONG"
        shown, image_cmap = image_for_display(images[slot].numpy())
        ax = axes[0, col]
        ax.imshow(shown, cmap=image_cmap, interpolation="nearest")
        ax.set_title(
            f"image {slot}: true {_short(info['true'])} → pred {_short(info['pred'])} "
            f"(p={info['confidence']:.2f}), {verdict}",
            fontsize=9,
            color="black" if info["correct"] else "firebrick",
        )
        for r, name in enumerate(stages, start=1):
            fmap = maps[name][slot]
            strength = fmap.mean((1, 2))
            top = torch.argsort(strength, descending=True)[:channels].tolist()
            grid, spots = _mosaic(
                [fmap.mean(0).numpy(), *(fmap[ch].numpy() for ch in top)], per_row
            )
            ax = axes[r, col]
            ax.imshow(grid, cmap=cmap, interpolation="nearest", aspect="equal")
            for (x, y), label in zip(spots, ["mean", *(f"ch {ch}" for ch in top)]):
                ax.text(x, y, label, ha="center", va="bottom", fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_frame_on(False)
            if col == 0:
                ax.set_ylabel(
                    f"{name}\n{fmap.shape[0]}×{fmap.shape[1]}×{fmap.shape[2]}", fontsize=8
                )
            for rank, ch in enumerate(top, start=1):
                rows.append(
                    {
                        "image": slot,
                        "index": int(info["index"]),
                        "stage": name,
                        "channel": ch,
                        "rank": rank,
                        "mean": float(strength[ch]),
                        "max": float(fmap[ch].max()),
                        "height": fmap.shape[1],
                        "width": fmap.shape[2],
                    }
                )
    for ax in axes[0]:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(
        "feature maps of each conv stage (rows, input → output): mean over channels, then the "
        f"{channels} most active channels; each map scaled to its own range",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))
    save_figure(path, fig)
    plt.close(fig)
    return rows


def _write_attributions(
    images: torch.Tensor,
    chosen: pd.DataFrame,
    saliency: np.ndarray,
    gradcam: np.ndarray,
    layer: str,
    out_dir: Path,
) -> Path:
    np.savez_compressed(
        out_dir / "attributions.npz",
        saliency=saliency,
        gradcam=gradcam,
        index=chosen["index"].to_numpy(),
    )
    summary = []
    for slot in range(len(chosen)):
        for method, amap in (("saliency", saliency[slot]), ("gradcam", gradcam[slot])):
            total = float(np.abs(amap).sum()) or 1.0
            flat = np.sort(np.abs(amap).ravel())[::-1]
            top = flat[: max(1, flat.size // 10)].sum() / total
            summary.append(
                {
                    "slot": slot,
                    "index": int(chosen["index"].iloc[slot]),
                    "method": method,
                    "layer": layer if method == "gradcam" else "input",
                    "max": float(np.abs(amap).max()),
                    "mean": float(np.abs(amap).mean()),
                    "top10pct_share": float(top),  # share of attribution in the top 10 % pixels
                }
            )
    write_csv(out_dir / "attributions.csv", pd.DataFrame(summary))
    path = out_dir / "saliency_gradcam.png"
    _plot_attributions(images, chosen, saliency, gradcam, layer, path)
    return path


def _plot_attributions(
    images: torch.Tensor,
    chosen: pd.DataFrame,
    saliency: np.ndarray,
    gradcam: np.ndarray,
    layer: str,
    path: Path,
) -> None:
    plt = _plt()
    n = len(chosen)
    fig, axes = plt.subplots(n, 3, figsize=(8.4, 2.6 * n + 0.6), squeeze=False)
    for r, (_, info) in enumerate(chosen.iterrows()):
        shown, cmap = image_for_display(images[r].numpy())
        verdict = "correct" if info["correct"] else "WRONG"
        colour = "black" if info["correct"] else "firebrick"
        axes[r, 0].imshow(shown, cmap=cmap, interpolation="nearest")
        axes[r, 0].set_title(
            f"true {_short(info['true'], 12)} → pred {_short(info['pred'], 12)}\n"
            f"p={info['confidence']:.2f}, {verdict}",
            fontsize=9,
            color=colour,
        )
        axes[r, 1].imshow(saliency[r], cmap="hot", interpolation="nearest")
        grey = shown.mean(2) if shown.ndim == 3 else shown  # colours would fight the heat map
        axes[r, 2].imshow(grey, cmap="gray", interpolation="nearest")
        axes[r, 2].imshow(gradcam[r], cmap="jet", alpha=0.5, interpolation="bilinear")
        if r == 0:
            axes[r, 1].set_title("saliency |∂score/∂pixel|", fontsize=9)
            axes[r, 2].set_title(f"Grad-CAM ({layer})", fontsize=9)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(
        "what the predicted class's score depends on (Grad-CAM over a grey copy of the input)",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.3 / fig.get_figheight()))
    save_figure(path, fig)
    plt.close(fig)

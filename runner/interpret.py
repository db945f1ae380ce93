"""Interpretability figures for a few fixed test images (SEEDS.md S1, S3), drawn only where
they carry information.

- saliency: |∂ score / ∂ pixel| of the predicted class, the maximum over colour channels
  (vanilla gradients, as ``captum.attr.Saliency(abs=True)`` computes them, with one
  backward pass and without importing captum);
- feature maps of the conv stages whose maps are at least ``min_map_size`` pixels a side
  (forward hooks; 2×2 or 4×4 maps are a few blocks of colour and are left out);
- Grad-CAM (``captum.attr.LayerGradCam``) on the deepest such stage after the first — on
  the first stage it is little more than the saliency map, so a model whose deeper maps
  are all small (8×8 digits) gets none.

Images: for each class one correctly and one wrongly classified test image where available
(classes with a mistake first), capped at ``images``.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from runner.io import write_csv
from runner.plots import (
    Tile,
    _plt,
    _short,
    image_for_display,
    margins,
    plot_tiles,
    save_and_close,
    set_title,
    to_rgb,
)

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


@dataclass
class Explained:
    """What :func:`explain` wrote: the figures, the stages whose feature maps are shown, the
    stages left out (name → map size), and the Grad-CAM stage (None: not drawn)."""

    figures: list[Path] = field(default_factory=list)
    stages: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    gradcam: str | None = None
    chosen: Any = None


def select_images(proba: np.ndarray, y: np.ndarray, classes: list[str], cap: int) -> pd.DataFrame:
    """Per class the most confident correct and the most confident wrong test image.

    Classes with at least one mistake come first, so a small ``cap`` still shows mistakes.
    Columns: index (row of the test split), true, pred, confidence, correct.
    """
    import pandas as pd

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


def describe_selection(chosen: pd.DataFrame) -> str:
    """The chosen images in words, e.g. "6 test images: a correct and a wrong one of class
    '4' and '8', a correct one of '0' and '1'"."""
    pairs, single_ok, single_wrong = [], [], []
    for name, group in chosen.groupby("true", sort=False):
        kinds = set(group["correct"])
        target = pairs if kinds == {True, False} else single_ok if True in kinds else single_wrong
        target.append(repr(str(name)))
    parts = []
    if pairs:
        parts.append("a correct and a wrong one of class " + _and(pairs))
    if single_ok:
        parts.append("a correct one of " + _and(single_ok))
    if single_wrong:
        parts.append("a wrong one of " + _and(single_wrong))
    return f"{len(chosen)} test images: " + "; ".join(parts)


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


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


def saliency(model: nn.Module, x: torch.Tensor, targets: torch.Tensor) -> np.ndarray:
    """|∂ score[target] / ∂ input|, maximum over channels: (N, H, W)."""
    inputs = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        scores = model(inputs).gather(1, targets[:, None]).sum()
        (grad,) = torch.autograd.grad(scores, inputs)
    return grad.abs().amax(1).detach().cpu().numpy()


def gradcam(
    model: nn.Module, x: torch.Tensor, targets: torch.Tensor, layer: nn.Module
) -> np.ndarray:
    """Grad-CAM of ``layer`` for class ``targets``, upsampled to the input: (N, H, W)
    (captum, imported here: it takes half a second to import)."""
    from captum.attr import LayerAttribution, LayerGradCam

    inputs = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        cam = LayerGradCam(model, layer).attribute(inputs, target=targets, relu_attributions=True)
    cam = LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), interpolate_mode="bilinear")
    return cam[:, 0].detach().cpu().numpy()


def explain(
    model: nn.Module,
    stages_of: Callable[[nn.Module], list[tuple[str, nn.Module]]],
    images: torch.Tensor,
    inputs: torch.Tensor,
    chosen: pd.DataFrame,
    classes: list[str],
    out_dir: Path,
    channels: int = 8,
    min_map_size: int = 8,
    feature_map_images: int = 2,
) -> Explained:
    """Write the interpretability figures and CSVs for the ``chosen`` images into ``out_dir``.

    Args:
        model: the trained model (left untouched; a copy is explained).
        stages_of: the model's feature stages, input to output (the model registry's
            :meth:`runner.zoo.ModelEntry.feature_stages`).
        images: the chosen uint8 images (N, C, H, W), for display.
        inputs: the same images normalised as the model sees them, on the model's device.
        chosen: :func:`select_images` rows, in the same order.
        channels: most active channels shown per stage.
        min_map_size: stages with smaller maps (pixels a side) get no feature maps and no
            Grad-CAM.
        feature_map_images: images in the feature-map figure (a correct and a wrong one
            first).
    """
    done = Explained(chosen=chosen)
    if not len(chosen):
        return done
    twin = _no_inplace(model)
    stages = dict(stages_of(twin))
    write_csv(out_dir / "images.csv", chosen)
    maps = feature_maps(twin, list(stages.items()), inputs)
    big = [n for n, m in maps.items() if min(m.shape[-2:]) >= min_map_size]
    done.skipped = {n: "×".join(map(str, m.shape[-2:])) for n, m in maps.items() if n not in big}
    slots = feature_map_slots(chosen, feature_map_images)
    if big and slots:
        path = out_dir / "feature_maps.png"
        rows = _plot_feature_maps(images, {n: maps[n] for n in big}, chosen, slots, path, channels)
        write_csv(out_dir / "feature_maps.csv", _frame(rows))
        done.figures.append(path)
        done.stages = big
    targets = torch.as_tensor([classes.index(p) for p in chosen["pred"]], device=inputs.device)
    sal = saliency(twin, inputs, targets)
    cam = None
    deep = [n for n in big if n != next(iter(maps), None)]
    if deep:
        done.gradcam = deep[-1]
        cam = gradcam(twin, inputs, targets, stages[done.gradcam])
    done.figures.append(_write_attributions(images, chosen, sal, cam, done.gradcam, out_dir))
    return done


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(rows)


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
    per_row = -(-(1 + channels) // 2) if channels > 4 else 1 + channels
    width = max(6.0, 1.1 * per_row * len(slots) + 1.5)
    fig, axes = plt.subplots(
        len(stages) + 1,
        len(slots),
        figsize=(width, 2.5 * len(stages) + 2.4),
        squeeze=False,
        gridspec_kw={"height_ratios": [0.65] + [1.0] * len(stages)},
    )
    margins(fig, left=1.1, right=0.1, bottom=0.1, top=0.75, wspace=0.08, hspace=0.3)
    cmap = plt.get_cmap("viridis").with_extremes(bad="white")
    rows: list[dict[str, Any]] = []
    for col, slot in enumerate(slots):
        _image_cell(axes[0, col], images[slot], chosen.iloc[slot], slot)
        for r, name in enumerate(stages, start=1):
            fmap = maps[name][slot]
            top = _stage_cell(axes[r, col], fmap, channels, per_row, cmap)
            if col == 0:
                shape = "×".join(map(str, fmap.shape))
                axes[r, col].set_ylabel(f"{name}\n{shape}", fontsize=8)
            rows += _map_rows(fmap, top, name, slot, int(chosen.iloc[slot]["index"]))
    fig.suptitle(
        f"feature maps of {'each conv stage' if len(stages) > 1 else 'conv stage ' + stages[0]}"
        f" with maps of at least {min(m.shape[-1] for m in maps.values())} px (rows, input → "
        f"output): mean over channels, then the {channels} most active channels; each map "
        "scaled to its own range",
        fontsize=10,
        y=1 - 0.1 / fig.get_figheight(),
        va="top",
    )
    save_and_close(plt, fig, path)
    return rows


def _image_cell(ax, image: torch.Tensor, info: Any, slot: int) -> None:
    shown, image_cmap = image_for_display(image.numpy())
    ax.imshow(shown, cmap=image_cmap, interpolation="nearest")
    verdict = "correct" if info["correct"] else "WRONG"
    set_title(
        ax,
        f"image {slot}: true {_short(info['true'])} → pred {_short(info['pred'])} "
        f"(p={info['confidence']:.2f}), {verdict}",
        fontsize=9,
        color="black" if info["correct"] else "firebrick",
    )
    ax.set_xticks([])
    ax.set_yticks([])


def _stage_cell(ax, fmap: torch.Tensor, channels: int, per_row: int, cmap: Any) -> list[int]:
    """The mosaic of one stage for one image; returns the channels shown, strongest first."""
    top = torch.argsort(fmap.mean((1, 2)), descending=True)[:channels].tolist()
    grid, spots = _mosaic([fmap.mean(0).numpy(), *(fmap[ch].numpy() for ch in top)], per_row)
    ax.imshow(grid, cmap=cmap, interpolation="nearest", aspect="equal")
    for (x, y), label in zip(spots, ["mean", *(f"ch {ch}" for ch in top)]):
        ax.text(x, y, label, ha="center", va="bottom", fontsize=7)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_frame_on(False)
    return top


def _map_rows(fmap: torch.Tensor, top: list[int], stage: str, slot: int, index: int) -> list:
    strength = fmap.mean((1, 2))
    return [
        {
            "image": slot,
            "index": index,
            "stage": stage,
            "channel": ch,
            "rank": rank,
            "mean": float(strength[ch]),
            "max": float(fmap[ch].max()),
            "height": fmap.shape[1],
            "width": fmap.shape[2],
        }
        for rank, ch in enumerate(top, start=1)
    ]


def _write_attributions(
    images: torch.Tensor,
    chosen: pd.DataFrame,
    saliency_maps: np.ndarray,
    gradcam_maps: np.ndarray | None,
    layer: str | None,
    out_dir: Path,
) -> Path:
    arrays = {"saliency": saliency_maps, "index": chosen["index"].to_numpy()}
    if gradcam_maps is not None:
        arrays["gradcam"] = gradcam_maps
    np.savez_compressed(out_dir / "attributions.npz", **arrays)
    summary = []
    for slot in range(len(chosen)):
        methods = [("saliency", saliency_maps[slot], "input")]
        if gradcam_maps is not None:
            methods.append(("gradcam", gradcam_maps[slot], layer))
        for method, amap, where in methods:
            flat = np.sort(np.abs(amap).ravel())[::-1]
            total = float(flat.sum()) or 1.0
            summary.append(
                {
                    "slot": slot,
                    "index": int(chosen["index"].iloc[slot]),
                    "method": method,
                    "layer": where,
                    "max": float(flat[0]),
                    "mean": float(flat.mean()),
                    # share of the attribution in the top 10 % of the pixels
                    "top10pct_share": float(flat[: max(1, flat.size // 10)].sum() / total),
                }
            )
    write_csv(out_dir / "attributions.csv", _frame(summary))
    name = "saliency_gradcam.png" if gradcam_maps is not None else "saliency.png"
    path = out_dir / name
    _plot_attributions(images, chosen, saliency_maps, gradcam_maps, layer, path)
    return path


def _plot_attributions(
    images: torch.Tensor,
    chosen: pd.DataFrame,
    saliency_maps: np.ndarray,
    gradcam_maps: np.ndarray | None,
    layer: str | None,
    path: Path,
) -> None:
    """One row per image: the image, its saliency and (where drawn) Grad-CAM over a grey
    copy of it."""
    rows = []
    for r, (_, info) in enumerate(chosen.iterrows()):
        shown, _ = image_for_display(images[r].numpy())
        image = to_rgb(shown)
        verdict = "correct" if info["correct"] else "WRONG"
        caption = (
            f"true: {_short(info['true'], 14)}\npred: {_short(info['pred'], 14)}\n"
            f"p={info['confidence']:.2f}, {verdict}"
        )
        row = [
            Tile(image, caption, "black" if info["correct"] else "firebrick"),
            Tile(to_rgb(saliency_maps[r], "hot"), "\nsaliency\n|∂score/∂pixel|"),
        ]
        if gradcam_maps is not None:
            grey = np.repeat(image.mean(2, keepdims=True), 3, axis=2)
            heat = 0.5 * grey + 0.5 * to_rgb(gradcam_maps[r], "jet")
            row.append(Tile(heat, f"\nGrad-CAM\n{_short(layer, 18)}"))
        rows.append(row)
    title = "what the predicted class's score depends on: bright saliency pixels change it most"
    if gradcam_maps is not None:
        title += "; warm Grad-CAM areas are the regions its stage relied on (over a grey copy)"
    per_row = max(1, 6 // len(rows[0]))  # images side by side: 3 without Grad-CAM, 2 with
    grid = [sum(rows[i : i + per_row], []) for i in range(0, len(rows), per_row)]
    plot_tiles(grid, path, title, lines=3)

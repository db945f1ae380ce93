"""The report.md sections of the diagnostics: only figures that exist, each with its CSV."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from runner.report import figure, links


def evaluation_section(run_dir: Path, roc: pd.DataFrame | None, errors: pd.DataFrame | None) -> str:
    """ROC curves and the most confident mistakes on the test split."""
    out = ["## Test split: ROC curves and mistakes", ""]
    if roc is not None and len(roc):
        aucs = roc.groupby("class", sort=False)["auc"].first()
        per_class = aucs.drop("micro avg", errors="ignore")
        words = f"One-vs-rest ROC per class: macro-average AUC {per_class.mean():.3f}"
        if "micro avg" in aucs:
            words += f", micro-average {aucs['micro avg']:.3f}"
        if len(per_class) > 1:
            words += (
                f"; weakest class {per_class.idxmin()!r} ({per_class.min():.3f}), "
                f"strongest {per_class.idxmax()!r} ({per_class.max():.3f})"
            )
        out += [
            words + ". A curve hugging the top-left corner separates its class well; one "
            "near the diagonal is guessed.",
            "",
        ]
        out += [figure(run_dir, "eval/roc_curves.png", "ROC curves", ["eval/roc_curves.csv"])]
    if errors is not None:
        if len(errors):
            out += [
                f"The {len(errors)} wrong test predictions made with the highest confidence "
                "(true class, predicted class, probability of the prediction). Repeated pairs "
                "point at look-alike classes or label mistakes.",
                "",
                figure(
                    run_dir,
                    "eval/misclassified.png",
                    "most confident mistakes",
                    ["eval/misclassified.csv"],
                ),
            ]
        else:
            out += ["Every test image is classified correctly.", ""]
    extra = links(run_dir, ["eval/val_classification_report.csv"])
    if extra:
        out += [f"Validation split per-class metrics: {extra}.", ""]
    return "\n".join(out)


def diagnostics_section(run_dir: Path, files: dict[str, Any]) -> str:
    """Gradient flow, dead units and activations, weights, loss and learning rate per step."""
    d = "diagnostics"
    parts = [
        (
            "gradient_flow.png",
            "gradient flow",
            ["gradients.csv"],
            "How strongly each weight layer is updated: the median RMS gradient per weight, "
            "input side on the left. Curves falling by orders of magnitude towards the input "
            "mean vanishing gradients; the right panel follows first, middle and last layers.",
        ),
        (
            "activations.png",
            "dead units and activations",
            ["activations.csv"],
            "Units that are never positive on a fixed batch of training images are dead (a "
            "ReLU passes them no gradient); grey = before training, red = at the end.",
        ),
        (
            "activation_hist.png",
            "activation distributions",
            ["activation_hist.csv"],
            "Distribution of each activation layer's outputs on the probe images before "
            "training (grey) and with the evaluated weights (blue); log counts.",
        ),
        (
            "weights.png",
            "weight distributions",
            ["weight_hist.csv", "weight_stats.csv"],
            "Weights per layer at the start (grey) and the evaluated weights (blue).",
        ),
        (
            "lr_loss.png",
            "loss and learning rate per step",
            ["steps.csv"],
            "Training loss of every optimizer step with its epoch mean, and the learning rate.",
        ),
    ]
    out = ["## Training diagnostics", ""]
    shown = False
    for name, caption, data, words in parts:
        block = figure(run_dir, f"{d}/{name}", caption, [f"{d}/{c}" for c in data])
        if not block:
            block_links = links(run_dir, [f"{d}/{c}" for c in data])
            if block_links:
                out += [f"{caption.capitalize()}: {block_links}.", ""]
            continue
        out += [f"**{caption.capitalize()}.** {words}", "", block]
        shown = True
    if not shown and len(out) == 2:
        return ""
    if files.get("interval"):
        out += [
            f"Gradients recorded every {files['interval']} optimizer steps; activations on "
            f"{files.get('probe_size', 0)} fixed training images at every epoch end.",
            "",
        ]
    return "\n".join(out)


def interpret_section(run_dir: Path, figures: list[Path]) -> str:
    """Saliency / Grad-CAM and the feature maps of the chosen test images."""
    out = ["## Interpretability", ""]
    rel = [p.relative_to(run_dir).as_posix() for p in figures if p.exists()]
    if not rel:
        return ""
    out += [
        "A few fixed test images — per class one correctly and one wrongly classified where "
        "available. Chosen images: " + links(run_dir, ["interpret/images.csv"]) + ".",
        "",
    ]
    attr = [r for r in rel if r.endswith("saliency_gradcam.png")]
    for r in attr:
        out += [
            "**Saliency and Grad-CAM** for the predicted class: bright saliency pixels change "
            "the score most; Grad-CAM's warm areas are the regions the last usable conv stage "
            "relied on.",
            "",
            figure(run_dir, r, "saliency and Grad-CAM", ["interpret/attributions.csv"]),
        ]
    if "interpret/feature_maps.png" in rel:
        out += [
            "**Feature maps** of every conv stage (rows, input → output) for a correctly and a "
            "wrongly classified image: what each stage responds to; blank or uniform maps are "
            "channels that carry no information.",
            "",
            figure(
                run_dir,
                "interpret/feature_maps.png",
                "feature maps",
                ["interpret/feature_maps.csv"],
            ),
        ]
    return "\n".join(out)

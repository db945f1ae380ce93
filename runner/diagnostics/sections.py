"""The report.md sections of the diagnostics: only figures that exist, each with its CSV, and
words that describe what the figure actually shows."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.report import figure, links

if TYPE_CHECKING:
    import pandas as pd


def evaluation_section(
    run_dir: Path, roc: pd.DataFrame | None, errors: pd.DataFrame | None, table_auc: float | None
) -> str:
    """ROC curves (or, when every AUC reaches ``table_auc``, why there are none) and the
    most confident mistakes on the test split."""
    out = ["## Test split: ROC curves and mistakes", ""]
    if roc is not None and len(roc):
        aucs = roc.groupby("class", sort=False)["auc"].first()
        per_class = aucs.drop("micro avg", errors="ignore")
        words = f"One-vs-rest ROC AUC per class: macro average {per_class.mean():.3f}"
        if "micro avg" in aucs:
            words += f", micro average {aucs['micro avg']:.3f}"
        if len(per_class) > 1:
            words += (
                f"; weakest class {per_class.idxmin()!r} ({per_class.min():.3f}), "
                f"strongest {per_class.idxmax()!r} ({per_class.max():.3f})"
            )
        if table_auc is not None:
            out += [
                words + f". Every class reaches AUC {table_auc:g} or more, so the curves would "
                "all hug the top-left corner and none is drawn: the per-class AUC is the `auc` "
                "column of the table above, the curves' points are in "
                + links(run_dir, ["eval/roc_curves.csv"])
                + ".",
                "",
            ]
        else:
            out += [
                words + ". A curve hugging the top-left corner separates its class well; one "
                "near the diagonal is guessed.",
                "",
                figure(run_dir, "eval/roc_curves.png", "ROC curves", ["eval/roc_curves.csv"]),
            ]
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


def _activation_words(info: dict[str, Any]) -> str:
    panels, acts = info.get("panels", []), info.get("activations")
    words = []
    if "dead" in panels:
        words.append(
            "Units that are never positive on a fixed batch of training images are dead (a ReLU "
            "passes them no gradient): per layer before training (grey) and at the end (red), "
            "and over the epochs."
        )
    elif acts is not None and len(acts) and acts["kind"].isin(("ReLU", "ReLU6")).any():
        relu = acts[acts["kind"].isin(("ReLU", "ReLU6"))]
        start = relu[relu["epoch"] == relu["epoch"].min()]["dead_share"].max()
        later = relu[relu["epoch"] > relu["epoch"].min()]["dead_share"].max()
        later = 0.0 if later != later else later  # NaN: no epoch after the first probe
        words.append(
            f"No ReLU layer has dead units worth a panel: after training began at most "
            f"{100 * later:.1f} % of a layer's units were never positive on the probe images "
            f"({100 * start:.1f} % before training)."
        )
    if "saturation" in panels:
        words.append(
            "The saturation panel counts outputs of bounded activations (sigmoid, tanh) within "
            "2 % of a bound, where their gradient is nearly zero."
        )
    words.append(
        "The mean and spread of each layer's outputs at the end show how the signal scales "
        "with depth."
    )
    return " ".join(words)


def diagnostics_section(run_dir: Path, info: dict[str, Any]) -> str:
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
        ("activations.png", "activations", ["activations.csv"], _activation_words(info)),
        (
            "activation_hist.png",
            "activation distributions",
            ["activation_hist.csv"],
            "Distribution of each activation layer's outputs on the probe images, one row per "
            "layer (input side at the top), before training (grey) and with the evaluated "
            "weights (blue); log counts.",
        ),
        (
            "weights.png",
            "weight distributions",
            ["weight_hist.csv", "weight_stats.csv"],
            "Weights per layer at the start (grey) and the evaluated weights (blue), one row "
            "per layer, in units of the layer's initial standard deviation (given with its "
            "name): a row that widens grew its weights, one that narrows shrank them.",
        ),
        (
            "lr_loss.png",
            "loss and learning rate per step",
            ["steps.csv"],
            "Training loss of every optimizer step with its epoch mean, and the learning rate.",
        ),
    ]
    out = ["## Training diagnostics", ""]
    for name, caption, data, words in parts:
        block = figure(run_dir, f"{d}/{name}", caption, [f"{d}/{c}" for c in data])
        if not block:
            block_links = links(run_dir, [f"{d}/{c}" for c in data])
            if block_links:
                out += [f"{caption.capitalize()}: {block_links}.", ""]
            continue
        out += [f"**{caption.capitalize()}.** {words}", "", block]
    if len(out) == 2:
        return ""
    if info.get("interval"):
        out += [
            f"Gradients recorded every {info['interval']} optimizer steps; activations on "
            f"{info.get('probe_size', 0)} fixed training images at every epoch end.",
            "",
        ]
    return "\n".join(out)


def _attribution_words(done: Any, skipped: str, min_map_size: int) -> str:
    """What the saliency figure shows, and why there is (no) Grad-CAM."""
    words = (
        "**Saliency** for the predicted class, next to each image: bright pixels change its "
        "score most."
    )
    if done.gradcam:
        return words + (
            f" **Grad-CAM** of stage {done.gradcam}: warm areas are the regions that stage's "
            "features relied on."
        )
    if done.stages:
        return words + (
            f" No Grad-CAM: only the first conv stage has maps of at least {min_map_size}×"
            f"{min_map_size} pixels (deeper: {skipped}), and there Grad-CAM adds little to the "
            "saliency map."
        )
    if skipped:
        return words + (
            f" No Grad-CAM: no conv stage has maps of at least {min_map_size}×{min_map_size} "
            f"pixels ({skipped})."
        )
    return words


def interpret_section(run_dir: Path, done: Any, selection: str, min_map_size: int) -> str:
    """Saliency (and Grad-CAM) and the feature maps of the chosen test images, saying which
    stages are left out and why."""
    rel = [p.relative_to(run_dir).as_posix() for p in done.figures if p.exists()]
    if not rel:
        return ""
    out = [
        "## Interpretability",
        "",
        selection + " (" + links(run_dir, ["interpret/images.csv"]) + ").",
        "",
    ]
    skipped = ", ".join(f"{n} ({s})" for n, s in done.skipped.items())
    for r in (r for r in rel if r.startswith("interpret/saliency")):
        words = _attribution_words(done, skipped, min_map_size)
        out += [words, "", figure(run_dir, r, "saliency", ["interpret/attributions.csv"])]
    if "interpret/feature_maps.png" in rel:
        shown = ", ".join(done.stages)
        words = (
            f"**Feature maps** of stage{'s' if len(done.stages) > 1 else ''} {shown} (rows, "
            "input → output) for a correctly and a wrongly classified image: what each stage "
            "responds to; blank or uniform maps are channels that carry no information."
        )
        if skipped:
            words += f" Left out, smaller than {min_map_size}×{min_map_size}: {skipped}."
        out += [
            words,
            "",
            figure(
                run_dir,
                "interpret/feature_maps.png",
                "feature maps",
                ["interpret/feature_maps.csv"],
            ),
        ]
    elif skipped:
        out += [
            f"No feature maps: every conv stage's maps are smaller than {min_map_size}×"
            f"{min_map_size} ({skipped}).",
            "",
        ]
    return "\n".join(out)

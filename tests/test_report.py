"""report.md of the default main job (``runner`` on digits) through the console script: the
verdict first, only figures that mean something, every figure linked with its CSV, words
that match the figures; and a report without diagnostics that says so."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from runner.report import render, render_diagnoses
from tests.conftest import compose_cfg, only_run_dir, run_cli

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
SECTIONS = [
    "## Verdict",
    "**Outcome:**",
    "## Key figures",
    "## Diagnoses",
    "## Training curves",
    "## Test split: per-class metrics",
    "## Test split: ROC curves and mistakes",
    "## Training diagnostics",
    "## Interpretability",
    "## Configuration",
]


@pytest.fixture(scope="module")
def default_run(tmp_path_factory) -> Path:
    cwd = tmp_path_factory.mktemp("main_job")
    proc = run_cli(["trainer.max_epochs=3"], cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return only_run_dir(cwd)


def test_report_links_only_existing_files_and_every_figure(default_run):
    text = (default_run / "report.md").read_text()
    targets = LINK.findall(text)
    missing = [t for t in targets if not (default_run / t).is_file()]
    assert not missing, missing
    images = {t for t in re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", text)}
    produced = {p.relative_to(default_run).as_posix() for p in default_run.rglob("*.png")}
    assert produced == images, produced ^ images
    for image in images:  # the numbers behind every figure sit beside it, linked
        csvs = [t for t in targets if t.endswith(".csv") and Path(t).parent == Path(image).parent]
        assert csvs, f"no CSV linked next to {image}"
    positions = [text.index(s) for s in SECTIONS]
    assert positions == sorted(positions)


def test_default_job_draws_only_figures_that_mean_something(default_run):
    for name in (
        "curves.png",
        "eval/confusion_matrix.png",
        "eval/roc_curves.csv",
        "eval/misclassified.png",
        "eval/misclassified.csv",
        "diagnostics/gradient_flow.png",
        "diagnostics/activations.png",
        "diagnostics/activation_hist.png",
        "diagnostics/weights.png",
        "diagnostics/lr_loss.png",
        "interpret/feature_maps.png",
        "interpret/saliency.png",
        "interpret/images.csv",
    ):
        assert (default_run / name).is_file(), name
    summary = json.loads((default_run / "summary.json").read_text())
    assert {d["code"] for d in summary["diagnoses"] if d["severity"] != "info"} <= {
        "still_improving"  # three epochs: it may still be improving
    }
    assert 0.9 < summary["test_macro_auc"] <= 1.0
    text = (default_run / "report.md").read_text()
    report = pd.read_csv(default_run / "eval/classification_report.csv")
    roc = pd.read_csv(default_run / "eval/roc_curves.csv")
    assert set(roc["class"]) == {*(str(i) for i in range(10)), "micro avg"}
    lowest = report[~report["class"].isin(["macro avg", "weighted avg"])]["auc"].min()
    drawn = (default_run / "eval/roc_curves.png").exists()
    assert drawn == (lowest < 0.99)  # a 99 % model's ROC curves are a corner: a table
    if not drawn:
        assert "none is drawn" in text
    # 8×8 digits: only the first stage's maps (8×8) are big enough; no Grad-CAM
    assert not (default_run / "interpret/saliency_gradcam.png").exists()
    maps = pd.read_csv(default_run / "interpret/feature_maps.csv")
    assert set(maps["stage"]) == {"features.0.act"} and set(maps["height"]) == {8}
    assert "Left out, smaller than 8×8: features.1.act (4×4), features.2.act (2×2)" in text
    assert "No Grad-CAM" in text
    chosen = pd.read_csv(default_run / "interpret/images.csv")
    assert 1 <= len(chosen) <= 6 and chosen["index"].is_unique
    assert f"{len(chosen)} test images: " in text  # the text counts what the figure shows


def test_verdict_comes_first_and_names_one_change(default_run):
    text = (default_run / "report.md").read_text()
    verdict = text[text.index("## Verdict") : text.index("**Outcome:**")]
    assert re.search(r"\*\*Did it train well\?\*\* (Yes|Partly) — test accuracy", verdict)
    assert "**Evidence:**" in verdict
    summary = json.loads((default_run / "summary.json").read_text())
    if summary["verdict"]["next"]:
        assert summary["verdict"]["next"] in verdict


def test_report_without_diagnostics_does_not_claim_there_are_no_problems(tmp_path):
    cfg = compose_cfg(["diagnostics=off"], tmp_path)
    summary = {"status": "completed", "test_acc": 0.5, "diagnoses": []}
    text = render(tmp_path, cfg, summary, pd.DataFrame(), None)
    assert "No problems detected" not in text
    assert "Automatic diagnoses were off" in text
    assert text.index("## Verdict") < text.index("## Diagnoses")


def test_diagnoses_render_in_plain_words(tmp_path):
    (tmp_path / "curves.png").write_bytes(b"")
    lines = render_diagnoses(
        [
            {"code": "diverged", "severity": "error", "message": "NaN.", "advice": ""},
            {
                "code": "overfitting",
                "severity": "warning",
                "message": "train 99 % vs validation 62 %.",
                "evidence": {"acc_gap": 0.37},
                "advice": "Regularise.",
                "see": ["curves.png", "missing.png"],
            },
        ],
        run_dir=tmp_path,
    )
    assert lines[0].startswith("- **Problem — diverged**")
    text = "\n".join(lines)
    assert "*What to try next:* Regularise." in text
    assert "acc_gap = 0.37" in text
    assert "*Where to look:* [curves.png](curves.png)" in text and "missing.png" not in text
    assert render_diagnoses([]) == ["No problems detected by the automatic checks."]
    assert "nothing was checked" in render_diagnoses([], checked=False)[0]

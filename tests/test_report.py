"""report.md of the default main job (``runner`` on digits) through the console script."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from runner.report import render_diagnoses
from tests.conftest import only_run_dir, run_cli

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
SECTIONS = [
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


def test_default_job_writes_every_figure_and_stays_healthy(default_run):
    for name in (
        "curves.png",
        "eval/confusion_matrix.png",
        "eval/roc_curves.png",
        "eval/roc_curves.csv",
        "eval/misclassified.png",
        "eval/misclassified.csv",
        "diagnostics/gradient_flow.png",
        "diagnostics/activations.png",
        "diagnostics/activation_hist.png",
        "diagnostics/weights.png",
        "diagnostics/lr_loss.png",
        "interpret/feature_maps.png",
        "interpret/saliency_gradcam.png",
        "interpret/images.csv",
    ):
        assert (default_run / name).is_file(), name
    summary = json.loads((default_run / "summary.json").read_text())
    assert [d for d in summary["diagnoses"] if d["severity"] != "info"] == []
    assert 0.9 < summary["test_macro_auc"] <= 1.0
    roc = pd.read_csv(default_run / "eval/roc_curves.csv")
    assert set(roc["class"]) == {*(str(i) for i in range(10)), "micro avg"}
    chosen = pd.read_csv(default_run / "interpret/images.csv")
    assert 1 <= len(chosen) <= 6 and chosen["index"].is_unique


def test_diagnoses_render_in_plain_words():
    lines = render_diagnoses(
        [
            {
                "code": "overfitting",
                "severity": "warning",
                "message": "train 99 % vs validation 62 %.",
                "evidence": {"acc_gap": 0.37},
                "advice": "Regularise.",
            },
            {"code": "diverged", "severity": "error", "message": "NaN.", "advice": ""},
        ]
    )
    assert lines[0].startswith("- **Problem — diverged**")
    assert "*What to try next:* Regularise." in "\n".join(lines)
    assert "acc_gap = 0.37" in "\n".join(lines)
    assert render_diagnoses([]) == ["No problems detected by the automatic checks."]

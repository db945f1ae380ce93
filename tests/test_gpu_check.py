"""benchmarks/gpu_check.py proves itself on the CPU: ``--dry-run`` runs its steps on tiny
CIFAR-format batches and writes the CSV and markdown a GPU run would."""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest

from tests.conftest import ROOT

SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
STEPS = ["env", "pytest", "loop", "speedrun", "fast", "predict", "ddp", "compile"]


def _dry_run(tmp_path, *skip: str) -> tuple[list[dict], str]:
    out = tmp_path / "out"
    cmd = [sys.executable, str(SCRIPT), "--dry-run", "--out", str(out)]
    if skip:
        cmd += ["--skip", *skip]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=1200)
    assert (out / "gpu_check.csv").is_file(), proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = list(csv.DictReader((out / "gpu_check.csv").open()))
    markdown = (out / "gpu_check.md").read_text()
    assert proc.returncode == (0 if all(r["status"] != "failed" for r in rows) else 1)
    return rows, markdown


def test_dry_run_writes_csv_and_markdown_for_every_step(tmp_path):
    rows, markdown = _dry_run(tmp_path, *STEPS[1:])
    assert [r["step"] for r in rows][0] == "env" and rows[0]["status"] == "ok"
    facts = {r["metric"]: r["value"] for r in rows if r["step"] == "env"}
    assert facts["torch"] and facts["gpu"] in ("", "None") and facts["muon"] in ("True", "False")
    skipped = {r["step"]: r["status"] for r in rows[len(facts) :]}
    assert skipped == dict.fromkeys(STEPS[1:], "skipped")
    assert markdown.startswith("# GPU check (dry run, CPU)")
    assert all(f"| {name} |" in markdown for name in STEPS)


def test_the_script_refuses_to_run_without_data_unless_dry(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(SCRIPT)], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode != 0 and "--data" in proc.stderr


@pytest.mark.slow  # every step as a real subprocess: ~3-5 min on 2 busy cores
def test_full_dry_run_every_step_succeeds_on_cpu(tmp_path):
    rows, markdown = _dry_run(tmp_path)
    status = {r["step"]: r["status"] for r in rows}
    assert status == dict.fromkeys(STEPS, "ok"), [(r["step"], r["note"]) for r in rows]
    figures = {(r["step"], r["metric"]): r["value"] for r in rows}
    assert float(figures[("speedrun", "test_acc_mean")]) >= 0.0
    assert float(figures[("predict", "accuracy")]) == pytest.approx(
        float(figures[("predict", "run_test_acc")]), abs=1e-6
    )
    assert figures[("ddp", "status")] == "completed"
    assert "| speedrun | ok |" in markdown

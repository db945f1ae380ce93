"""The console script end to end, as a user runs it."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.conftest import only_run_dir, run_cli

TINY = [
    "dataset=synthetic",
    "dataset.num_samples=120",
    "dataset.image_size=12",
    "model.filters=[8]",
    "model.fc_neurons=[16]",
]


def test_three_epochs_write_three_rows_and_every_file(tmp_path):
    proc = run_cli(["trainer.max_epochs=3"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    run = only_run_dir(tmp_path)
    assert len(pd.read_csv(run / "metrics.csv")) == 3
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed"
    for name in (
        "curves.png",
        "report.md",
        ".hydra/config.yaml",
        ".hydra/overrides.yaml",
        "checkpoints/best.pt",
        "checkpoints/last.pt",
        "eval/confusion_matrix.png",
        "eval/classification_report.csv",
        "runner.log",
    ):
        assert (run / name).exists(), name
    assert "Traceback" not in proc.stderr


@pytest.mark.slow  # a two-job sweep; tests/test_sweep.py covers sweeps in the default run
def test_multirun_two_optimizers(tmp_path):
    proc = run_cli(["-m", "optimizer=sgd,adam", "trainer.max_epochs=2", *TINY], tmp_path)
    assert proc.returncode == 0, proc.stderr
    sweeps = list((tmp_path / "outputs" / "sweeps").iterdir())
    assert len(sweeps) == 1
    jobs = sorted(p for p in sweeps[0].iterdir() if p.is_dir() and p.name.isdigit())
    assert [p.name for p in jobs] == ["0", "1"]
    for job in jobs:
        assert json.loads((job / "summary.json").read_text())["status"] == "completed"
        assert len(pd.read_csv(job / "metrics.csv")) == 2


@pytest.mark.parametrize(
    "override,expected",
    [
        ("model=resnet99", "custom_cnn"),
        ("trainer.max_epoch=3", "max_epoch"),
        ("optimizer.lr=-1", "optimizer.lr"),
        ("trainer.max_epochs=0", "trainer.max_epochs"),
        ("trainer.batch_size=0", "trainer.batch_size"),
    ],
)
def test_bad_input_is_one_clear_message(tmp_path, override, expected):
    proc = run_cli([override], tmp_path)
    assert proc.returncode != 0
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr
    for summary in tmp_path.glob("outputs/**/summary.json"):
        assert json.loads(summary.read_text())["status"] != "completed"


def test_help_lists_groups_and_options_without_internal_schemas(tmp_path):
    proc = run_cli(["--help"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.startswith("runner: train, sweep and report")
    assert "\nmodel: " in out and "resnet18" in out and "\nexperiment: " in out
    assert "optimizer_impl: auto" in out  # the composed config with every option
    assert "schema/" not in out
    assert not (tmp_path / "outputs").exists()  # --help trains nothing


def test_every_package_is_listed_for_the_wheel():
    """pyproject.toml lists the packages explicitly (models/ and conf/ ship inside the
    runner's namespace): a new sub-package of runner/ must be listed there too."""
    import tomllib

    from tests.conftest import ROOT

    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for p in (ROOT / "runner").rglob("__init__.py")
        if not p.parent.is_symlink() and "models" not in p.parent.relative_to(ROOT).parts
    }
    assert found <= listed, sorted(found - listed)
    assert {"runner.models", "runner.conf"} <= listed

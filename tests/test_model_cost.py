"""What a run says about its model's cost when it starts: FLOPs per sample, a ResNet's stem
and how it was chosen, and a warning when the configuration costs >= 10x its obvious
alternative (runner/cost.py)."""

from __future__ import annotations

import json
import re

import pytest

from runner.train import train
from tests.conftest import compose_cfg, only_run_dir, run_cli
from tests.test_text import make_folder

# A narrow ResNet-18 on a few synthetic images: one optimizer step.
TINY = ["model=resnet18", "model.width=16", "dataset=synthetic", "dataset.num_samples=32",
        "trainer.max_epochs=1", "trainer.limit_train_batches=1", "trainer.batch_size=8",
        "diagnostics=off", "trainer.num_threads=1"]  # fmt: skip


def test_cifar_stem_at_64_px_is_named_and_warned_about_on_the_command_line(tmp_path):
    """``model.stem=cifar`` at 64 px: the log names the stem and its FLOPs and warns that it
    costs >= 10x the imagenet stem auto would pick; summary.json and report.md say it too."""
    out = run_cli([*TINY, "dataset.image_size=64", "model.stem=cifar"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    line = re.search(
        r"model cost: ([\d.]+) MFLOPs per image \(3x64x64\), stem cifar "
        r"\(model.stem=cifar; auto would pick imagenet at 64 px\)",
        out.stderr,
    )
    assert line, out.stderr
    warning = re.search(
        r"model cost: this configuration costs (\d+\.\d)x the FLOPs of "
        r"model.stem=imagenet \(([\d.]+) MFLOPs vs ([\d.]+) MFLOPs per image\)",
        out.stderr,
    )
    assert warning, out.stderr
    ratio, mine, other = (float(g) for g in warning.groups())
    assert ratio >= 10 and abs(mine / other - ratio) < 0.1 and mine == float(line.group(1))
    run = only_run_dir(tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["stem"] == "cifar" and "costs" in summary["cost_warning"]
    report = (run / "report.md").read_text()
    assert "## Model cost" in report and "**Warning:** This configuration costs" in report


@pytest.mark.parametrize(
    ("size", "setting", "line"),
    [(64, "auto", "stem imagenet (model.stem=auto: 64 px >= 64)"),
     (32, "auto", "stem cifar (model.stem=auto: 32 px < 64)"),
     (32, "cifar", "stem cifar (model.stem=cifar; auto would pick cifar at 32 px)")],
)  # fmt: skip
def test_stem_is_logged_and_auto_choices_are_not_warned_about(
    tmp_path, caplog, size, setting, line
):
    """stem=auto picks by the documented threshold (cifar below 64 px); neither it nor an
    explicit stem that auto would pick gets the warning."""
    cfg = compose_cfg([*TINY, f"dataset.image_size={size}", f"model.stem={setting}"], tmp_path)
    with caplog.at_level("INFO", logger="runner.cost"):
        summary = train(cfg)
    assert f"MFLOPs per image (3x{size}x{size}), {line}" in caplog.text
    assert "costs" not in caplog.text and "cost_warning" not in summary
    assert summary["stem"] == line.split()[1]


def test_text_run_logs_its_cost_per_text(tmp_path, caplog):
    """A recurrent model's cost is counted for a text of the run's full length: never 0."""
    folder = make_folder(tmp_path / "texts")
    cfg = compose_cfg(
        ["dataset=nusax_senti", f"dataset.path={folder}", "model=lstm",
         "model.embed_dim=16", "model.hidden_size=8", "dataset.max_length=32",
         "trainer.max_epochs=1", "diagnostics=off"],
        tmp_path / "run",
    )  # fmt: skip
    with caplog.at_level("INFO", logger="runner.cost"):
        train(cfg)
    assert "model cost: 49.2 kFLOPs per text of 32 tokens" in caplog.text

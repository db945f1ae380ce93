"""What a mistyped or invalid command says: one line with the closest names, exit code 2, no
traceback, nothing run; `--cfg job --resolve`; a sweep checked whole before its first job
(that valid sweeps still run every job: tests/test_sweep.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from runner.errors import Exit
from runner.train import train
from tests.conftest import compose_cfg, run_cli

TYPOS = [
    # (command, what stderr must say, what it must not)
    (["optimiser=sgd"], "did you mean optimizer?", "+optimiser"),
    (["optimizer=sdg"], "no optimizer named 'sdg'; did you mean sgd?", "Config search path"),
    (["+experiment=s3_resnt18"], "did you mean s3_resnet18", "Config search path"),
    (["trainer.max_epoch=3"], "did you mean trainer.max_epochs?", "+trainer.max_epoch"),
    (["+trainer.max_epoch=3"], "did you mean trainer.max_epochs?", "Traceback"),
    (["trainer.early_stopping.patiense=3"], "trainer.early_stopping.patience?", "To append"),
    (["model.filtres=[8]"], "did you mean model.filters?", "To append"),
    (["trainer.precision=bf61"], "did you mean bf16?", "object_type"),
    (
        ["+debug=smoke", "+experiment=s3_resnet18"],
        "+debug=smoke must come after +experiment=s3_resnet18",
        "CIFAR10Conf'\n",
    ),
    (["scheduler=cosine", "scheduler.T_max=-5"], "scheduler.T_max=-5 is invalid", "Traceback"),
    (["scheduler=plateau", "scheduler.factor=1.5"], "scheduler.factor=1.5 is invalid", "Trace"),
    (["scheduler=multistep", "scheduler.milestones=[60,30]"], "increasing order", "Traceback"),
]


@pytest.mark.parametrize("args,says,never", TYPOS, ids=[" ".join(t[0]) for t in TYPOS])
def test_mistakes_get_one_line_with_the_closest_name(tmp_path, args, says, never):
    proc = run_cli([*args, f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert proc.returncode == Exit.REFUSED, proc.stderr
    assert says in proc.stderr, proc.stderr
    assert never not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("runner: error: "), proc.stderr
    run = tmp_path / "run"  # nothing trained (a refusal in a fresh folder is recorded)
    assert not (run / "metrics.csv").exists() and not (run / "checkpoints").exists()


@pytest.mark.slow  # trains the preset's smoke form
def test_preset_order_message_names_a_command_that_works(tmp_path):
    proc = run_cli(["+debug=smoke", "+experiment=s3_resnet18"], cwd=tmp_path)
    command = proc.stderr.split("run: runner ", 1)[1].split()
    assert command.index("+debug=smoke") > command.index("+experiment=s3_resnet18")
    ok = run_cli([*command, f"hydra.run.dir={tmp_path / 'ok'}"], cwd=tmp_path)
    assert ok.returncode == Exit.OK, ok.stderr
    assert (tmp_path / "ok" / "summary.json").exists()


def test_cfg_job_resolve_prints_the_run_dir_and_the_data_root(tmp_path):
    proc = run_cli(
        ["--cfg", "job", "--resolve"], cwd=tmp_path, env={"RUNNER_DATA": str(tmp_path / "d")}
    )
    assert proc.returncode == Exit.OK, proc.stderr
    assert "run_dir: outputs/runs/" in proc.stdout
    assert f"root: {tmp_path / 'd'}" in proc.stdout
    assert "${" not in proc.stdout  # every interpolation resolved


def test_a_sweep_with_an_invalid_job_runs_none_and_lists_every_bad_one(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", "optimizer.lr=0.001,0,-1", "trainer.max_epochs=1", f"hydra.sweep.dir={sweep}"]
    proc = run_cli(args, cwd=tmp_path)
    assert proc.returncode == Exit.REFUSED, proc.stderr
    assert "2 of 3 sweep jobs are invalid, so none was run" in proc.stderr
    assert "job 1 (optimizer.lr=0" in proc.stderr and "job 2 (optimizer.lr=-1" in proc.stderr
    assert not sweep.exists()  # not even the sweep folder: job 0 never started


@pytest.mark.parametrize("command", ["runner-predict", "runner-export", "runner-verify"])
def test_every_command_refuses_a_missing_run_with_the_same_code(tmp_path, command):
    args = {
        "runner-predict": [str(tmp_path / "nope"), str(tmp_path)],
        "runner-export": [str(tmp_path / "nope"), "--format", "torchscript"],
        "runner-verify": [str(tmp_path / "nope")],
    }[command]
    module = {"runner-predict": "predict", "runner-export": "export", "runner-verify": "verify"}
    proc = subprocess.run(
        [sys.executable, "-m", f"runner.{module[command]}", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == Exit.REFUSED, proc.stderr
    assert "Traceback" not in proc.stderr and str(tmp_path / "nope") in proc.stderr


def test_predict_into_an_unwritable_place_is_one_line(tmp_path):
    run = tmp_path / "run"
    train(compose_cfg(["+debug=smoke", "dataset.channels=1", "diagnostics=off"], run))
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    out = blocker / "predictions.csv"
    args = [str(run), str(_some_images(tmp_path)), "--out", str(out)]
    proc = subprocess.run(
        [sys.executable, "-m", "runner.predict", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == Exit.REFUSED, proc.stderr
    assert f"cannot write {blocker}" in proc.stderr and "choose another --out" in proc.stderr
    assert "Traceback" not in proc.stderr


def _some_images(tmp_path: Path) -> Path:
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(2):
        Image.new("L", (8, 8), color=40 * i).save(folder / f"{i}.png")
    return folder

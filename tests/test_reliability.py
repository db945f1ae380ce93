"""Faults: kills, signals, torn checkpoints, divergence, mismatched checkpoints, determinism."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from runner import checkpoint
from runner.train import train
from tests.conftest import compose_cfg, run_cli

# Big enough that an epoch takes a noticeable time, small enough for CI.
DATA = [
    "dataset=synthetic",
    "dataset.num_samples=1500",
    "dataset.image_size=16",
    "model.filters=[16,32]",
    "model.fc_neurons=[64]",
    "trainer.batch_size=16",
    "trainer.max_epochs=4",
    "trainer.num_threads=1",
    "model.dropout=0.3",
]
TIMING = ["epoch_seconds", "train_images_per_second"]


def _metrics(run: Path) -> pd.DataFrame:
    return pd.read_csv(run / "metrics.csv").drop(columns=TIMING)


def _start(run: Path, extra: list[str] = ()) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("runner")
    return subprocess.Popen(
        [str(exe), *DATA, f"hydra.run.dir={run}", "trainer.progress_bar=false", *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"},
    )


def _wait_for_epochs(proc: subprocess.Popen, run: Path, epochs: int, timeout: float = 240) -> float:
    """Wait until metrics.csv has ``epochs`` rows; return the last epoch's duration."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"run ended early: {proc.stderr.read()}"
        try:
            frame = pd.read_csv(run / "metrics.csv")
            if len(frame) >= epochs:
                return float(frame.epoch_seconds.iloc[-1])
        except (FileNotFoundError, pd.errors.EmptyDataError):
            pass
        time.sleep(0.05)
    raise TimeoutError("training did not reach the epoch in time")


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> pd.DataFrame:
    """An uninterrupted run with the same seed."""
    run = tmp_path_factory.mktemp("ref") / "run"
    proc = run_cli([*DATA, f"hydra.run.dir={run}"], run.parent, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return _metrics(run)


@pytest.mark.parametrize(
    "sig",
    [signal.SIGKILL, pytest.param(signal.SIGTERM, marks=pytest.mark.slow)],
    ids=["SIGKILL", "SIGTERM"],
)
def test_killed_run_resumes_to_identical_metrics(tmp_path, reference, sig):
    run = tmp_path / "run"
    proc = _start(run)
    epoch_time = _wait_for_epochs(proc, run, 2)
    time.sleep(epoch_time / 2)  # land in the middle of epoch 3
    proc.send_signal(sig)
    proc.wait(timeout=120)
    summary = json.loads((run / "summary.json").read_text())
    if sig == signal.SIGTERM:
        assert summary["status"] == "interrupted", summary
        assert "resume" in summary["stop_reason"]
    else:
        assert summary["status"] == "running"  # killed: nothing claims it finished
    resumed = run_cli([*DATA, f"hydra.run.dir={run}", "trainer.resume=true"], tmp_path, 600)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((run / "summary.json").read_text())["status"] == "completed"
    pd.testing.assert_frame_equal(_metrics(run), reference, check_exact=True)


def test_truncated_checkpoint_is_explained(tmp_path):
    cfg = compose_cfg([*DATA, "dataset.num_samples=200", "trainer.max_epochs=1"], tmp_path / "r")
    train(cfg)
    last = tmp_path / "r" / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    proc = run_cli(
        [
            *DATA,
            "dataset.num_samples=200",
            f"hydra.run.dir={tmp_path / 'r'}",
            "trainer.resume=true",
            "trainer.max_epochs=2",
        ],
        tmp_path,
    )
    assert proc.returncode == 2
    assert "truncated" in proc.stderr and "last.pt" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_checkpoint_of_another_model_is_explained(tmp_path):
    train(compose_cfg([*DATA, "dataset.num_samples=200", "trainer.max_epochs=1"], tmp_path / "r"))
    ckpt = tmp_path / "r" / "checkpoints" / "last.pt"
    proc = run_cli(
        [*DATA, "dataset.num_samples=200", "model.filters=[8]", f"trainer.resume={ckpt}"], tmp_path
    )
    assert proc.returncode == 2
    assert "model.filters: [16, 32] in the checkpoint, [8] now" in proc.stderr
    assert "Traceback" not in proc.stderr
    (summary,) = tmp_path.glob("outputs/runs/*/summary.json")  # the refused job's record
    assert json.loads(summary.read_text())["refused"] is True
    assert not list(summary.parent.glob("checkpoints/*.pt"))


def test_divergence_ends_with_status_diverged(tmp_path):
    cfg = compose_cfg(
        [
            *DATA,
            "dataset.num_samples=400",
            "optimizer=sgd",
            "optimizer.lr=1e6",
            "optimizer.momentum=0.0",
            "model.batch_norm=false",
            "scheduler=none",
            "trainer.max_epochs=3",
        ],
        tmp_path,
    )
    summary = train(cfg)
    assert summary["status"] == "diverged"
    assert "epoch 1, step" in summary["stop_reason"] and "lr" in summary["stop_reason"]
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "diverged"
    assert not (tmp_path / "checkpoints" / "last.pt").exists()  # no NaN weights saved
    assert (tmp_path / "report.md").exists()


def test_divergence_keeps_last_good_checkpoint(tmp_path):
    """Two good epochs, then an lr jump (step schedule) blows the loss up."""
    cfg = compose_cfg(
        [
            *DATA,
            "dataset.num_samples=400",
            "optimizer=sgd",
            "optimizer.lr=0.01",
            "optimizer.momentum=0.0",
            "model.batch_norm=false",
            "scheduler=step",
            "scheduler.step_size=2",
            "scheduler.gamma=1e8",
            "trainer.max_epochs=4",
        ],
        tmp_path,
    )
    summary = train(cfg)
    assert summary["status"] == "diverged" and "epoch 3" in summary["stop_reason"]
    last = checkpoint.load(tmp_path / "checkpoints" / "last.pt")  # weights maybe in best.pt
    assert last["epoch"] == 2
    assert all(torch.isfinite(v).all() for v in last["model"].values() if v.is_floating_point())
    assert len(pd.read_csv(tmp_path / "metrics.csv")) == 2


def test_deterministic_runs_are_bit_identical(tmp_path):
    frames = []
    for name in ("a", "b"):
        cfg = compose_cfg(
            [
                *DATA,
                "dataset.num_samples=300",
                "trainer.max_epochs=2",
                "trainer.deterministic=true",
                "dataset.augment.crop_padding=2",
                "dataset.augment.hflip=true",
            ],
            tmp_path / name,
        )
        train(cfg)
        frames.append(_metrics(tmp_path / name))
    pd.testing.assert_frame_equal(frames[0], frames[1], check_exact=True)


def test_finished_run_is_skipped_on_resume(tmp_path):
    cfg = compose_cfg([*DATA, "dataset.num_samples=200", "trainer.max_epochs=1"], tmp_path)
    first = train(cfg)
    cfg.trainer.resume = True
    again = train(cfg)
    assert again == json.loads(json.dumps(first))

"""Short real trainings through ``runner.train.train``."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from runner.train import train
from tests.conftest import compose_cfg

SMOKE = [
    "dataset=synthetic",
    "dataset.num_samples=160",
    "dataset.image_size=16",
    "model.filters=[8,16]",
    "model.fc_neurons=[32]",
    "trainer.batch_size=32",
]

METRIC_COLUMNS = {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_seconds"}
SUMMARY_KEYS = {
    "status",
    "best_epoch",
    "best_val_acc",
    "best_val_loss",
    "final_train_acc",
    "final_val_acc",
    "test_acc",
    "test_macro_f1",
    "params",
    "flops",
    "train_seconds",
    "images_per_second",
    "device",
    "diagnoses",
}


def test_default_experiment_reaches_98_percent(tmp_path):
    """The README's main job: custom_cnn on digits, default settings."""
    summary = train(compose_cfg([], tmp_path))
    assert summary["test_acc"] >= 0.98, summary
    for name in (
        "metrics.csv",
        "summary.json",
        "curves.png",
        "report.md",
        "checkpoints/best.pt",
        "checkpoints/last.pt",
        "eval/confusion_matrix.csv",
        "eval/confusion_matrix.png",
        "eval/classification_report.csv",
    ):
        assert (tmp_path / name).is_file(), name
    assert set(pd.read_csv(tmp_path / "metrics.csv").columns) >= METRIC_COLUMNS
    assert set(json.loads((tmp_path / "summary.json").read_text())) >= SUMMARY_KEYS
    report = pd.read_csv(tmp_path / "eval/classification_report.csv")
    assert {"precision", "recall", "f1", "support", "auc"} <= set(report.columns)
    assert {"macro avg", "weighted avg"} <= set(report["class"])


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw", "rmsprop"])
def test_each_optimizer_learns(tmp_path, optimizer):
    lr = {"sgd": 0.05, "adam": 3e-3, "adamw": 3e-3, "rmsprop": 1e-3}[optimizer]
    cfg = compose_cfg(
        [*SMOKE, f"optimizer={optimizer}", f"optimizer.lr={lr}", "trainer.max_epochs=4"], tmp_path
    )
    summary = train(cfg)
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    assert len(metrics) == 4
    assert metrics.train_loss.iloc[-1] < metrics.train_loss.iloc[0]
    assert summary["best_val_acc"] > 0.5  # 4 classes: chance is 0.25


@pytest.mark.parametrize(
    "scheduler", ["none", "step", "multistep", "cosine", "onecycle", "cyclic", "plateau"]
)
def test_each_scheduler_runs_and_moves_lr(tmp_path, scheduler):
    extra = {
        "step": ["scheduler.step_size=1", "scheduler.gamma=0.5"],
        "multistep": ["scheduler.milestones=[1,2]"],
        "plateau": ["scheduler.patience=0", "scheduler.monitor=train_acc"],
    }.get(scheduler, [])
    cfg = compose_cfg([*SMOKE, f"scheduler={scheduler}", "trainer.max_epochs=3", *extra], tmp_path)
    train(cfg)
    lrs = pd.read_csv(tmp_path / "metrics.csv").lr.tolist()
    if scheduler == "none":
        assert lrs == [lrs[0]] * 3
    elif scheduler != "plateau":  # plateau only moves when the metric stalls
        assert len(set(lrs)) > 1, lrs


def test_warmup_raises_lr_linearly(tmp_path):
    cfg = compose_cfg(
        [
            *SMOKE,
            "scheduler=none",
            "scheduler.warmup_epochs=2",
            "scheduler.warmup_start_factor=0.1",
            "trainer.max_epochs=3",
            "optimizer.lr=0.01",
        ],
        tmp_path,
    )
    train(cfg)
    lrs = pd.read_csv(tmp_path / "metrics.csv").lr.tolist()
    assert lrs[0] < lrs[1] < 0.01 and lrs[2] == pytest.approx(0.01)


def test_early_stopping_ends_before_last_epoch(tmp_path):
    cfg = compose_cfg(
        [
            *SMOKE,
            "optimizer.lr=0.05",
            "trainer.max_epochs=40",
            "trainer.early_stopping.patience=2",
            "trainer.early_stopping.monitor=val_acc",
            "trainer.monitor=val_acc",  # the best epoch by the same metric
            "scheduler=none",
        ],
        tmp_path,
    )
    summary = train(cfg)
    rows = len(pd.read_csv(tmp_path / "metrics.csv"))
    assert summary["status"] == "early_stopped"
    assert rows < 40 and summary["best_epoch"] < rows


def test_checkpoints_load_weights_only(tmp_path):
    train(compose_cfg([*SMOKE, "trainer.max_epochs=2"], tmp_path))
    best = torch.load(tmp_path / "checkpoints" / "best.pt", weights_only=True)
    assert {"model", "epoch", "config", "classes", "data"} == set(best)
    last = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert {"optimizer", "scheduler", "rng", "epoch", "config"} <= set(last)
    assert last["epoch"] == 2


def test_same_seed_same_metrics(tmp_path):
    frames = []
    for name in ("a", "b"):
        train(compose_cfg([*SMOKE, "trainer.max_epochs=3", "model.dropout=0.3"], tmp_path / name))
        frames.append(
            pd.read_csv(tmp_path / name / "metrics.csv").drop(
                columns=["epoch_seconds", "train_images_per_second"]
            )
        )
    pd.testing.assert_frame_equal(frames[0], frames[1], check_exact=True)


def test_class_weights_balanced_runs(tmp_path):
    summary = train(
        compose_cfg([*SMOKE, "trainer.max_epochs=1", "trainer.class_weights=balanced"], tmp_path)
    )
    assert summary["status"] == "completed"

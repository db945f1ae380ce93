"""Experiment trackers: a short real run logs to CSV, TensorBoard and an MLflow SQLite store,
which are read back with each tool's own reader."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import open_dict

from runner.errors import ConfigError
from runner.tracking import build_loggers
from runner.tracking.base import RunContext, flat_params
from runner.tracking.mlflow_logger import default_experiment, default_tracking_uri
from runner.tracking.tensorboard_logger import scalar_tag
from runner.train import train
from tests.conftest import compose_cfg

TINY = [
    "model.filters=[8,16]",
    "model.fc_neurons=[32]",
    "trainer.max_epochs=2",
    "trainer.log_every_n_steps=5",
    "diagnostics=off",
]


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory):
    """One 2-epoch digits run with all three trackers; MLflow in a SQLite file."""
    root = tmp_path_factory.mktemp("tracked")
    db = root / "outputs" / "mlflow.db"
    cfg = compose_cfg(
        [*TINY, "logger=many", f"logger.mlflow.tracking_uri=sqlite:///{db}"],
        root / "outputs" / "runs" / "run1",
    )
    summary = train(cfg)
    run_dir = Path(cfg.run_dir)
    return {
        "run_dir": run_dir,
        "summary": summary,
        "metrics": pd.read_csv(run_dir / "metrics.csv"),
        "uri": f"sqlite:///{db}",
    }


def test_logger_group_composes_one_several_or_all():
    assert not compose_cfg([]).logger
    assert list(compose_cfg(["logger=tensorboard"]).logger) == ["tensorboard"]
    assert list(compose_cfg(["logger=[csv,mlflow]"]).logger) == ["csv", "mlflow"]
    assert list(compose_cfg(["logger=many"]).logger) == ["csv", "tensorboard", "mlflow"]
    with pytest.raises(Exception, match="lgo_dir"):
        compose_cfg(["logger=tensorboard", "logger.tensorboard.lgo_dir=x"])


def test_unknown_tracker_name_lists_the_valid_ones(tmp_path):
    cfg = compose_cfg([], tmp_path)
    assert build_loggers(cfg, tmp_path) == []
    with open_dict(cfg):
        cfg.logger = {"wandb": {}}
    with pytest.raises(ConfigError, match="csv, tensorboard, mlflow"):
        build_loggers(cfg, tmp_path)


def test_tensorboard_events_hold_epoch_scalars_and_hparams(tracked_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    events = EventAccumulator(str(tracked_run["run_dir"] / "tensorboard"), size_guidance={})
    events.Reload()
    metrics, summary = tracked_run["metrics"], tracked_run["summary"]
    for column in ("train_loss", "val_loss", "val_acc", "lr"):
        logged = events.Scalars(scalar_tag(column))
        assert [e.step for e in logged] == metrics["epoch"].tolist()
        assert [e.value for e in logged] == pytest.approx(metrics[column].tolist(), rel=1e-6)
    assert len(events.Scalars("step/train_loss")) >= 2  # every 5 steps
    final = events.Scalars("hparam/test_acc")
    assert final[-1].value == pytest.approx(summary["test_acc"], rel=1e-6)
    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert hparams["optimizer.lr"].number_value == pytest.approx(1e-3)
    assert hparams["model.name"].string_value == "custom_cnn"


def test_mlflow_sqlite_store_holds_params_metrics_and_artifacts(tracked_run):
    from mlflow.tracking import MlflowClient

    pointer = json.loads((tracked_run["run_dir"] / "tracking" / "mlflow_run.json").read_text())
    assert pointer["tracking_uri"] == tracked_run["uri"]
    client = MlflowClient(tracking_uri=tracked_run["uri"])
    run = client.get_run(pointer["run_id"])
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "runner"
    assert run.data.params["optimizer.lr"] == "0.001"
    assert run.data.params["model.filters"] == "[8, 16]"
    assert run.data.tags["runner.status"] == "completed"
    history = client.get_metric_history(run.info.run_id, "val_acc")
    metrics = tracked_run["metrics"]
    assert [m.step for m in history] == metrics["epoch"].tolist()
    assert [m.value for m in history] == pytest.approx(metrics["val_acc"].tolist(), rel=1e-6)
    assert run.data.metrics["test_acc"] == pytest.approx(tracked_run["summary"]["test_acc"])
    top = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"curves.png", "summary.json", "report.md", "metrics.csv", "eval"} <= top
    evals = {a.path for a in client.list_artifacts(run.info.run_id, "eval")}
    assert "eval/confusion_matrix.png" in evals


def test_csv_tracker_writes_steps_and_hparams(tracked_run):
    steps = pd.read_csv(tracked_run["run_dir"] / "tracking" / "steps.csv")
    assert list(steps.columns) == ["step", "epoch", "batch", "train_loss", "lr"]
    assert len(steps) >= 2 and (steps["step"] % 5 == 0).all()
    assert steps["train_loss"].map(math.isfinite).all()
    hparams = pd.read_csv(tracked_run["run_dir"] / "tracking" / "hparams.csv")
    assert hparams.loc[0, "status"] == "completed"
    assert hparams.loc[0, "test_acc"] == pytest.approx(tracked_run["summary"]["test_acc"])
    assert hparams.loc[0, "optimizer.lr"] == pytest.approx(1e-3)


def test_sweep_jobs_share_one_experiment_and_store(tmp_path):
    sweep = tmp_path / "outputs" / "sweeps" / "2026-01-01_12-00-00_abc123"
    job = RunContext(sweep / "3", sweep_dir=sweep, job_num=3, overrides=["optimizer.lr=0.1"])
    single = RunContext(tmp_path / "outputs" / "runs" / "r1")
    assert default_experiment(job) == "sweep-2026-01-01_12-00-00_abc123"
    assert default_experiment(single) == "runner"
    expected = f"sqlite:///{(tmp_path / 'outputs' / 'mlflow.db').resolve()}"
    assert default_tracking_uri(job) == default_tracking_uri(single) == expected
    elsewhere = RunContext(tmp_path / "my_runs" / "r1")  # no "outputs" folder above
    assert default_tracking_uri(elsewhere).endswith("my_runs/mlflow.db")


def test_flat_params_are_tracker_friendly():
    params = flat_params(compose_cfg(["optimizer=sgd"]))
    assert params["optimizer.momentum"] == 0.9
    assert params["trainer.early_stopping.patience"] == 10
    assert isinstance(params["model.filters"], str)
    assert not any(k.endswith("_partial_") for k in params)
    assert all(isinstance(v, (bool, int, float, str)) for v in params.values())

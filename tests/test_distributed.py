"""Data-parallel training with torchrun: two Gloo processes on the CPU train one run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

import runner
from runner.distributed import reduce_sums, shard, shard_order
from runner.train import train
from tests.conftest import compose_cfg

RUN = ["trainer.max_epochs=2", "diagnostics=off", "trainer.progress_bar=false"]


def test_shards_of_one_permutation_are_disjoint_and_equal():
    order = torch.randperm(1257, generator=torch.Generator().manual_seed(0))
    parts = [shard_order(order, r, 2) for r in range(2)]
    assert len(parts[0]) == len(parts[1]) == 628
    assert not set(parts[0].tolist()) & set(parts[1].tolist())
    assert set(torch.cat(parts).tolist()) <= set(order.tolist())
    assert shard_order(order, 0, 1).equal(order)


def test_single_process_is_rank_zero_of_one():
    assert shard() == (0, 1)
    loss, correct, seen = reduce_sums(torch.tensor(2.5), torch.tensor(3), 7)
    assert loss.item() == 2.5 and correct.item() == 3 and seen == 7


def _torchrun(args: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    # torchrun's own module, run by this interpreter (a `torchrun` on PATH may be another's)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += ["-m", "runner", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow  # two torchrun processes
def test_two_gloo_processes_train_one_run_like_one_process(tmp_path):
    """Same accuracy band as one process, one run directory, trackers only on rank 0."""
    single = train(compose_cfg(RUN, tmp_path / "single"))
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch), "RUNNER_TEST": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    args = [*RUN, "trainer.num_threads=1", "logger=csv", "trainer.log_every_n_steps=5"]
    proc = _torchrun(args, tmp_path, env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = list((tmp_path / "outputs" / "runs").iterdir())
    assert len(runs) == 1, runs  # rank 1's Hydra directory is gone
    assert not list(scratch.glob("runner-rank*"))  # rank 1's private copies are removed at exit
    run_dir = runs[0]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert abs(summary["test_acc"] - single["test_acc"]) <= 0.03, (summary, single)
    assert summary["test_acc"] >= 0.9
    assert "data-parallel: 2 processes (gloo)" in proc.stderr
    # the global batch is trainer.batch_size: as many optimizer steps per epoch as one process
    steps = pd.read_csv(run_dir / "tracking" / "steps.csv")
    assert steps["step"].is_unique and steps["step"].max() <= 2 * (1257 // 64 + 1)
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert list(metrics["epoch"]) == [1, 2]
    # the checkpoint holds the plain model (no DistributedDataParallel "module." prefix)
    model = runner.load_run(run_dir).model
    assert not any(k.startswith("module.") for k in model.state_dict())


@pytest.mark.slow  # two processes building a torchvision model; minutes on 2 busy cores
def test_two_gloo_processes_fine_tune_a_hub_model_with_frozen_stages(tmp_path):
    """DistributedDataParallel over a torchvision model with its first stages frozen (they
    get no gradient, so DDP leaves them out) and discriminative learning rates."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch), "RUNNER_TEST": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    args = [
        "model=torchvision",
        "model.arch=mobilenet_v3_small",
        "model.freeze=2",
        "trainer.backbone_lr_ratio=0.1",
        "dataset=synthetic",
        "dataset.image_size=32",
        "dataset.num_samples=128",
        "diagnostics=off",
        "trainer.max_epochs=1",
        "trainer.num_threads=1",
        "trainer.progress_bar=false",
    ]
    proc = _torchrun(args, tmp_path, env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = list((tmp_path / "outputs" / "runs").iterdir())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["frozen"].startswith("2 of ")
    assert summary["trainable_params"] < summary["params"]


def test_unfreezing_is_refused_under_torchrun(monkeypatch):
    from runner.errors import ConfigError
    from runner.validate import validate

    monkeypatch.setenv("WORLD_SIZE", "2")
    cfg = compose_cfg(["model.freeze=backbone", "trainer.unfreeze_at_epoch=2"])
    with pytest.raises(ConfigError, match="not supported under torchrun"):
        validate(cfg)

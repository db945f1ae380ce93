"""Every CUDA-specific path of the runner, one test each (``pytest -m gpu``; skipped
without a CUDA device). benchmarks/gpu_check.py runs them on a GPU machine.

Already elsewhere: bf16, fp16 + GradScaler, channels_last and compile runs
(tests/test_perf_options.py), batched augmentation on CUDA against the CPU
(tests/test_augment.py). Here: the divergence path under fp16, fused optimizers,
GPU-resident data with the speed preset's augmentation, EMA, predict and export from a CUDA
run, NCCL DDP in one process, ``cuda:N``, GPUs assigned to parallel sweep jobs, the speed
preset itself (MuonSGD's bf16 Newton-Schulz, compile=auto, flip_translate).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from runner import build
from runner.data.loader import BatchLoader, LoaderOptions
from runner.train import train
from tests.conftest import ROOT, compose_cfg

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

SYNTH = [
    "dataset=synthetic", "dataset.num_samples=256", "dataset.image_size=16",
    "model.filters=[8,16]", "model.fc_neurons=[32]", "trainer.batch_size=32",
    "trainer.max_epochs=2", "diagnostics=off", "trainer.progress_bar=false",
]  # fmt: skip


def _run(tmp_path: Path, *overrides: str) -> dict:
    return train(compose_cfg([*SYNTH, "trainer.device=cuda", *overrides], tmp_path / "run"))


def test_fp16_divergence_ends_the_run_as_diverged(tmp_path):
    summary = _run(tmp_path, "trainer.precision=16-mixed", "optimizer.lr=1e12")
    assert summary["status"] == "diverged", summary
    assert "NaN/inf" in summary["stop_reason"]


def test_fused_optimizer_on_cuda(tmp_path):
    cfg = compose_cfg([*SYNTH, "trainer.device=cuda"], tmp_path)
    model = build.build_model(cfg, build.build_data(cfg)).cuda()
    opt = build.build_optimizer(cfg.optimizer, model, "auto")
    assert opt.defaults.get("fused") is True
    assert _run(tmp_path, "trainer.optimizer_impl=fused")["status"] == "completed"


def test_gpu_resident_data_with_translate_and_alternating_flips(tmp_path):
    cfg = compose_cfg(
        [*SYNTH, "dataset.augment.translate=2", "dataset.augment.alternating_flip=true"], tmp_path
    )
    data = build.build_data(cfg)
    device = torch.device("cuda")
    loader = BatchLoader(data.train, data, LoaderOptions(32, device, train=True, seed=1))
    assert loader.x.is_cuda and loader._flip_base.is_cuda
    x, y = next(iter(loader.epoch(1)))
    assert x.is_cuda and y.is_cuda and x.dtype == torch.float32
    cpu = BatchLoader(data.train, data, LoaderOptions(32, torch.device("cpu"), train=True, seed=1))
    assert x.shape == next(iter(cpu.epoch(1)))[0].shape


def test_ema_on_cuda(tmp_path):
    summary = _run(tmp_path, "trainer.ema_decay=0.9")
    assert summary["status"] == "completed" and summary["device"].startswith("cuda")


def test_predict_and_export_from_a_cuda_run(tmp_path):
    from runner.predict import Predictor

    summary = _run(tmp_path, "trainer.precision=bf16", "trainer.tta=flip_translate")
    run = tmp_path / "run"
    assert summary["status"] == "completed"
    images = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8)
    on_gpu = Predictor.from_run(run, device="cuda").probabilities(images)
    on_cpu = Predictor.from_run(run, device="cpu").probabilities(images)
    torch.testing.assert_close(on_gpu, on_cpu, atol=1e-3, rtol=0)
    proc = subprocess.run(
        [sys.executable, "-m", "runner.export", str(run), "--format", "torchscript"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_ddp_with_nccl_in_one_process(tmp_path):
    run = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=1", "--standalone",
        "-m", "runner", *SYNTH, "trainer.device=cuda", f"hydra.run.dir={run}",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((run / "summary.json").read_text())["status"] == "completed"
    assert "nccl" in (run / "runner.log").read_text().lower()


def test_cuda_index_selects_that_gpu(tmp_path):
    last = torch.cuda.device_count() - 1
    assert _run(tmp_path, f"trainer.device=cuda:{last}")["device"] == f"cuda:{last}"


def test_parallel_sweep_jobs_take_gpus_in_turn(monkeypatch):
    from runner.runtime import resolve_device

    count = torch.cuda.device_count()
    for job in range(2 * count):
        monkeypatch.setenv("RUNNER_JOB_NUM", str(job))
        assert resolve_device("auto") == torch.device("cuda", job % count)
        assert resolve_device("cuda") == torch.device("cuda", job % count)


def test_speed_preset_on_cuda(tmp_path, caplog):
    caplog.set_level("INFO")
    summary = train(
        compose_cfg(
            [
                "+experiment=cifar10_speedrun",
                "dataset=synthetic",
                "dataset.num_samples=1000",
                "dataset.image_size=32",
                "dataset.val_fraction=0.1",
                "trainer.max_epochs=2",
                "trainer.device=cuda",
                "trainer.progress_bar=false",
            ],
            tmp_path / "run",
        )  # fmt: skip
    )
    assert summary["status"] == "completed", summary
    assert "torch.compile" in caplog.text  # compile=auto compiles on CUDA
    assert summary["precision"] in ("bf16", "16-mixed") and summary["channels_last"]

"""Checkpoints that respect the disk: best.pt holds weights only, last.pt what a resume needs
(without repeating the best weights), trainer.save, and runner-clean."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from filelock import FileLock

import runner
from runner import checkpoint
from runner.rundir import KEPT_BEST, RunDir
from runner.train import train
from tests.conftest import compose_cfg, run_cli

SYN = [
    "dataset=synthetic",
    "dataset.num_samples=160",
    "dataset.image_size=16",
    "model.filters=[8,16]",
    "model.fc_neurons=[32]",
    "model.batch_norm=false",
    "trainer.batch_size=32",
    "trainer.early_stopping.enabled=false",
    "diagnostics=off",
]
# epoch 1 trains; from epoch 2 the lr is ~1e-33: the weights, hence val_acc, stay as they
# were, so epoch 1 stays the best and the last epoch is another
BEST_FIRST = ["scheduler=step", "scheduler.step_size=1", "scheduler.gamma=1e-30"]
BEST_FIRST += ["trainer.monitor=val_acc"]


def _files(run: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in (run / "checkpoints").iterdir()}


def _raw(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _clean(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "runner.clean", *args], capture_output=True, text=True, timeout=120
    )


def test_resnet18_run_directory_fits_the_budget(tmp_path):
    """ResNet-18 (width 8) with Adam and the default trainer.save=both, best epoch = last:
    best.pt is the weights (1x fp32), last.pt the optimizer state (Adam: 2x) without a second
    copy of the weights — checkpoints <= 3.2x the weights, the run <= that + 1 MB."""
    run = tmp_path / "r18"
    overrides = [
        "model=resnet18",
        "model.width=8",
        "dataset=synthetic",
        "dataset.num_samples=64",
        "dataset.image_size=8",
        "trainer.max_epochs=1",
        "trainer.batch_size=16",
        "diagnostics=off",
    ]
    summary = train(compose_cfg(overrides, run))
    assert summary["best_epoch"] == summary["epochs_run"] == 1
    weights = 4 * summary["params"]  # fp32 bytes
    files = _files(run)
    assert set(files) == {"best.pt", "last.pt"}
    checkpoints = sum(files.values())
    print(f"checkpoints {checkpoints / weights:.3f} x the fp32 weights; files {files}")
    assert checkpoints <= 3.2 * weights, (checkpoints / weights, files)
    total = sum(p.stat().st_size for p in run.rglob("*") if p.is_file())
    assert total <= 3.2 * weights + 1_000_000, (total, weights)
    best, last = _raw(run / "checkpoints/best.pt"), _raw(run / "checkpoints/last.pt")
    assert set(best) == set(checkpoint.WEIGHTS_KEYS)  # no optimizer state
    assert "model" not in last and last[checkpoint.SHARED]
    assert abs(files["best.pt"] - weights) < 0.1 * weights  # weights, once


def test_best_then_other_epochs(tmp_path):
    """Best epoch 1, last epoch 3: best.pt stays epoch 1's weights; last.pt holds its own."""
    run = tmp_path / "r"
    summary = train(compose_cfg([*SYN, *BEST_FIRST, "trainer.max_epochs=3"], run))
    assert summary["best_epoch"] == 1 and summary["epochs_run"] == 3
    best, last = _raw(run / "checkpoints/best.pt"), _raw(run / "checkpoints/last.pt")
    assert best["epoch"] == 1 and last["epoch"] == 3
    assert "optimizer" not in best and "model" in last and not last.get(checkpoint.SHARED)
    assert set(_files(run)) == {"best.pt", "last.pt"}  # no kept link left behind


def test_consecutive_best_epochs_share_weights(tmp_path):
    """Each epoch better than the last: last.pt never repeats best.pt's weights, and
    load() gives last.pt the weights of its own epoch."""
    run = tmp_path / "r"
    summary = train(compose_cfg([*SYN, "trainer.max_epochs=2", "optimizer.lr=3e-3"], run))
    assert summary["best_epoch"] == summary["epochs_run"] == 2
    raw = _raw(run / "checkpoints/last.pt")
    assert "model" not in raw and raw["epoch"] == 2
    best = _raw(run / "checkpoints/best.pt")
    loaded = checkpoint.load(run / "checkpoints/last.pt")
    assert _same_weights(loaded["model"], best["model"])
    assert set(_files(run)) == {"best.pt", "last.pt"}


def test_killed_between_best_and_last_still_resumes(tmp_path, monkeypatch):
    """A failure after best.pt is replaced but before last.pt is: the last.pt on disk (an
    earlier epoch, sharing best.pt's weights) still finds its own weights (the kept link)."""
    run = tmp_path / "r"
    train(compose_cfg([*SYN, "trainer.max_epochs=1"], run))
    before = checkpoint.load(run / "checkpoints/last.pt")
    assert "model" not in _raw(run / "checkpoints/last.pt")

    files = checkpoint.CheckpointFiles.of(RunDir(run), "both")
    newer = {**before, "epoch": 2, "model": {k: v + 1 for k, v in before["model"].items()}}
    real_save = checkpoint.save

    def killed_at_last(path, content):
        if Path(path).name == "last.pt":
            raise OSError(28, "No space left on device")
        return real_save(path, content)

    monkeypatch.setattr(checkpoint, "save", killed_at_last)
    with pytest.raises(OSError):
        files.write(newer, best=True)
    assert _raw(run / "checkpoints/best.pt")["epoch"] == 2  # replaced
    assert (run / "checkpoints" / KEPT_BEST).exists()
    after = checkpoint.load(run / "checkpoints/last.pt")  # still epoch 1, its own weights
    assert after["epoch"] == 1 and _same_weights(after["model"], before["model"])

    monkeypatch.setattr(checkpoint, "save", real_save)
    files = checkpoint.CheckpointFiles.of(RunDir(run), "both")  # as a resumed run would
    files.write(newer, best=False)
    assert not (run / "checkpoints" / KEPT_BEST).exists()
    assert checkpoint.load(run / "checkpoints/last.pt")["epoch"] == 2


@pytest.mark.parametrize("save", ["best", "last", "none"])
def test_each_save_choice(tmp_path, save):
    """Each trainer.save writes only its files, and every one tests the best epoch's
    weights (the same test accuracy as trainer.save=both)."""
    args = [*SYN, *BEST_FIRST, "trainer.max_epochs=2"]
    both = train(compose_cfg(args, tmp_path / "both"))
    run = tmp_path / save
    summary = train(compose_cfg([*args, f"trainer.save={save}"], run))
    assert summary["best_epoch"] == both["best_epoch"] == 1
    assert summary["test_acc"] == both["test_acc"] and summary["test_loss"] == both["test_loss"]
    expected = {"best": {"best.pt"}, "last": {"last.pt"}, "none": set()}[save]
    present = set(_files(run)) if (run / "checkpoints").exists() else set()
    assert present == expected
    if save == "last":
        assert "model" in _raw(run / "checkpoints/last.pt")  # nothing to share with


def test_resume_with_save_best_drops_the_earlier_last(tmp_path):
    """A run resumed with trainer.save=best keeps no last.pt from before the resume."""
    run = tmp_path / "r"
    train(compose_cfg([*SYN, "trainer.max_epochs=1"], run))
    args = [*SYN, "trainer.max_epochs=2", "trainer.resume=true", "trainer.save=best"]
    summary = train(compose_cfg(args, run))
    assert summary["epochs_run"] == 2 and set(_files(run)) == {"best.pt"}


def test_save_last_predicts_with_last_weights_and_says_so(tmp_path, caplog):
    run = tmp_path / "r"
    train(compose_cfg([*SYN, *BEST_FIRST, "trainer.max_epochs=2", "trainer.save=last"], run))
    loaded = runner.load_run(run)
    with caplog.at_level("WARNING"):
        model = loaded.model
    assert "no checkpoints/best.pt" in caplog.text and "last epoch" in caplog.text
    assert _same_weights(model.state_dict(), _raw(run / "checkpoints/last.pt")["model"])


def test_resume_without_last_says_why(tmp_path):
    """trainer.save=best keeps no last.pt: a resume is refused and says so."""
    run = tmp_path / "r"
    args = [*SYN, "trainer.max_epochs=1", "trainer.save=best"]
    train(compose_cfg(args, run))
    proc = run_cli(
        [*args, "trainer.max_epochs=2", "trainer.resume=true", f"hydra.run.dir={run}"], tmp_path
    )
    assert proc.returncode == 2, proc.stderr
    assert "without checkpoints/last.pt" in proc.stderr and "trainer.save=best" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert json.loads((run / "summary.json").read_text())["epochs_run"] == 1  # untouched


def test_resume_from_a_best_pt_is_refused(tmp_path):
    run = tmp_path / "r"
    train(compose_cfg([*SYN, "trainer.max_epochs=1"], run))
    best = run / "checkpoints/best.pt"
    proc = run_cli([*SYN, f"trainer.resume={best}", f"hydra.run.dir={tmp_path / 'n'}"], tmp_path)
    assert proc.returncode == 2 and "holds weights only" in proc.stderr, proc.stderr


def test_runner_clean(tmp_path):
    """runner-clean frees the finished runs of a sweep folder, skips a running one and one
    whose lock is held; predict keeps working; a resume of a cleaned run says why not."""
    sweep = tmp_path / "sweep"
    args = [*SYN, *BEST_FIRST, "trainer.max_epochs=2"]
    for name in ("0", "1", "2"):
        train(compose_cfg(args, sweep / name))
    (sweep / "1" / "summary.json").write_text(json.dumps({"status": "running"}))
    sizes = {n: sum(_files(sweep / n).values()) for n in ("0", "1", "2")}
    lock = FileLock(str(sweep / "2" / ".lock"))

    dry = _clean(str(sweep), "--dry-run")
    assert dry.returncode == 0 and "would remove last.pt" in dry.stdout
    assert (sweep / "0/checkpoints/last.pt").exists()

    with lock:
        proc = _clean(str(sweep))
    assert proc.returncode == 0, proc.stderr
    assert not (sweep / "0/checkpoints/last.pt").exists()
    assert (sweep / "0/checkpoints/best.pt").exists()
    freed = sizes["0"] - (sweep / "0/checkpoints/best.pt").stat().st_size
    assert f"removed last.pt ({freed / 1e6:.1f} MB)" in proc.stdout or f"{freed / 1e3:.1f} kB" in (
        proc.stdout
    )
    assert "skipped" in proc.stdout and "status running" in proc.stdout
    assert "holds its lock" in proc.stdout
    for busy in ("1", "2"):  # untouched
        assert set(_files(sweep / busy)) == {"best.pt", "last.pt"}

    assert runner.load_run(sweep / "0").model is not None  # predict/export read best.pt
    resumed = run_cli(
        [*args, "trainer.max_epochs=3", "trainer.resume=true", f"hydra.run.dir={sweep / '0'}"],
        tmp_path,
    )
    assert resumed.returncode == 2 and "runner-clean" in resumed.stderr, resumed.stderr

    everything = _clean(str(sweep / "0"), "--keep", "none")
    assert everything.returncode == 0 and "removed best.pt" in everything.stdout
    assert not list((sweep / "0/checkpoints").iterdir())
    assert (sweep / "0/summary.json").exists() and (sweep / "0/metrics.csv").exists()
    assert _clean(str(tmp_path / "absent")).returncode == 2

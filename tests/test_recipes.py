"""Training recipes: mixup/CutMix, gradient accumulation, the lr range test, k-fold
cross-validation, the time budget and precision=auto — each on real data and real runs."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from runner import checkpoint
from runner.data.mixing import BatchMixer, Mixed, cutmix_box
from runner.data.splits import groups_from_regex, kfold_indices
from runner.errors import ConfigError
from runner.precision import resolve_channels_last, resolve_precision
from runner.runtime import native_bf16
from runner.time_limit import parse_duration
from runner.train import train
from tests.conftest import SHARED_DATA, compose_cfg, run_cli

QUICK = ["diagnostics=off", "trainer.early_stopping.enabled=false"]

# ------------------------------------------------------------------ mixup / CutMix


def test_mixup_blends_with_the_rolled_batch_and_weights_labels_by_lam():
    x = torch.rand(8, 3, 10, 12)
    y = torch.arange(8) % 5
    mixer = BatchMixer(mixup_alpha=0.4, cutmix_alpha=0.0, seed=1)
    out, mixed = mixer.mix(x, y, (1, 0))
    lam = mixed.lam
    assert mixed.method == "mixup" and 0 < lam < 1
    assert torch.allclose(out, lam * x + (1 - lam) * x.roll(1, 0), atol=1e-6)
    assert torch.equal(mixed.y, y) and torch.equal(mixed.y_partner, y.roll(1, 0))
    soft = mixed.soft_targets(5)
    assert torch.allclose(soft.sum(1), torch.ones(8))
    for i in range(8):
        expected = torch.zeros(5)
        expected[y[i]] += lam
        expected[y[i - 1]] += 1 - lam
        assert torch.allclose(soft[i], expected)
    # the loss on mixed targets is cross-entropy against those soft labels
    logits = torch.randn(8, 5)
    assert torch.allclose(mixed.loss(F.cross_entropy, logits), F.cross_entropy(logits, soft))
    same, _ = mixer.mix(x, y, (1, 0))
    other, _ = mixer.mix(x, y, (1, 1))
    assert torch.equal(out, same) and not torch.equal(out, other)  # seeded by (epoch, batch)


def test_cutmix_pastes_a_box_and_lam_is_its_real_area():
    x = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 2, 16, 20).contiguous()  # image i = i
    y = torch.tensor([0, 1, 2, 3])
    mixer = BatchMixer(mixup_alpha=0.0, cutmix_alpha=1.0, seed=3)
    for batch in range(20):
        out, mixed = mixer.mix(x, y, (0, batch))
        assert mixed.method == "cutmix"
        pasted = (out != x).float().mean(dim=(1, 2, 3))  # share of pixels from the partner
        assert torch.allclose(pasted, torch.full((4,), 1 - mixed.lam), atol=1e-6)
        assert ((out == x) | (out == x.roll(1, 0))).all()
    top, bottom, left, right = cutmix_box(0.75, 16, 20, 0.0, 0.0)  # clipped at the corner
    assert (top, left) == (0, 0) and bottom == 4 and right == 5


def test_switch_and_mix_probabilities():
    mixer = BatchMixer(mixup_alpha=0.2, cutmix_alpha=1.0, switch_prob=0.3, prob=0.8, seed=0)
    methods = [mixer.draw((0, i))[0] for i in range(4000)]
    share = {m: methods.count(m) / 4000 for m in ("none", "mixup", "cutmix")}
    assert share["none"] == pytest.approx(0.2, abs=0.03)
    assert share["cutmix"] == pytest.approx(0.8 * 0.3, abs=0.03)
    assert isinstance(Mixed(torch.zeros(1), torch.zeros(1), 1.0, "mixup").lam, float)


# ------------------------------------------------------------------ gradient accumulation


def _fit(overrides: list[str], run: Path) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """Build and fit a run as ``train`` does (no test pass or report): final weights and
    the metrics rows."""
    from runner import build
    from runner.rundir import RunDir
    from runner.runtime import seed_everything

    cfg = compose_cfg(overrides, run)
    seed_everything(cfg.trainer.seed)
    data = build.build_data(cfg)
    model = build.build_model(cfg, data)
    loop = build.build_run(cfg, data, model, torch.device("cpu"), RunDir(run)).loop
    loop.fit()
    return loop.model.state_dict(), loop.state.history


def test_accumulated_small_batches_equal_the_large_batch(tmp_path):
    """No BatchNorm, no dropout: 4 x 16 accumulated = 64 at once, with a one-cycle
    schedule stepped per optimizer step (the epoch's last group is a short one)."""
    common = [
        "model.batch_norm=false", "model.dropout=0", "optimizer=sgd", "optimizer.lr=0.05",
        "scheduler=onecycle", "trainer.max_epochs=2", "trainer.save=none", *QUICK,
    ]  # fmt: skip
    large, rows_large = _fit([*common, "trainer.batch_size=64"], tmp_path / "large")
    accumulated = [*common, "trainer.batch_size=16", "trainer.accumulate_grad_batches=4"]
    small, rows_small = _fit(accumulated, tmp_path / "small")
    for key in large:
        assert torch.allclose(large[key], small[key], rtol=1e-4, atol=2e-6), key
    for a, b in zip(rows_large, rows_small):
        assert a["lr"] == pytest.approx(b["lr"]) and a["val_loss"] == pytest.approx(b["val_loss"])
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
    plain, _ = _fit([*common, "trainer.batch_size=16"], tmp_path / "plain")
    assert not torch.allclose(plain["features.0.conv.weight"], small["features.0.conv.weight"])


# ------------------------------------------------------------------ lr range test


def test_lr_find_writes_its_files_and_suggests_an_lr_in_range(tmp_path, monkeypatch, capsys):
    from runner.lr_find import main

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "lrf"
    args = ["--start-lr", "1e-5", "--end-lr", "1", "--steps", "60", "--out", str(out)]
    assert main([*args, "trainer.num_threads=2"]) == 0
    table = pd.read_csv(out / "lr_find.csv")
    assert list(table.columns) == ["step", "lr", "loss", "smoothed_loss"]
    assert table["lr"].is_monotonic_increasing and table["lr"].iloc[0] == pytest.approx(1e-5)
    result = json.loads((out / "lr_find.json").read_text())
    assert 1e-5 < result["suggested_lr"] < 1
    assert table["lr"].min() < result["min_loss_lr_div10"] * 10 <= table["lr"].max()
    assert (out / "lr_find.png").stat().st_size > 10_000
    assert f"suggested lr: {result['suggested_lr']:.3g}" in capsys.readouterr().out
    assert not (tmp_path / "outputs").exists()  # no run directory was made


def test_lr_find_refuses_a_run_directory(tmp_path, capsys):
    from runner.lr_find import main
    from runner.rundir import RunDir

    run = RunDir(tmp_path / "run")
    run.start()  # summary.json: status running
    before = sorted(p.name for p in run.path.iterdir())
    assert main(["--out", str(run.path / "lrf")]) == 2
    assert "run directory" in capsys.readouterr().err
    assert sorted(p.name for p in run.path.iterdir()) == before  # nothing added


def test_lr_find_console_script_starts(tmp_path):
    env = {**os.environ, "MPLBACKEND": "Agg"}
    cmd = [sys.executable, "-m", "runner.lr_find", "--steps", "2"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2 and "at least 5 steps" in proc.stderr


# ------------------------------------------------------------------ k-fold


def test_kfold_covers_every_sample_once_stratified():
    y = np.repeat(np.arange(4), [30, 20, 25, 45])
    seen = []
    for fold in range(5):
        train_idx, val_idx = kfold_indices(y, 5, fold, seed=7)
        assert not set(train_idx) & set(val_idx)
        assert len(train_idx) + len(val_idx) == len(y)
        counts = np.bincount(y[val_idx], minlength=4)
        assert np.abs(counts - np.array([6, 4, 5, 9])).max() <= 1  # each class / 5
        seen += val_idx.tolist()
    assert sorted(seen) == list(range(len(y)))
    with pytest.raises(ConfigError, match="dataset.fold"):
        kfold_indices(y, 5, 5, seed=7)


def _image_hashes(split) -> list[str]:
    return [hashlib.md5(img.numpy().tobytes()).hexdigest() for img in split.x]


def test_kfold_of_a_real_dataset_rotates_the_validation_split(tmp_path):
    from runner.build import build_data

    whole = build_data(compose_cfg(["dataset=digits"]))
    pooled = sorted(_image_hashes(whole.train) + _image_hashes(whole.val))
    validated, tests = [], set()
    for fold in range(3):
        data = build_data(
            compose_cfg(["dataset=digits", "dataset.folds=3", f"dataset.fold={fold}"])
        )
        assert sorted(_image_hashes(data.train) + _image_hashes(data.val)) == pooled
        validated += _image_hashes(data.val)
        tests.add(tuple(_image_hashes(data.test)))
    assert sorted(validated) == pooled  # every train+val image validated exactly once
    assert len(tests) == 1 and list(tests)[0] == tuple(_image_hashes(whole.test))


@pytest.mark.skipif(not (SHARED_DATA / "fish_egu2017").is_dir(), reason="fish data absent")
def test_kfold_keeps_each_fish_in_one_fold():
    root = SHARED_DATA / "fish_egu2017"
    files = sorted(str(p.relative_to(root)) for p in root.glob("*/*.png"))
    labels = np.unique([f.split("/")[0] for f in files], return_inverse=True)[1]
    groups = groups_from_regex(files, r"^(.+)_frame\d+")
    owner = {}
    for fold in range(4):
        train_idx, val_idx = kfold_indices(labels, 4, fold, seed=42, groups=groups)
        train_groups = {groups[i] for i in train_idx}
        for i in val_idx:
            assert groups[i] not in train_groups
            assert owner.setdefault(groups[i], fold) == fold
    assert len(owner) == len(set(groups))  # every fish validated in exactly one fold


def test_fold_runs_aggregate_to_mean_and_std(tmp_path):
    from runner.sweep.summary import write_sweep_summary
    from tests.test_sweep import write_run

    sweep = tmp_path / "sweep"
    for fold, loss in enumerate((0.30, 0.32, 0.34)):
        write_run(sweep / str(fold), [f"dataset.fold={fold}", "+cv=kfold"], "cnn", "completed",
                  [1.0, loss], 0.9)  # fmt: skip
    write_sweep_summary([sweep])
    md = (sweep / "summary.md").read_text()
    assert "## Mean ± std over folds" in md and "0.3200 ± 0.0200" in md
    folds = pd.read_csv(sweep / "summary_folds.csv")
    assert folds["folds"].tolist() == [3] and folds["best_val_loss_mean"].iloc[0] == pytest.approx(
        0.32
    )
    assert not (sweep / "summary_seeds.csv").exists()


@pytest.mark.slow
def test_kfold_sweep_reports_mean_and_std_over_folds_and_resumes(tmp_path):
    sweep = tmp_path / "sweep"
    args = [
        "-m", "+cv=kfold", "dataset.folds=3", "trainer.max_epochs=1", "model.filters=[8]",
        "model.fc_neurons=[16]", *QUICK, f"hydra.sweep.dir={sweep}",
    ]  # fmt: skip
    proc = run_cli(args, tmp_path)
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(sweep / "summary.csv")
    assert sorted(table["dataset.fold"]) == [0, 1, 2]
    assert set(table["status"]) == {"completed"}
    md = (sweep / "summary.md").read_text()
    assert "## Mean ± std over folds" in md
    folds = pd.read_csv(sweep / "summary_folds.csv")
    assert folds["folds"].tolist() == [3]
    assert folds["test_acc_mean"].iloc[0] == pytest.approx(table["test_acc"].mean())
    assert folds["test_acc_std"].iloc[0] == pytest.approx(table["test_acc"].std(ddof=1))
    # resumable like any sweep: finished folds are skipped, a cut-off one runs again
    (sweep / "2" / "summary.json").write_text(json.dumps({"status": "running"}))
    finished = (sweep / "0" / "metrics.csv").stat().st_mtime_ns
    proc = run_cli([*args, "trainer.resume=true"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (sweep / "0" / "metrics.csv").stat().st_mtime_ns == finished
    assert json.loads((sweep / "2" / "summary.json").read_text())["status"] == "completed"


# ------------------------------------------------------------------ time budget


def test_parse_duration():
    assert parse_duration(None) is None and parse_duration("null") is None
    assert parse_duration("00:10:00") == 600 and parse_duration("1:00:00:30") == 86430
    assert parse_duration(90) == 90 and parse_duration("2.5") == 2.5
    for bad in ("10 minutes", "0", "-5"):
        with pytest.raises(ConfigError, match="trainer.max_time"):
            parse_duration(bad)


def test_max_time_stops_at_an_epoch_end_and_resumes(tmp_path, digits_cfg):
    common = ["trainer.max_epochs=3", "trainer.mixup_alpha=0.2", "trainer.cutmix_alpha=1.0",
              *QUICK]  # fmt: skip
    first = train(digits_cfg(*common, "trainer.max_time=0.05"))
    assert first["status"] == "time_limit" and first["epochs_run"] == 1
    assert "trainer.max_time" in first["stop_reason"]
    assert first["test_acc"] is not None  # a finished run's outputs all the same
    run = tmp_path / "run"
    assert (run / "checkpoints" / "last.pt").exists() and "time_limit" in (
        run / "report.md"
    ).read_text()
    state = checkpoint.load(run / "checkpoints" / "last.pt")[checkpoint.CALLBACKS]["TimeLimit"]
    assert state["epochs"] == 1 and state["elapsed"] > 0
    again = train(digits_cfg(*common, "trainer.max_time=null", "trainer.resume=true"))
    assert again["status"] == "completed" and again["epochs_run"] == 3
    assert pd.read_csv(run / "metrics.csv")["epoch"].tolist() == [1, 2, 3]
    # mixed batches, hard-label accuracy: a real training accuracy in [0, 1]
    assert 0.3 < again["final_train_acc"] <= 1


# ------------------------------------------------------------------ precision=auto


def test_auto_precision_rules():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_precision("auto", cuda, "image", native_bf16=True) == "bf16"
    assert resolve_precision("auto", cuda, "image", native_bf16=False) == "16-mixed"
    assert resolve_precision("auto", cpu, "image", native_bf16=True) == "bf16"
    assert resolve_precision("auto", cpu, "image", native_bf16=False) == "32"
    assert resolve_precision("auto", cpu, "text", native_bf16=True) == "32"
    assert resolve_precision("auto", torch.device("mps"), "image", native_bf16=False) == "32"
    assert resolve_precision("32", cuda, "image", native_bf16=True) == "32"
    assert resolve_channels_last("auto", "bf16", "image", conv=True)
    assert not resolve_channels_last("auto", "32", "image", conv=True)
    assert not resolve_channels_last("auto", "bf16", "image", conv=False)
    assert not resolve_channels_last("auto", "16-mixed", "text", conv=False)
    assert resolve_channels_last(True, "32", "image", conv=True)
    assert not resolve_channels_last("false", "bf16", "image", conv=True)


def test_default_run_records_what_auto_picked(tmp_path, digits_cfg):
    summary = train(digits_cfg("trainer.max_epochs=1", *QUICK))
    native = native_bf16(torch.device("cpu"))
    assert summary["precision"] == ("bf16" if native else "32")
    assert summary["channels_last"] is native
    report = (tmp_path / "run" / "report.md").read_text()
    assert f"| precision | {summary['precision']} |" in report


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("trainer.accumulate_grad_batches=0", "trainer.accumulate_grad_batches"),
        ("trainer.max_time=ten minutes", "trainer.max_time"),
        ("trainer.mixup_alpha=-1", "trainer.mixup_alpha"),
        ("trainer.mix_prob=1.5", "trainer.mix_prob"),
        ("trainer.channels_last=maybe", "trainer.channels_last"),
        ("dataset.folds=1", "dataset.folds"),
        ("dataset.augment.policy_magnitude=31", "dataset.augment.policy_magnitude"),
        ("dataset.augment.random_erasing=2", "dataset.augment.random_erasing"),
    ],
)
def test_recipe_settings_out_of_range_are_refused(override, key):
    from runner.validate import validate

    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate(compose_cfg([override]))


def test_fold_outside_the_folds_and_folds_with_subset_are_refused():
    from runner.validate import validate

    with pytest.raises(ConfigError, match="dataset.fold="):
        validate(compose_cfg(["dataset.folds=3", "dataset.fold=3"]))
    with pytest.raises(ConfigError, match="dataset.subset"):
        validate(compose_cfg(["dataset.folds=3", "dataset.subset=0.5"]))
    with pytest.raises(Exception, match="autoaugment"):  # not a choice: Hydra lists them
        compose_cfg(["dataset.augment.policy=autoaugment"])

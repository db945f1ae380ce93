"""Trust: opening a run never runs code, a refused command never costs a result, a resume
records what it did, and faults (divergence, a full or read-only disk) end truthfully."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

import runner
from runner import export, io, predict, verify
from runner.errors import CheckpointError, ConfigError, RunDirError, RunnerError
from runner.train import train
from tests.conftest import ROOT, compose_cfg, run_cli

TINY = [
    "dataset=synthetic",
    "dataset.num_samples=60",
    "dataset.image_size=8",
    "model.filters=[4]",
    "model.fc_neurons=[8]",
    "diagnostics=off",
]


def tree_hashes(root: Path) -> dict[str, str]:
    """Every file under ``root`` (hidden ones too) → its SHA-256."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A finished one-epoch run (checkpoints and .hydra record included)."""
    run = tmp_path_factory.mktemp("trained") / "run"
    summary = train(compose_cfg([*TINY, "trainer.max_epochs=1"], run))
    assert summary["status"] == "completed"
    return run


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    from PIL import Image

    path = tmp_path_factory.mktemp("img") / "a.png"
    Image.new("RGB", (8, 8), (120, 30, 200)).save(path)
    return path


# ------------------------------------------------------------------ opening a run runs no code

# How each crafted stored config tries to write the marker file (``m``) if it were obeyed.
CRAFTED = {
    "model._target_ shutil.copyfile": lambda c, m, src: c["model"].update(
        {"_target_": "shutil.copyfile", "src": src, "dst": m}
    ),
    "legacy model _target_ builtins.open": lambda c, m, src: c.update(
        model={"_target_": "builtins.open", "file": m, "mode": "w", "name": "x"}
    ),
    "dataset _target_ builtins.open": lambda c, m, src: c.update(
        dataset={"_target_": "builtins.open", "file": m, "mode": "w"}
    ),
    "optimizer._target_ os.system": lambda c, m, src: c["optimizer"].update(
        {"_target_": "os.system", "command": f"touch {m}"}
    ),
    "scheduler._target_ shutil.copyfile": lambda c, m, src: c["scheduler"].update(
        {"_target_": "shutil.copyfile", "src": src, "dst": m}
    ),
    "nested _target_ in trainer": lambda c, m, src: c["trainer"].update(
        early_stopping={"_target_": "os.system", "command": f"touch {m}"}
    ),
    "model.family os.system": lambda c, m, src: c["model"].update(family="os.system"),
    "dataset.format shutil.copyfile": lambda c, m, src: c["dataset"].update(
        format="shutil.copyfile"
    ),
}


class _Payload:
    """A pickle that would run ``touch marker`` when unpickled without weights_only."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def craft(trained: Path, where: Path, name: str) -> tuple[Path, Path]:
    """A copy of ``trained`` whose checkpoints and .hydra/config.yaml carry the crafted
    config ``name``; returns (run dir, marker path)."""
    run, marker = where / "run", where / "MARKER"
    shutil.copytree(trained, run)
    src = run / "summary.json"
    for ckpt_path in (run / "checkpoints").glob("*.pt"):
        if name == "pickle payload":
            with open(ckpt_path, "wb") as f:
                pickle.dump({"model": _Payload(marker)}, f, protocol=2)
            continue
        ckpt = torch.load(ckpt_path, weights_only=True)
        CRAFTED[name](ckpt["config"], str(marker), str(src))
        torch.save(ckpt, ckpt_path)
    if name != "pickle payload":
        stored = OmegaConf.to_container(OmegaConf.load(run / ".hydra/config.yaml"))
        CRAFTED[name](stored, str(marker), str(src))
        (run / ".hydra/config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(stored)))
    return run, marker


@pytest.mark.parametrize("name", [*CRAFTED, "pickle payload"])
def test_crafted_run_is_refused_everywhere_and_runs_nothing(trained, image, tmp_path, capsys, name):
    run, marker = craft(trained, tmp_path, name)
    out = tmp_path / "out"
    for entry in (
        lambda: predict.main([str(run), str(image), "--out", str(out / "p.csv")]),
        lambda: export.main([str(run), "--format", "torchscript", "--out", str(out / "m.pt")]),
        lambda: verify.main([str(run)]),
    ):
        assert entry() == 2
        err = capsys.readouterr().err
        assert "refusing" in err or "cannot be read" in err, err
        assert not marker.exists()
    loaded = runner.load_run(run)
    for attribute in ("model", "config"):
        if name == "pickle payload" and attribute == "config":
            continue  # .hydra/config.yaml is untouched there: plain data
        with pytest.raises(RunnerError, match="refusing|cannot be read"):
            getattr(loaded, attribute)
    with pytest.raises(RunnerError):
        runner.load_run(run).predict(str(image))
    before = tree_hashes(run)
    with pytest.raises(CheckpointError, match="refusing|cannot be read"):
        train(compose_cfg([*TINY, "trainer.max_epochs=2", "trainer.resume=true"], run))
    assert tree_hashes(run) == before  # a refused resume changes nothing
    assert not marker.exists()
    assert not out.exists()


def test_run_dir_yaml_with_python_tags_is_plain_data(trained, tmp_path):
    """``.hydra/config.yaml`` is read with a safe YAML loader: tags that would call code
    make the file unreadable (the checkpoint's config is used), never run."""
    from runner.sweep.report import main as report_main

    run, marker = tmp_path / "run", tmp_path / "MARKER"
    shutil.copytree(trained, run)
    (run / ".hydra/config.yaml").write_text(
        f"model: !!python/object/apply:os.system ['touch {marker}']\n"
    )
    assert runner.load_run(run).config.model.family == "custom_cnn"
    assert report_main([str(run), "--out", str(tmp_path / "report")]) == 0
    assert not marker.exists()


def test_user_config_naming_a_non_optimizer_is_refused(tmp_path):
    marker = tmp_path / "MARKER"
    cfg = compose_cfg([*TINY, "optimizer._target_=os.system"], tmp_path / "run")
    with pytest.raises(RunnerError, match="optimizer._target_='os.system' is not a torch"):
        train(cfg)
    cfg = compose_cfg([*TINY, "scheduler._target_=shutil.copyfile"], tmp_path / "run")
    with pytest.raises(RunnerError, match="scheduler._target_"):
        train(cfg)
    assert not marker.exists() and not (tmp_path / "run").exists()


# ------------------------------------------------------------------ refused commands


def test_refused_commands_leave_a_finished_run_byte_identical(trained, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    before = tree_hashes(run)
    attempts = {
        "a bad value": ([*TINY, "optimizer.lr=-1"], ConfigError),
        "a fresh run over it": ([*TINY, "trainer.max_epochs=1"], RunDirError),
        "a resume with another model": (
            [*TINY, "model.filters=[6]", "trainer.resume=true", "trainer.max_epochs=3"],
            CheckpointError,
        ),
        "a resume with other data": (
            [*TINY, "dataset.num_samples=80", "trainer.resume=true", "trainer.max_epochs=3"],
            CheckpointError,
        ),
        "SGD over an Adam run": (
            [*TINY, "optimizer=sgd", "trainer.resume=true", "trainer.max_epochs=3"],
            CheckpointError,
        ),
        "a finished run with a new lr": (
            [*TINY, "optimizer.lr=0.1", "trainer.resume=true", "trainer.max_epochs=1"],
            RunDirError,
        ),
    }
    for what, (overrides, error) in attempts.items():
        with pytest.raises(error):
            runner.train(overrides, run_dir=run)
        assert tree_hashes(run) == before, what


@pytest.mark.slow
def test_two_runs_into_one_directory_one_is_refused(tmp_path):
    """A second job into a busy directory fails at once; the first job's files stay its own."""
    run = tmp_path / "run"
    slow = [
        "dataset=synthetic",
        "dataset.num_samples=2000",
        "dataset.image_size=16",
        "model.filters=[16,32]",
        "trainer.max_epochs=200",
        "trainer.num_threads=1",
        "diagnostics=off",
    ]
    exe = Path(sys.executable).with_name("runner")
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    first = subprocess.Popen(
        [str(exe), *slow, f"hydra.run.dir={run}", "trainer.progress_bar=false"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 240
        while not (run / "metrics.csv").exists():  # the first job has started training
            assert first.poll() is None, first.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.1)
        second = run_cli([*TINY, "optimizer=sgd", f"hydra.run.dir={run}"], tmp_path)
        assert second.returncode == 2, second.stderr
        assert "is in use by another runner job" in second.stderr
        assert "Traceback" not in second.stderr
        assert first.poll() is None  # still training, undisturbed
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=120)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    assert "optimizer=sgd" not in (run / ".hydra/overrides.yaml").read_text()
    assert OmegaConf.load(run / ".hydra/config.yaml").optimizer._target_ == "torch.optim.Adam"
    assert "SGD" not in (run / "runner.log").read_text()


# ------------------------------------------------------------------ resume


def _lr_column(run: Path) -> list[float]:
    return pd.read_csv(run / "metrics.csv")["lr"].tolist()


def test_resume_applies_a_new_lr_and_records_it(tmp_path):
    run = tmp_path / "run"
    base = [*TINY, "scheduler=none", "optimizer.lr=0.001"]
    train(compose_cfg([*base, "trainer.max_epochs=2"], run))
    summary = runner.train(
        [
            *base,
            "optimizer.lr=0.01",
            "optimizer.weight_decay=0.05",
            "trainer.max_epochs=3",
            "trainer.resume=true",
        ],
        run_dir=run,
    )
    assert _lr_column(run) == pytest.approx([0.001, 0.001, 0.01])  # the lr actually used
    assert OmegaConf.load(run / ".hydra/config.yaml").optimizer.lr == 0.01
    changed = summary["resumed"]["changed"]
    assert changed["optimizer.lr"] == {"checkpoint": 0.001, "now": 0.01}
    assert changed["optimizer.weight_decay"]["now"] == 0.05
    groups = torch.load(run / "checkpoints/last.pt", weights_only=True)["optimizer"]
    assert groups["param_groups"][0]["weight_decay"] == 0.05
    assert "| optimizer.lr | 0.001 | 0.01 |" in (run / "report.md").read_text()


def test_extending_a_finished_cosine_run_keeps_the_lr_curve_continuous(tmp_path):
    run = tmp_path / "run"
    train(compose_cfg([*TINY, "scheduler=cosine", "trainer.max_epochs=2"], run))
    first = _lr_column(run)
    summary = train(
        compose_cfg([*TINY, "scheduler=cosine", "trainer.max_epochs=5", "trainer.resume=true"], run)
    )
    lrs = _lr_column(run)
    assert summary["status"] == "completed" and len(lrs) == 5 and lrs[:2] == first
    assert all(0 < b <= a for a, b in zip(lrs, lrs[1:])), lrs  # no drop to 0, no jump back
    assert lrs[2] >= 0.5 * lrs[1], lrs  # it goes on from the last epoch's lr
    assert summary["resumed"]["cosine_rebuilt"] is True


def test_resume_refuses_what_it_cannot_apply(tmp_path):
    run = tmp_path / "run"
    base = [*TINY, "scheduler=onecycle"]
    train(compose_cfg([*base, "trainer.max_epochs=1"], run))
    before = tree_hashes(run)
    for change, key in (
        ("trainer.max_epochs=3", "trainer.max_epochs"),
        ("optimizer.lr=0.5", "optimizer.lr"),
        ("trainer.seed=7", "trainer.seed"),
        ("dataset.val_fraction=0.3", "dataset.val_fraction"),
    ):
        extra = [] if change.startswith("trainer.max_epochs") else ["trainer.max_epochs=3"]
        cfg = compose_cfg([*base, change, *extra, "trainer.resume=true"], run)
        with pytest.raises(CheckpointError, match=key.replace(".", r"\.")):
            train(cfg)
        assert tree_hashes(run) == before, change


# ------------------------------------------------------------------ divergence and faults


def test_divergence_at_epoch_one_exits_3_with_a_truthful_report(tmp_path):
    run = tmp_path / "run"
    proc = run_cli(
        [
            *TINY,
            "optimizer=sgd",
            "optimizer.lr=1e12",
            "optimizer.momentum=0",
            "model.batch_norm=false",
            "scheduler=none",
            "trainer.batch_size=4",
            f"hydra.run.dir={run}",
        ],
        tmp_path,
    )
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr and "Logging error" not in proc.stderr
    assert "runner: diverged" in proc.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["epochs_run"] == 0
    report = (run / "report.md").read_text()
    assert "No epoch finished" in report
    assert "last.pt" not in report and not (run / "checkpoints/last.pt").exists()


@pytest.mark.slow
def test_a_diverged_job_is_one_row_of_a_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli(
        [
            "-m",
            *TINY,
            "optimizer=sgd",
            "optimizer.momentum=0",
            "model.batch_norm=false",
            "scheduler=none",
            "trainer.batch_size=4",
            "trainer.max_epochs=1",
            "optimizer.lr=0.01,1e12",
            f"hydra.sweep.dir={sweep}",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr  # a divergence is a finding, not a failed job
    assert "Traceback" not in proc.stderr and "Logging error" not in proc.stderr
    table = pd.read_csv(sweep / "summary.csv").sort_values("job")
    assert table["status"].tolist() == ["completed", "diverged"]


def test_full_disk_ends_failed_with_the_reason_and_no_torn_file(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        run = disk / "run"
        proc = run_cli(  # its first checkpoint (~2 MB) does not fit
            [*TINY, "model.fc_neurons=[2048]", f"hydra.run.dir={run}"], tmp_path
        )
        assert proc.returncode == 2, proc.stderr
        assert "No space left on device" in proc.stderr and "Traceback" not in proc.stderr
        assert "Logging error" not in proc.stderr
        summary = json.loads((run / "summary.json").read_text())
        assert summary["status"] == "failed" and "No space left" in summary["error"]
        assert not [p for p in run.rglob("*") if p.name.endswith(".tmp")]
        assert not (run / "checkpoints" / "best.pt").exists()
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def _immutable(path: Path) -> bool:
    done = shutil.which("chattr") and subprocess.run(["chattr", "+i", str(path)]).returncode == 0
    return bool(done)


def test_read_only_places_are_refused_with_one_line(trained, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    if os.geteuid() != 0 or not _immutable(locked):
        pytest.skip("needs root and chattr to make a read-only folder")
    try:
        proc = run_cli([*TINY, f"hydra.run.dir={locked / 'run'}"], tmp_path)
        assert proc.returncode == 2, proc.stderr
        assert f"cannot create or write {locked / 'run'}" in proc.stderr
        assert "Traceback" not in proc.stderr
        out = locked / "model.pt"
        assert export.main([str(trained), "--format", "torchscript", "--out", str(out)]) == 2
    finally:
        subprocess.run(["chattr", "-i", str(locked)], check=False)


def test_files_respect_the_umask(trained, tmp_path):
    old = os.umask(0o027)
    try:
        io.write_text(tmp_path / "a.txt", "x")
        io.write_json(tmp_path / "b.json", {})
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "b.json").stat().st_mode & 0o777 == 0o640
    expected = 0o666 & ~old
    for name in ("summary.json", "metrics.csv", "report.md", "checkpoints/best.pt"):
        assert (trained / name).stat().st_mode & 0o777 == expected, name


def test_exit_codes_are_documented():
    readme = (ROOT / "README.md").read_text()
    for code in range(5):
        assert f"| {code} |" in readme

"""Sweeps end to end: summaries, fault isolation, resume, joblib, Optuna, runner-report."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from runner.api import train as runner_train
from runner.runtime import available_cores
from runner.sweep.figures import panel_keys
from runner.sweep.report import main as report_main
from runner.sweep.runs import declared_sweep_keys, load_sweep
from runner.sweep.summary import curve_series, write_sweep_summary
from runner.train import train
from tests.conftest import CONF, FAST, compose_cfg, run_cli

SWEEP_FILES = ("summary.csv", "summary.md", "curves.png", "effects.csv", "effects.png")
# Tiny synthetic data and a one-block CNN: a job takes a second or two.
TINY = [
    "model=custom_cnn",
    "dataset=synthetic",
    "dataset.num_samples=120",
    "dataset.image_size=12",
    "model.filters=[8]",
    "model.fc_neurons=[16]",
]
if (CONF / "diagnostics" / "off.yaml").exists():
    TINY.append("diagnostics=off")  # its figures would dominate these tiny jobs


def job_dirs(sweep: Path) -> list[Path]:
    return sorted((p for p in sweep.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


def only_sweep(root: Path) -> Path:
    """The single sweep directory under ``root/outputs/sweeps``."""
    sweeps = list((root / "outputs" / "sweeps").iterdir())
    assert len(sweeps) == 1, sweeps
    return sweeps[0]


def test_sweep_writes_summary_files_and_resumes(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", "optimizer=sgd,adam", "trainer.max_epochs=2", *TINY, f"hydra.sweep.dir={sweep}"]
    proc = run_cli(args, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (proc.stdout + proc.stderr).count("sweep of 2 jobs (0 failed)") == 1
    for name in SWEEP_FILES:
        assert (sweep / name).stat().st_size > 0, name
    table = pd.read_csv(sweep / "summary.csv")
    assert len(table) == 2
    assert set(table["optimizer"]) == {"sgd", "adam"}
    assert set(table["status"]) == {"completed"}
    assert table["best_val_loss"].is_monotonic_increasing  # best first
    effects = pd.read_csv(sweep / "effects.csv")
    assert set(effects.loc[effects["key"] == "optimizer", "value"]) == {"sgd", "adam"}
    md = (sweep / "summary.md").read_text()
    assert "| rank | job | optimizer | status | best_val_loss |" in md
    assert "![validation curves" in md

    # A killed job leaves status running; the same command with trainer.resume=true skips the
    # finished job and resumes the other from its last.pt, in the same numbered directory.
    (sweep / "1" / "summary.json").write_text(json.dumps({"status": "running"}))
    finished = (sweep / "0" / "metrics.csv").stat().st_mtime_ns
    proc = run_cli([*args, "trainer.resume=true"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert [p.name for p in job_dirs(sweep)] == ["0", "1"]
    assert (sweep / "0" / "metrics.csv").stat().st_mtime_ns == finished
    assert json.loads((sweep / "1" / "summary.json").read_text())["status"] == "completed"
    assert len(pd.read_csv(sweep / "1" / "metrics.csv")) == 2
    assert set(pd.read_csv(sweep / "summary.csv")["status"]) == {"completed"}


def test_failing_job_is_recorded_and_the_sweep_goes_on(tmp_path):
    # Two such sweeps started together also check that sweep directories never collide. The
    # second job is valid config (an invalid value would refuse the whole sweep before it
    # starts: tests/test_cli_errors.py) but fails when it runs: its checkpoint is missing.
    exe = Path(sys.executable).with_name("runner")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "runner"]
    missing = "/nonexistent/ckpt.pt"
    args = ["-m", f"trainer.resume=false,{missing}", "trainer.max_epochs=1", *TINY, *FAST]
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    procs = [
        subprocess.Popen(
            [*cmd, *args], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        for _ in range(2)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode != 0
        assert b"1 sweep job(s) failed" in err
        assert b"Traceback" not in err
    sweeps = list((tmp_path / "outputs" / "sweeps").iterdir())
    assert len(sweeps) == 2
    for sweep in sweeps:
        table = pd.read_csv(sweep / "summary.csv").set_index("trainer.resume")
        assert table.loc["false", "status"] == "completed"
        assert table.loc[missing, "status"] == "failed"
        assert "no such checkpoint file" in table.loc[missing, "error"]
        summaries = [json.loads((d / "summary.json").read_text()) for d in job_dirs(sweep)]
        assert sorted(s["status"] for s in summaries) == ["completed", "failed"]
        md = (sweep / "summary.md").read_text()
        assert "failed" in md and "no such checkpoint file" in md
        for name in SWEEP_FILES:
            assert (sweep / name).exists(), name


@pytest.mark.slow  # four jobs through the joblib launcher
def test_joblib_launcher_runs_jobs_in_parallel_with_shared_cores(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    args = ["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    args += ["optimizer=sgd,adam", "model.kernel_size=3,5", "trainer.max_epochs=1", *TINY]
    proc = run_cli(args, tmp_path)
    assert proc.returncode == 0, proc.stderr
    sweep = only_sweep(tmp_path)  # workers resolve the same sweep dir as the parent
    for name in SWEEP_FILES:
        assert (sweep / name).exists(), name
    table = pd.read_csv(sweep / "summary.csv")
    assert len(table) == 4 and set(table["status"]) == {"completed"}
    assert {"optimizer", "model.kernel_size"} <= set(table.columns)
    threads = max(1, available_cores() // 2)
    nums = set()
    for job in job_dirs(sweep):
        assert f"{threads} CPU threads" in (job / "runner.log").read_text()
        nums.add(OmegaConf.load(job / ".hydra" / "hydra.yaml").hydra.job.num)  # GPU round robin
    assert nums == {0, 1, 2, 3}


@pytest.mark.slow  # two Optuna searches of several trials
def test_optuna_search_writes_best_params_and_resumes_its_study(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    db = tmp_path / "studies" / "search.db"  # folder created by the sweep callback
    common = ["-m", "+hparams_search=optuna_sqlite", f"hydra.sweeper.storage=sqlite:///{db}"]
    common += ["hydra.sweeper.study_name=smoke", "trainer.max_epochs=1", *TINY]
    first, second = tmp_path / "first", tmp_path / "second"
    proc = run_cli([*common, "hydra.sweeper.n_trials=4", f"hydra.sweep.dir={first}"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    best = OmegaConf.load(first / "optimization_results.yaml")
    assert set(best.best_params) == {"optimizer.lr", "optimizer.weight_decay", "trainer.batch_size"}
    for name in SWEEP_FILES:
        assert (first / name).exists(), name
    assert len(pd.read_csv(first / "summary.csv")) == 4
    assert "Best parameters" in (first / "summary.md").read_text()

    proc = run_cli([*common, "hydra.sweeper.n_trials=1", f"hydra.sweep.dir={second}"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    trials = pd.read_csv(second / "optuna_trials.csv")
    assert len(trials) == 5 and set(trials["state"]) == {"COMPLETE"}
    assert len(pd.read_csv(second / "summary.csv")) == 1


def test_runner_report_on_a_list_of_runs_including_a_running_one(tmp_path, capsys):
    runs = []
    for optimizer in ("sgd", "adam"):
        run = tmp_path / "runs" / optimizer
        train(compose_cfg([f"optimizer={optimizer}", "trainer.max_epochs=1", *TINY], run))
        (run / ".hydra").mkdir(exist_ok=True)  # what the CLI records of `runner optimizer=...`
        (run / ".hydra" / "overrides.yaml").write_text(f"- optimizer={optimizer}\n")
        runs.append(run)
    running = tmp_path / "runs" / "still_running"  # a job of a sweep that is still going
    shutil.copytree(runs[0], running)
    (running / "summary.json").write_text(json.dumps({"status": "running"}))
    (running / ".hydra" / "overrides.yaml").write_text("- optimizer=rmsprop\n")

    out = tmp_path / "report"
    assert report_main([*map(str, runs), str(running), "--out", str(out)]) == 0
    assert "3 runs (2 completed, 1 running)" in capsys.readouterr().out
    for name in SWEEP_FILES:
        assert (out / name).exists(), name
    table = pd.read_csv(out / "summary.csv")
    assert table["optimizer"].tolist()[-1] == "rmsprop"  # unfinished jobs rank last
    assert table["status"].tolist() == ["completed", "completed", "running"]

    with pytest.raises(SystemExit) as exc:
        report_main([str(tmp_path / "nowhere")])
    assert exc.value.code == 2


# ------------------------------------------------------- tables from written run dirs


def write_run(
    path: Path, overrides: list[str], model: str, status: str, val_loss: list[float], acc: float
) -> None:
    """A run directory in the runner's formats (for table logic that needs no training)."""
    (path / ".hydra").mkdir(parents=True)
    (path / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    config = {"model": {"name": model}, "trainer": {"monitor": "val_loss"}}
    OmegaConf.save(OmegaConf.create(config), path / ".hydra" / "config.yaml")
    epochs = range(1, len(val_loss) + 1)
    metrics = pd.DataFrame(
        {
            "epoch": list(epochs),
            "train_loss": val_loss,
            "train_acc": [acc] * len(val_loss),
            "val_loss": val_loss,
            "val_acc": [acc - 0.05] * len(val_loss),
        }
    )
    metrics.to_csv(path / "metrics.csv", index=False)
    summary = {"status": status, "monitor": "val_loss", "best_val_loss": min(val_loss)}
    summary.update({"best_val_acc": acc - 0.05, "best_train_acc": acc, "final_train_acc": acc})
    if status == "failed":
        summary = {"status": "failed", "error": "RuntimeError: out of memory"}
    (path / "summary.json").write_text(json.dumps(summary))


def test_seed_sweep_reports_mean_and_std_per_configuration(tmp_path):
    sweep = tmp_path / "sweep"
    job = 0
    for optimizer, base in (("sgd", 0.5), ("adam", 0.3)):
        for seed in (0, 1, 2):
            overrides = [f"optimizer={optimizer}", f"trainer.seed={seed}"]
            loss = [1.0, base + 0.01 * seed]
            write_run(sweep / str(job), overrides, "custom_cnn", "completed", loss, 0.9)
            job += 1
    write_run(
        sweep / str(job), ["optimizer=adam", "trainer.seed=3"], "custom_cnn", "failed", [1], 0
    )
    result = write_sweep_summary([sweep])
    assert result.failed == ["6"]
    md = (sweep / "summary.md").read_text()
    assert "## Mean ± std over seeds" in md
    assert "0.3100 ± 0.0100" in md  # adam: 0.30, 0.31, 0.32
    seeds = pd.read_csv(sweep / "summary_seeds.csv")
    assert seeds["optimizer"].tolist() == ["adam", "sgd"]
    assert seeds["seeds"].tolist() == [3, 3]
    effects = pd.read_csv(sweep / "effects.csv")
    rows = effects[effects["metric"] == "best_val_loss"].set_index("value")
    assert set(effects["key"]) == {"optimizer"}  # the seed is not an effect
    assert rows.loc["adam", "runs"] == 3
    assert rows.loc["adam", "best"] == pytest.approx(0.31)
    assert rows.loc["adam", "best_std"] == pytest.approx(0.01)


def test_sweep_diagnoses_flag_degradation(tmp_path):
    rules = pytest.importorskip("runner.diagnostics.rules")
    if not hasattr(rules, "sweep_diagnoses"):
        pytest.skip("runner.diagnostics.rules has no sweep_diagnoses")
    sweep = tmp_path / "sweep"
    write_run(sweep / "0", ["model=plain34"], "plain34", "completed", [1.2, 1.1], 0.60)
    write_run(sweep / "1", ["model=resnet34"], "resnet34", "completed", [0.9, 0.7], 0.84)
    write_sweep_summary([sweep])
    assert "degradation" in (sweep / "summary.md").read_text()


def test_command_line_values_replace_a_presets_sweep_params():
    multirun = OmegaConf.create(
        {
            "hydra": {
                "sweeper": {"params": {"optimizer": "sgd,adam", "model.pooling": "max,avg"}},
                "overrides": {"task": ["+experiment=s1_mnist", "optimizer=adam", "seed=0,1"]},
            }
        }
    )
    assert declared_sweep_keys(multirun) == ["model.pooling", "seed"]


def test_runner_report_compares_arbitrary_runs_by_what_differs(tmp_path, capsys):
    """Runs that are not one sweep: only keys whose value differs between the runs are
    shown, with every run's real value (a default where it did not override the key), under
    a "comparison" heading; a key overridden to its default is not "swept"."""
    base = ["trainer.max_epochs=1", *TINY]
    settings = {
        "plain": [],
        "sgd_avg": ["optimizer=sgd", "model.pooling=avg"],
        "defaults": ["optimizer=adam", "model.pooling=max", "trainer.seed=42"],  # = defaults
    }
    runs = []
    for name, overrides in settings.items():
        runs.append(Path(runner_train([*base, *overrides], run_dir=tmp_path / name)["run_dir"]))
    out = tmp_path / "report"
    assert report_main([*map(str, runs), "--out", str(out)]) == 0
    assert "3 runs (3 completed)" in capsys.readouterr().out
    table = pd.read_csv(out / "summary.csv", dtype=str).set_index("run_dir")
    swept = [c for c in table.columns if c in ("optimizer", "model.pooling", "trainer.seed")]
    assert swept == ["optimizer", "model.pooling"]  # trainer.seed: 42 everywhere
    assert table.loc[str(runs[0]), "optimizer"] == "adam"  # not overridden: its default
    assert table.loc[str(runs[0]), "model.pooling"] == "max"
    assert table.loc[str(runs[1]), ["optimizer", "model.pooling"]].tolist() == ["sgd", "avg"]
    md = (out / "summary.md").read_text()
    assert md.startswith("# Comparison of 3 runs")
    assert "Settings that differ: `optimizer`, `model.pooling`." in md and "Sweep" not in md
    assert set(pd.read_csv(out / "effects.csv")["key"]) == {"optimizer", "model.pooling"}
    series = curve_series(load_sweep(runs).jobs, pd.read_csv(out / "summary.csv", dtype=str),
                          swept, seeded=False)  # fmt: skip
    labels = [label for label, _ in series]
    assert all("nan" not in label and "None" not in label for label in labels), labels
    assert any(label.endswith("optimizer=adam, pooling=max") for label in labels), labels


def test_effects_figure_has_no_panel_for_a_key_with_one_value():
    effects = pd.DataFrame(
        {
            "metric": ["best_val_loss"] * 3,
            "key": ["optimizer", "optimizer", "model.width"],
            "value": ["sgd", "adam", "8"],
        }
    )
    assert panel_keys(effects) == ["optimizer"]
    assert panel_keys(effects.iloc[2:]) == []

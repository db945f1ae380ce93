"""The GPU acceptance check: one prepared script for one CUDA GPU (H100/H200 class), ≤ 8 min.

    python benchmarks/gpu_check.py --data /path/to/cifar10_jpg         # on the GPU machine
    python benchmarks/gpu_check.py --dry-run                           # every step, CPU, tiny

Steps (each timed; a failing step is recorded and the others still run):

=========  ==================================================================================
env        torch, CUDA and GPU facts; which optional torch features exist
pytest     ``pytest -m gpu``: every CUDA-specific path of the runner (tests/test_gpu.py, …)
loop       runner ÷ hand-written loop, images/s on CUDA, custom_cnn and resnet18, bf16 +
           channels_last, alternating repeats in one process (benchmarks/bench_train.py)
speedrun   ``+experiment=cifar10_speedrun`` end to end on real CIFAR-10: test accuracy, training
           seconds, epochs, images/s, for ``--seeds`` seeds
fast       ``+experiment=cifar10_fast`` (ResNet-18), ``--fast-epochs`` epochs
predict    ``runner-predict --device cuda`` on the speedrun run's test images: its accuracy
           equals the run's test accuracy
ddp        ``torchrun --nproc_per_node=1`` with NCCL: a short run completes
compile    ``trainer.compile`` off and on: resnet18 images/s on synthetic data
=========  ==================================================================================

Writes ``<out>/gpu_check.csv`` (step, status, seconds, metric, value, note) and
``<out>/gpu_check.md``. Real CIFAR-10 comes from an image folder of the public JPEG copy
(``--data``: ``train/<class>/*.jpg``, ``test/<class>/*.jpg``; JPEG is lossy, so figures are
close to, not identical with, the python batches) or from the python batches
(``--cifar-root``: the folder holding ``cifar-10-batches-py/``).

Offline GPU machines: install nothing from the network. The runner's pure-Python
dependencies an image may lack — hydra-core, omegaconf, antlr4-python3-runtime (4.9.3),
captum — go beside the script as wheels: ``--wheels DIR`` installs them with
``pip --no-index --target`` into a private folder added to ``PYTHONPATH``. Older torch
(2.11): Muon's Newton–Schulz falls back to the runner's copy, a failing ``torch.compile``
is recorded and the eager figure kept.

``--dry-run`` runs every step on the CPU with tiny synthetic CIFAR batches, so a CPU-only
CI proves the script itself (tests/test_gpu_check.py).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TARGET_ACC = 0.94


@dataclass
class Row:
    step: str
    status: str  # ok | failed | skipped
    seconds: float
    metrics: dict[str, Any] = field(default_factory=dict)
    note: str = ""


@dataclass
class Context:
    args: argparse.Namespace
    work: Path
    env: dict[str, str]
    device: str
    rows: list[Row] = field(default_factory=list)
    speedrun_dir: Path | None = None


# ------------------------------------------------------------------ plumbing
def run(
    ctx: Context, cmd: list[str], timeout: float, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    """A subprocess with the check's environment; its output is kept in the work folder."""
    proc = subprocess.run(
        cmd, cwd=cwd or ctx.work, env=ctx.env, capture_output=True, text=True, timeout=timeout
    )
    log = ctx.work / "logs" / f"{len(list((ctx.work / 'logs').glob('*.log'))):02d}.log"
    log.write_text(f"$ {' '.join(cmd)}\n[exit {proc.returncode}]\n{proc.stdout}\n{proc.stderr}")
    return proc


def runner_cmd(ctx: Context, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "runner", *overrides, "trainer.progress_bar=false"]


def summary_of(run_dir: Path) -> dict[str, Any]:
    from runner.rundir import SUMMARY  # the run directory's owner names its files

    return json.loads((run_dir / SUMMARY).read_text())


def epoch_seconds(run_dir: Path) -> list[float]:
    """Training seconds of each epoch (metrics.csv: epoch_seconds includes validation)."""
    from runner.rundir import METRICS

    rows = list(csv.DictReader((run_dir / METRICS).open()))
    return [float(r["epoch_seconds"]) for r in rows]


def step(name: str):
    """Run a step function, timing it and turning any exception into a failed row."""

    def wrap(fn):
        def inner(ctx: Context) -> None:
            if name in ctx.args.skip:
                ctx.rows.append(Row(name, "skipped", 0.0, note="--skip"))
                return
            started = time.perf_counter()
            try:
                metrics, note = fn(ctx)
                status = "ok"
            except Exception as err:  # record and go on: one broken step must not hide the rest
                metrics, note, status = {}, f"{type(err).__name__}: {str(err)[-600:]}", "failed"
            ctx.rows.append(Row(name, status, time.perf_counter() - started, metrics, note))
            print(
                f"[{name}] {status} in {ctx.rows[-1].seconds:.1f}s {metrics} {note[:200]}",
                flush=True,
            )

        inner.step_name = name
        return inner

    return wrap


def data_overrides(ctx: Context, speedrun: bool = False) -> list[str]:
    """The real CIFAR-10 a preset runs on (a JPEG image folder or the python batches); the
    speed run holds out 1 000 validation images (its preset's 2 %), cifar10_fast 5 000."""
    a = ctx.args
    if a.dry_run:  # 100 tiny training images: a fifth validates
        root = ctx.work / "cifar"
        return ["dataset=cifar10", f"dataset.root={root}", "dataset.val_size=0",
                "dataset.val_fraction=0.2"]  # fmt: skip
    if a.data:
        return ["dataset=cifar10_jpg", f"dataset.path={Path(a.data).resolve()}"]
    held_out = ["dataset.val_size=1000"] if speedrun else []
    return ["dataset=cifar10", f"dataset.root={Path(a.cifar_root).resolve()}", *held_out]


def dry_overrides(ctx: Context) -> list[str]:
    """Tiny sizes for --dry-run (CPU)."""
    if not ctx.args.dry_run:
        return []
    return [
        "trainer.device=cpu",
        "trainer.max_epochs=1",
        "trainer.batch_size=50",
        "diagnostics=off",
    ]


# ------------------------------------------------------------------ steps
@step("env")
def env_step(ctx: Context) -> tuple[dict, str]:
    code = (
        "import json, torch, platform\n"
        "cuda = torch.cuda.is_available()\n"
        "print(json.dumps({'torch': torch.__version__, 'python': platform.python_version(),"
        " 'cuda': torch.version.cuda, 'gpu': torch.cuda.get_device_name(0) if cuda else None,"
        " 'bf16': bool(cuda and torch.cuda.is_bf16_supported()),"
        " 'muon': hasattr(torch.optim, 'Muon'), 'compile': hasattr(torch, 'compile')}))"
    )
    proc = run(ctx, [sys.executable, "-c", code], 120)
    proc.check_returncode()
    facts = json.loads(proc.stdout.strip().splitlines()[-1])
    return facts, ""


@step("pytest")
def pytest_step(ctx: Context) -> tuple[dict, str]:
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-m",
        "gpu",
        "-p",
        "no:cacheprovider",
        str(ROOT / "tests"),
    ]
    proc = run(ctx, cmd, ctx.args.pytest_timeout, cwd=ROOT)
    tail = (proc.stdout.strip().splitlines() or [""])[-1]
    counts = {k: int(n) for n, k in _counts(tail)}
    if proc.returncode not in (0, 5):  # 5 = nothing collected
        raise RuntimeError(f"pytest -m gpu: {tail}")
    return counts, tail


def _counts(line: str) -> list[tuple[str, str]]:
    import re

    return re.findall(r"(\d+) (passed|failed|skipped|deselected|error)", line)


@step("loop")
def loop_step(ctx: Context) -> tuple[dict, str]:
    out = ctx.work / "bench_train.csv"
    steps = (
        ["--steps", "2", "--repeats", "1", "--batch-size", "8"]
        if ctx.args.dry_run
        else ["--repeats", "5"]
    )
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "bench_train.py"),
        "--device",
        ctx.device,
        "--models",
        "custom_cnn",
        "resnet18",
        "--progress-bar",
        "false",
        "--out",
        str(out),
        *steps,
    ]
    if not ctx.args.dry_run:
        cmd += ["--precision", "bf16", "--channels-last"]
    proc = run(ctx, cmd, 600, cwd=ROOT)
    proc.check_returncode()
    rows = list(csv.DictReader(out.open()))
    return {
        f"{r['model']} runner/plain": float(r["runner / plain"]) for r in rows
    }, "images/s ratio, median of repeats"


@step("speedrun")
def speedrun_step(ctx: Context) -> tuple[dict, str]:
    results, steady = [], []
    for seed in range(ctx.args.seeds):
        run_dir = ctx.work / f"speedrun_{seed}"
        cmd = runner_cmd(
            ctx,
            "+experiment=cifar10_speedrun",
            *data_overrides(ctx, speedrun=True),
            f"trainer.seed={seed}",
            f"hydra.run.dir={run_dir}",
            *dry_overrides(ctx),
            *(["model.widths=[16,32,32]"] if ctx.args.dry_run else []),
        )
        proc = run(ctx, cmd, 900)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-600:])
        results.append(summary_of(run_dir))
        seconds = epoch_seconds(run_dir)
        # without the first epoch, which compiles: the steady state, scaled to all epochs
        steady.append(sum(seconds[1:]) * len(seconds) / max(len(seconds) - 1, 1))
        ctx.speedrun_dir = ctx.speedrun_dir or run_dir
    accs = [r["test_acc"] for r in results]
    metrics = {
        "test_acc_mean": sum(accs) / len(accs),
        "test_acc_min": min(accs),
        "train_seconds_mean": sum(r["train_seconds"] for r in results) / len(results),
        "epoch_seconds_steady_x_epochs": sum(steady) / len(steady),
        "epochs": results[0]["epochs_run"],
        "images_per_second": results[0]["images_per_second"],
        "reached_94": sum(a >= TARGET_ACC for a in accs),
    }
    note = (
        f"{len(results)} seed(s); train_seconds: training steps and their data, the first "
        "epoch's compilation included; epoch_seconds_steady_x_epochs: epochs 2..N (with "
        "validation) scaled to all N, i.e. without compilation"
    )
    return metrics, note


@step("fast")
def fast_step(ctx: Context) -> tuple[dict, str]:
    run_dir = ctx.work / "fast"
    epochs = 1 if ctx.args.dry_run else ctx.args.fast_epochs
    cmd = runner_cmd(
        ctx,
        "+experiment=cifar10_fast",
        *data_overrides(ctx),
        f"trainer.max_epochs={epochs}",
        f"hydra.run.dir={run_dir}",
        *dry_overrides(ctx),
    )
    proc = run(ctx, cmd, 900)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-600:])
    s = summary_of(run_dir)
    return {
        "test_acc": s["test_acc"],
        "train_seconds": s["train_seconds"],
        "images_per_second": s["images_per_second"],
    }, f"{epochs} epochs"


@step("predict")
def predict_step(ctx: Context) -> tuple[dict, str]:
    if ctx.speedrun_dir is None:
        raise RuntimeError("no speedrun run to predict with")
    images = _test_images(ctx)
    out = ctx.work / "predictions.csv"
    cmd = [
        sys.executable,
        "-m",
        "runner.predict",
        str(ctx.speedrun_dir),
        str(images),
        "--out",
        str(out),
        "--device",
        ctx.device,
        "--no-progress",
    ]
    proc = run(ctx, cmd, 600)
    proc.check_returncode()
    rows = list(csv.DictReader(out.open()))
    accuracy = sum(r["correct"] == "True" for r in rows) / max(len(rows), 1)
    return {
        "images": len(rows),
        "accuracy": accuracy,
        "run_test_acc": summary_of(ctx.speedrun_dir)["test_acc"],
    }, ""


def _test_images(ctx: Context) -> Path:
    """A folder of test images in class folders: the JPEG copy's test/, else up to 500
    test images of the python batches written as PNG."""
    if ctx.args.data and not ctx.args.dry_run:
        return Path(ctx.args.data).resolve() / "test"
    from PIL import Image

    sys.path.insert(0, str(ROOT))
    from runner.data.cifar import FOLDER, read_batch, read_classes

    root = ctx.work / "cifar" if ctx.args.dry_run else Path(ctx.args.cifar_root)
    x, y = read_batch(root / FOLDER / "test_batch")
    classes = read_classes(root / FOLDER)
    folder = ctx.work / "test_images"
    for i in range(min(len(y), 500)):
        target = folder / classes[int(y[i])] / f"{i}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(x[i].permute(1, 2, 0).numpy()).save(target)
    return folder


@step("ddp")
def ddp_step(ctx: Context) -> tuple[dict, str]:
    run_dir = ctx.work / "ddp"
    synthetic = [
        "dataset=synthetic",
        "dataset.num_samples=256",
        "trainer.max_epochs=1",
        "diagnostics=off",
    ]
    device = "trainer.device=cpu" if ctx.args.dry_run else "trainer.device=cuda"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=1",
        "--standalone",
        "-m",
        "runner",
        *synthetic,
        device,
        f"hydra.run.dir={run_dir}",
        "trainer.progress_bar=false",
    ]
    proc = run(ctx, cmd, 600)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-600:])
    s = summary_of(run_dir)
    note = "a process group of one: backend nccl on CUDA, gloo on CPU; DistributedDataParallel"
    return {"status": s["status"], "test_acc": s["test_acc"]}, note


@step("compile")
def compile_step(ctx: Context) -> tuple[dict, str]:
    metrics = {}
    for flag in ("false", "true"):
        run_dir = ctx.work / f"compile_{flag}"
        epochs = 1 if ctx.args.dry_run else 3
        size = (
            ["dataset.num_samples=64", "dataset.image_size=8"]
            if ctx.args.dry_run
            else ["dataset.num_samples=20000"]
        )
        cmd = runner_cmd(
            ctx,
            "model=resnet18",
            "dataset=synthetic",
            *size,
            "dataset.num_classes=10",
            f"trainer.compile={flag}",
            f"trainer.max_epochs={epochs}",
            "diagnostics=off",
            "trainer.early_stopping.enabled=false",
            f"hydra.run.dir={run_dir}",
            *dry_overrides(ctx),
        )
        proc = run(ctx, cmd, 900)
        if proc.returncode != 0:
            metrics[f"compile={flag}"] = f"failed: {proc.stderr[-200:]}"
            continue
        metrics[f"compile={flag} img/s"] = summary_of(run_dir)["images_per_second"]
    return metrics, "images/s over all epochs (the compiled run includes its compilation)"


STEPS = [
    env_step,
    pytest_step,
    loop_step,
    speedrun_step,
    fast_step,
    predict_step,
    ddp_step,
    compile_step,
]


# ------------------------------------------------------------------ set-up and report
def install_wheels(wheels: Path, target: Path) -> None:
    """Pure-Python dependencies the GPU image lacks, from local wheels only."""
    files = sorted(str(p) for p in wheels.glob("*.whl"))
    if not files:
        raise SystemExit(f"--wheels {wheels}: no .whl files there")
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "-q",
        "--no-index",
        "--no-deps",
        "--target",
        str(target),
        *files,
    ]
    subprocess.run(cmd, check=True)


def write_dry_cifar(folder: Path) -> None:
    """Tiny CIFAR-10 python batches (learnable stripes) for --dry-run."""
    sys.path.insert(0, str(ROOT))
    from tests.test_datasets import write_cifar

    write_cifar(folder, per_batch=20)


def report(ctx: Context, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with (out / "gpu_check.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["step", "status", "seconds", "metric", "value", "note"])
        for row in ctx.rows:
            for key, value in (row.metrics or {"": ""}).items():
                writer.writerow([row.step, row.status, f"{row.seconds:.1f}", key, value, row.note])
    lines = [
        "# GPU check" + (" (dry run, CPU)" if ctx.args.dry_run else ""),
        "",
        "| step | status | seconds | figures | note |",
        "|---|---|---|---|---|",
    ]
    for row in ctx.rows:
        figures = "; ".join(f"{k} {_fmt(v)}" for k, v in row.metrics.items())
        lines.append(
            f"| {row.step} | {row.status} | {row.seconds:.1f} | {figures} | {row.note[:200]} |"
        )
    (out / "gpu_check.md").write_text("\n".join(lines) + "\n")


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="", help="CIFAR-10 JPEG folder (train/<class>, test/<class>)")
    p.add_argument("--cifar-root", default="", help="folder holding cifar-10-batches-py/")
    p.add_argument("--out", default=str(RESULTS / "gpu"), help="folder for gpu_check.csv and .md")
    p.add_argument("--wheels", default="", help="install these local wheels first (offline)")
    p.add_argument("--seeds", type=int, default=2, help="speedrun repeats (each compiles anew)")
    p.add_argument("--fast-epochs", type=int, default=5, help="epochs of the cifar10_fast step")
    p.add_argument("--pytest-timeout", type=float, default=240)
    p.add_argument("--skip", nargs="*", default=[], help="steps to skip")
    p.add_argument("--dry-run", action="store_true", help="every step on the CPU, tiny data")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.dry_run:
        args.seeds = 1
    elif not (args.data or args.cifar_root):
        raise SystemExit(
            "give --data (CIFAR-10 JPEG folder) or --cifar-root (python batches), or --dry-run"
        )
    work = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    (work / "logs").mkdir()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    sys.path.insert(0, str(ROOT))  # this process reads run directories through runner.rundir
    if args.wheels:
        target = work / "site"
        install_wheels(Path(args.wheels), target)
        env["PYTHONPATH"] = os.pathsep.join([str(target), env["PYTHONPATH"]])
        sys.path.insert(0, str(target))
    if args.dry_run:
        write_dry_cifar(work / "cifar")
    ctx = Context(args, work, env, "cpu" if args.dry_run else "cuda")
    for fn in STEPS:
        fn(ctx)
    report(ctx, Path(args.out))
    print((Path(args.out) / "gpu_check.md").read_text())
    print(f"logs: {work / 'logs'}")
    return 0 if all(r.status != "failed" for r in ctx.rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""What the diagnostics cost: after training, and during it.

**After training** (``post_training``): the default job (``runner`` with no overrides:
custom_cnn on digits) is trained, then everything that happens after its last epoch is
timed — ``runner.train.finish``: the test pass, curves, confusion matrix, FLOPs count, the
diagnostics callback's ``on_summary`` (tables, figures, interpretability, rules, verdict)
and report.md — each repeat in a fresh process, so the imports it triggers (matplotlib,
captum, ...) are paid as in a real run. Reported: the whole of ``finish`` and its
diagnostics part (``on_summary`` + report.md), CPU seconds of the process (all threads,
steadier than wall time on a shared machine) and wall seconds. Budget: ≤ 3 s on 2 cores.

**During training** (``per_step``): two workloads through the real loop
(:func:`runner.build.build_run`) with the default ``conf/diagnostics``:

- **digits** — the default main job;
- **cifar-sized** — the default custom_cnn (32, 64, 128 filters, fc 512) on synthetic
  32×32 RGB images (``dataset=synthetic``) split like CIFAR-10 (45 000 / 5 000 / 10 000),
  batch 64. Epoch time is computed from the step and validation times, so no full epoch
  is trained.

Whole-run A/B timings are swamped by noise on a shared machine, so the costs are measured
where they arise, alternating with and without the callback in short blocks of training
steps (``Loop.train_epoch`` on a limited loader), many times, in one process:

- *per-step*: median time of a training step with the callback's hooks vs without
  (gradient norms every ``interval`` steps, loss and learning rate every step), from the
  paired blocks and, steadier, from timing the hooks directly;
- *epoch end*: median time of the callback's ``on_epoch_end`` (one device sync, weight
  norms, the dead-unit / activation probe on 128 training images);
- *epoch*: steps per epoch × step time + the validation pass, without diagnostics.

overhead % = (steps per epoch × per-step extra + epoch-end time) / epoch time. Budget:
≤ 5 %.

Usage::

    python benchmarks/bench_diagnostics.py                  # CPU: both parts
    python benchmarks/bench_diagnostics.py --part post_training --repeats 5
    python benchmarks/bench_diagnostics.py --device cuda --blocks 40

Prints the tables and writes ``benchmarks/results/bench_diagnostics_<device>.csv`` (per
step) and ``benchmarks/results/bench_diagnostics_post_training.csv``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

WORKLOADS = {
    "digits": [],
    # CIFAR-10's shape and split: 45 000 train / 5 000 validation / 10 000 test, 32×32 RGB
    "cifar-sized": [
        "dataset=synthetic",
        "dataset.num_samples=60000",
        "dataset.num_classes=10",
        "dataset.val_fraction=0.083334",
        "dataset.test_fraction=0.166667",
    ],
}


def compose(overrides: list[str], run_dir: str):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    import runner.cli  # noqa: F401  (registers the config resolvers and schemas)

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = hydra_compose(config_name="config", overrides=overrides)
    cfg.run_dir = run_dir
    return cfg


# ----------------------------------------------------------------------------- after training
def post_training_once(threads: int) -> dict:
    """Train the default job, then time ``finish`` (in this fresh process)."""
    import torch

    from runner import build, report
    from runner.rundir import RunDir
    from runner.runtime import seed_everything, set_threads
    from runner.train import extra_callbacks, finish

    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose(["trainer.progress_bar=false", f"trainer.num_threads={threads}"], tmp)
        seed_everything(cfg.trainer.seed, False)
        set_threads(cfg.trainer.num_threads)
        data = build.build_data(cfg)
        model = build.build_model(cfg, data)
        run = RunDir(cfg.run_dir)
        run.start()
        extra = extra_callbacks(cfg, run, data)
        built = build.build_run(cfg, data, model, torch.device("cpu"), run, extra)
        result = built.loop.fit()
        spent = {"diagnostics": [0.0, 0.0]}
        callback = extra[0]
        _time_into(callback, "on_summary", spent["diagnostics"])
        _time_into(report, "write_report", spent["diagnostics"])
        cpu, wall = time.process_time(), time.perf_counter()
        summary = finish(cfg, run, built, data, result)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        figures = sorted(p.relative_to(tmp).as_posix() for p in Path(tmp).rglob("*.png"))
    return {
        "epochs": summary["epochs_run"],
        "finish_cpu_s": cpu,
        "finish_wall_s": wall,
        "diagnostics_and_report_cpu_s": spent["diagnostics"][0],
        "diagnostics_and_report_wall_s": spent["diagnostics"][1],
        "figures": len(figures),
        "figure_files": " ".join(figures),
        "diagnoses": " ".join(d["code"] for d in summary["diagnoses"]),
    }


def _time_into(owner, name: str, into: list[float]) -> None:
    """Wrap ``owner.name`` so that its CPU and wall seconds add to ``into``."""
    inner = getattr(owner, name)

    def timed(*args, **kwargs):
        cpu, wall = time.process_time(), time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            into[0] += time.process_time() - cpu
            into[1] += time.perf_counter() - wall

    setattr(owner, name, timed)


def post_training(repeats: int, threads: int) -> list[dict]:
    rows = []
    for i in range(repeats):
        cmd = [sys.executable, __file__, "--post-training-once", "--threads", str(threads)]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, check=True)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append({"repeat": i, **row})
        print(
            f"repeat {i}: finish {row['finish_cpu_s']:.2f} s CPU "
            f"({row['finish_wall_s']:.2f} s wall), "
            f"diagnostics + report {row['diagnostics_and_report_cpu_s']:.2f} s CPU",
            flush=True,
        )
    return rows


# ----------------------------------------------------------------------------- during training
def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(fn, device) -> float:
    """Seconds ``fn`` takes: CPU time of the whole process (all threads) on the CPU — far
    less sensitive than wall time to other jobs on a shared machine — wall time on a GPU."""
    clock = time.process_time if device.type == "cpu" else time.perf_counter
    _sync(device)
    started = clock()
    fn()
    _sync(device)
    return clock() - started


def per_step(workload: str, device_name: str, blocks: int, block_steps: int) -> dict:
    import torch

    from runner import build
    from runner.diagnostics import DiagnosticsCallback
    from runner.rundir import RunDir
    from runner.runtime import seed_everything

    device = torch.device(device_name)
    with tempfile.TemporaryDirectory() as tmp:
        overrides = [*WORKLOADS[workload], f"trainer.device={device_name}"]
        cfg = compose([*overrides, "trainer.progress_bar=false"], tmp)
        seed_everything(cfg.trainer.seed, False)
        data = build.build_data(cfg)
        model = build.build_model(cfg, data)
        from runner import zoo

        stages = zoo.MODELS.get(cfg.model.family).feature_stages
        callback = DiagnosticsCallback(cfg.diagnostics, Path(tmp), data, stages, cfg.trainer.seed)
        loop = build.build_run(cfg, data, model, device, RunDir(tmp), [callback]).loop
        steps_per_epoch = len(loop.train_loader)
        loop.evaluate(loop.val_loader)  # warm-up of the eval-mode kernels
        fit_start = _timed(lambda: callback.on_fit_start(loop), device)
        on, off = _alternate(loop, callback, blocks, block_steps, device)
        hooks = _hook_costs(loop, callback, device)
        row = {"epoch": 1, "train_loss": 0.0, "val_loss": 0.0}
        epoch_end = [
            _timed(lambda e=e: callback.on_epoch_end(loop, e, row), device) for e in range(1, 8)
        ]
        validation = [_timed(lambda: loop.evaluate(loop.val_loader), device) for _ in range(5)]
    step_off, step_on = statistics.median(off), statistics.median(on)
    # paired blocks: the median of per-pair differences is steadier than a difference of medians
    paired = statistics.median(a - b for a, b in zip(on, off))
    epoch = steps_per_epoch * step_off + statistics.median(validation)
    direct = hooks["record"] / max(callback.every, 1) + hooks["batch_end"]
    end = statistics.median(epoch_end)
    return {
        "workload": workload,
        "train_images": len(data.train),
        "steps_per_epoch": steps_per_epoch,
        "gradient_records_every": callback.every,
        "step_ms_off": 1000 * step_off,
        "step_ms_on": 1000 * step_on,
        "per_step_overhead_pct": 100 * paired / step_off,
        "hook_us_per_step": 1e6 * direct,
        "hook_pct_of_step": 100 * direct / step_off,
        "epoch_end_ms": 1000 * end,
        "epoch_s_off": epoch,
        "training_overhead_pct": 100 * (steps_per_epoch * paired + end) / epoch,
        "training_overhead_direct_pct": 100 * (steps_per_epoch * direct + end) / epoch,
        "fit_start_s": fit_start,
        "fit_start_pct_of_one_epoch": 100 * fit_start / epoch,
    }


def _alternate(loop, callback, blocks: int, block_steps: int, device) -> tuple[list, list]:
    """Seconds per step of ``blocks`` blocks of ``block_steps`` training steps with the
    callback and as many without, alternating which goes first."""
    loop.train_loader.limit_batches = block_steps
    loop.callbacks = []
    loop.train_epoch(1)  # warm-up
    on, off = [], []
    for block in range(blocks):
        for with_diag in (block % 2 == 0, block % 2 == 1):
            loop.callbacks = [callback] if with_diag else []
            seconds = _timed(lambda b=block: loop.train_epoch(b + 2), device)
            (on if with_diag else off).append(seconds / block_steps)
    return on, off


def _hook_costs(loop, callback, device) -> dict:
    """Median seconds of one gradient-norm record and of one per-step bookkeeping call,
    timed directly (gradients of the last step are still in place)."""
    import torch

    every = max(callback.every, 1)
    loss = torch.zeros((), device=device)
    record, batch_end = [], []
    for i in range(100):
        loop.state.global_step = (i + 1) * every - 1  # the next step records
        record.append(_timed(lambda: callback.on_after_backward(loop), device))
        batch_end.append(_timed(lambda i=i: callback.on_train_batch_end(loop, 1, i, loss), device))
    callback.step_log.flush()
    return {"record": statistics.median(record), "batch_end": statistics.median(batch_end)}


# ----------------------------------------------------------------------------- main
def _write(rows: list[dict], name: str, args) -> None:
    import pandas as pd
    import torch

    frame = pd.DataFrame(rows)
    frame["device"] = args.device
    frame["machine"] = platform.processor() or platform.machine()
    frame["threads"] = args.threads or torch.get_num_threads()
    frame["load_1min"] = os.getloadavg()[0]
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / name
    frame.round(4).to_csv(out, index=False)
    shown = frame.drop(columns=[c for c in ("machine", "figure_files") if c in frame])
    with pd.option_context("display.width", 220, "display.max_columns", 30):
        print(shown.round(3).to_string(index=False))
    print(f"written {out}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=["all", "post_training", "per_step"], default="all")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (0 = all cores)")
    parser.add_argument("--repeats", type=int, default=3, help="post-training runs")
    parser.add_argument("--blocks", type=int, default=30, help="blocks per variant")
    parser.add_argument("--block-steps", type=int, default=10, help="training steps per block")
    parser.add_argument("--workloads", nargs="*", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--post-training-once", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.post_training_once:
        print(json.dumps(post_training_once(args.threads)))
        return
    if args.part in ("all", "post_training"):
        rows = post_training(args.repeats, args.threads)
        _write(rows, "bench_diagnostics_post_training.csv", args)
        cpu = statistics.median(r["finish_cpu_s"] for r in rows)
        diag = statistics.median(r["diagnostics_and_report_cpu_s"] for r in rows)
        print(
            f"post-training median: finish {cpu:.2f} s CPU, diagnostics + report {diag:.2f} s CPU"
        )
    if args.part in ("all", "per_step"):
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        rows = [per_step(w, args.device, args.blocks, args.block_steps) for w in args.workloads]
        _write(rows, f"bench_diagnostics_{args.device.split(':')[0]}.csv", args)


if __name__ == "__main__":
    main()

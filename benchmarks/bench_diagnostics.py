"""What the diagnostics cost during training, measured in interleaved blocks.

Two workloads through the real :class:`runner.engine.Trainer` and
:class:`runner.diagnostics.DiagnosticsCallback` with the default ``conf/diagnostics``:

- **digits** — the default main job (custom_cnn on scikit-learn's 8×8 digits);
- **cifar-sized** — the default custom_cnn (32, 64, 128 filters, fc 512) on synthetic
  32×32 RGB images (``dataset=synthetic``) split like CIFAR-10 (45 000 / 5 000 / 10 000),
  batch 64. Epoch time is computed from the step and validation times, so no full epoch
  is trained.

Whole-run A/B timings are swamped by noise on a shared machine, so the costs are measured
where they arise, alternating with and without the callback in short blocks of training
steps (``Trainer.train_epoch`` on a limited loader), many times, in one process:

- *per-step*: median time of a training step with the callback's hooks vs without
  (gradient norms every ``interval`` steps, loss and learning rate every step);
- *epoch end*: median time of the callback's ``on_epoch_end`` (one device sync, weight
  norms, the dead-unit / activation probe on 128 training images);
- *epoch*: steps per epoch × step time + the validation pass, without diagnostics.

overhead % = (steps per epoch × per-step extra + epoch-end time) / epoch time, with the
per-step extra from the paired blocks and, steadier, from timing the hooks directly
(``training_overhead_direct_pct``). Once per
run, ``on_fit_start`` (probe batch, weight samples, the probe before training) and the
end-of-run tables and figures (``on_summary``) are timed and reported in seconds. On the CPU
times are process CPU seconds (all threads), which other jobs on a shared machine disturb
far less than wall time; on a GPU they are wall seconds after a device sync.

Usage::

    python benchmarks/bench_diagnostics.py                  # CPU
    python benchmarks/bench_diagnostics.py --device cuda --blocks 40

Prints a table and writes ``benchmarks/results/bench_diagnostics_<device>.csv``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from hydra import compose, initialize_config_dir

import runner.cli  # noqa: F401  (registers the config resolvers and schemas)
from runner import build
from runner.diagnostics import DiagnosticsCallback
from runner.engine import Trainer
from runner.runtime import seed_everything

RESULTS = Path(__file__).resolve().parent / "results"
CONF = Path(__file__).resolve().parents[1] / "conf"

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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(fn, device: torch.device) -> float:
    """Seconds ``fn`` takes: CPU time of the whole process (all threads) on the CPU — far
    less sensitive than wall time to other jobs on a shared machine — wall time on a GPU."""
    clock = time.process_time if device.type == "cpu" else time.perf_counter
    _sync(device)
    started = clock()
    fn()
    _sync(device)
    return clock() - started


def measure(workload: str, device_name: str, blocks: int, block_steps: int) -> dict:
    device = torch.device(device_name)
    with tempfile.TemporaryDirectory() as tmp:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose(
                config_name="config",
                overrides=[*WORKLOADS[workload], f"trainer.device={device_name}"],
            )
        cfg.run_dir = tmp
        seed_everything(cfg.trainer.seed, False)
        data = build.build_data(cfg)
        model = build.build_model(cfg.model, data)
        trainer = Trainer(cfg, model, data, device, Path(tmp), [])
        steps_per_epoch = len(trainer.train_loader)
        callback = DiagnosticsCallback(cfg.diagnostics, Path(tmp), seed=cfg.trainer.seed)
        trainer.callbacks = [callback]
        trainer.evaluate(trainer.val_loader)  # warm-up of the eval-mode kernels
        fit_start = _timed(lambda: callback.on_fit_start(trainer), device)
        trainer.train_loader.limit_batches = block_steps
        trainer.train_epoch(0)  # warm-up
        on, off = [], []
        for block in range(blocks):
            for with_diag in (block % 2 == 0, block % 2 == 1):  # alternate which goes first
                trainer.callbacks = [callback] if with_diag else []
                seconds = _timed(lambda b=block: trainer.train_epoch(b + 1), device)
                (on if with_diag else off).append(seconds / block_steps)
        hooks = _hook_costs(trainer, callback, device)
        row = {"epoch": 1, "train_loss": 0.0, "val_loss": 0.0}
        epoch_end = [
            _timed(lambda e=e: callback.on_epoch_end(trainer, e, row), device) for e in range(1, 8)
        ]
        validation = [
            _timed(lambda: trainer.evaluate(trainer.val_loader), device) for _ in range(5)
        ]
        trainer.callbacks = [callback]
        trainer.train_loader.limit_batches = 0
        trainer.state.history = [row | {"epoch": 1, "train_acc": 0.5, "val_acc": 0.5, "lr": 1e-3}]
        summary: dict = {"classes": list(data.classes), "status": "completed", "diagnoses": []}
        end_of_run = _timed(lambda: callback.on_summary(trainer, summary), device)
    step_off, step_on = statistics.median(off), statistics.median(on)
    # paired blocks: the median of per-pair differences is steadier than a difference of medians
    paired = statistics.median(a - b for a, b in zip(on, off))
    epoch = steps_per_epoch * step_off + statistics.median(validation)
    extra = steps_per_epoch * paired + statistics.median(epoch_end)
    direct = hooks["record"] / max(callback.every, 1) + hooks["batch_end"]
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
        "epoch_end_ms": 1000 * statistics.median(epoch_end),
        "epoch_s_off": epoch,
        "training_overhead_pct": 100 * extra / epoch,
        "training_overhead_direct_pct": 100
        * (steps_per_epoch * direct + statistics.median(epoch_end))
        / epoch,
        "fit_start_s": fit_start,
        "fit_start_pct_of_one_epoch": 100 * fit_start / epoch,
        "end_of_run_s": end_of_run,
    }


def _hook_costs(trainer: Trainer, callback: DiagnosticsCallback, device: torch.device) -> dict:
    """Median seconds of one gradient-norm record and of one per-step bookkeeping call,
    timed directly (gradients of the last step are still in place)."""
    every = max(callback.every, 1)
    loss = torch.zeros((), device=device)
    record, batch_end = [], []
    for i in range(100):
        trainer.state.global_step = (i + 1) * every - 1  # the next step records
        record.append(_timed(lambda: callback.on_after_backward(trainer), device))
        batch_end.append(
            _timed(lambda i=i: callback.on_train_batch_end(trainer, 1, i, loss), device)
        )
    callback._flush()
    return {"record": statistics.median(record), "batch_end": statistics.median(batch_end)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--blocks", type=int, default=30, help="blocks per variant")
    parser.add_argument("--block-steps", type=int, default=10, help="training steps per block")
    parser.add_argument("--workloads", nargs="*", default=list(WORKLOADS), choices=list(WORKLOADS))
    args = parser.parse_args()
    rows = [measure(w, args.device, args.blocks, args.block_steps) for w in args.workloads]
    frame = pd.DataFrame(rows)
    frame["device"] = args.device
    frame["machine"] = platform.processor() or platform.machine()
    frame["threads"] = torch.get_num_threads()
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"bench_diagnostics_{args.device.split(':')[0]}.csv"
    frame.round(4).to_csv(out, index=False)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(frame.drop(columns=["machine"]).round(2).to_string(index=False))
    print(f"\nwritten {out}")


if __name__ == "__main__":
    main()

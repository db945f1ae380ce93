"""Training images/s of the runner's loop against a minimal hand-written PyTorch loop.

For each model, on synthetic CIFAR-shaped uint8 data of the right size, two
loops train the same architecture with the same batch, device, precision,
memory format and optimizer:

- **runner** — the real loop: a config composed from ``conf/`` like the CLI does
  (``dataset=synthetic``, the model's group, ``optimizer=sgd``), the dataset and
  model built by :mod:`runner.build`, a :class:`runner.engine.Loop` with the
  default callbacks (metrics CSV, diagnostics, trackers: whatever
  :func:`runner.train.extra_callbacks` adds) and a progress bar; timed over
  ``Loop.train_epoch`` (loader, augmentation, step, bookkeeping, callbacks);
- **plain** — uint8 tensor on the device → random permutation → ``float``,
  normalise → forward → cross-entropy → backward → SGD (or Adam) step.

Both run once untimed (kernel selection, allocator warm-up), then alternate
``--repeats`` times (a b, b a, a b, …) in this one process, so both see the same
machine load; the table gives the medians and the median of the per-repeat
ratios runner / plain.

``--compare precision`` instead pits the runner at fp32 against the runner at
``--precision`` (default bf16) with ``channels_last`` — the speed-up of
``trainer.precision=bf16 trainer.channels_last=true`` — and the same for the
plain loop. ``--compare channels_last`` pits the runner at ``--precision`` without
channels_last against the same with it (what ``trainer.channels_last=auto`` decides on).

Usage::

    python benchmarks/bench_train.py                          # all models, CPU, fp32
    python benchmarks/bench_train.py --models custom_cnn resnet18 --repeats 7
    python benchmarks/bench_train.py --precision bf16 --channels-last
    python benchmarks/bench_train.py --compare precision --models custom_cnn resnet18
    python benchmarks/bench_train.py --device cuda --precision 16-mixed --channels-last

Prints a markdown table and writes ``benchmarks/results/bench_train_<...>.csv``.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

import runner.cli  # noqa: F401  (registers the config schemas and resolvers)
from runner import build
from runner.rundir import RunDir
from runner.runtime import seed_everything, set_threads

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

# name → (config overrides, image size, batch size). S3 = SEEDS.md's tuned CNN.
MODELS: dict[str, tuple[list[str], int, int]] = {
    "custom_cnn": (["model=custom_cnn"], 32, 128),
    "custom_cnn_s3": (
        ["model=custom_cnn", "model.filters=[128,256,512]", "model.fc_neurons=[512]"],
        32,
        128,
    ),
    "resnet18": (["model=resnet18"], 32, 128),
    "resnet34": (["model=resnet34"], 32, 128),
    "resnet34_224": (["model=resnet34"], 224, 16),
    # next to no compute: what is left is the loop's own cost per step (ms/step column)
    "tiny": (["model=custom_cnn", "model.filters=[4]", "model.fc_neurons=[]"], 8, 128),
}
DEFAULT_MODELS = ["custom_cnn", "custom_cnn_s3", "resnet18", "resnet34", "resnet34_224"]
PRECISIONS = ("32", "bf16", "16-mixed")
_AUTOCAST = {"bf16": torch.bfloat16, "16-mixed": torch.float16}


@dataclass
class Setting:
    """One loop's precision and memory format."""

    precision: str = "32"
    channels_last: bool = False

    @property
    def label(self) -> str:
        return f"{self.precision}{' cl' if self.channels_last else ''}"


def compose_cfg(overrides: list[str]) -> DictConfig:
    """The config the CLI would compose for ``overrides`` (``conf/config.yaml``)."""
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def runner_cfg(model: str, args: argparse.Namespace, setting: Setting, steps: int) -> DictConfig:
    """Synthetic CIFAR-shaped data of exactly ``steps`` batches, the model's config, SGD."""
    overrides, size, batch = MODELS[model]
    batch = args.batch_size or batch
    return compose_cfg(
        [
            *overrides,
            "dataset=synthetic",
            f"dataset.num_samples={steps * batch}",
            f"dataset.image_size={size}",
            "dataset.num_classes=10",
            "dataset.val_fraction=0",
            "dataset.test_fraction=0",
            f"optimizer={args.optimizer}",
            f"trainer.batch_size={batch}",
            f"trainer.device={args.device}",
            f"trainer.precision={setting.precision}",
            f"trainer.channels_last={str(setting.channels_last).lower()}",
            f"trainer.compile={str(args.compile).lower()}",
            f"trainer.num_threads={args.threads}",
            f"trainer.progress_bar={args.progress_bar}",
            f"trainer.limit_train_batches={steps}",
            "run_dir=" + tempfile.mkdtemp(prefix="bench_train_"),
        ]
    )


def make_runner_loop(cfg: DictConfig) -> Callable[[int], int]:
    """The runner's loop on ``cfg`` (built as ``runner`` builds it, with the run's
    callbacks); the returned function runs one timed training epoch."""
    from runner.train import extra_callbacks

    seed_everything(cfg.trainer.seed)
    device = torch.device(cfg.trainer.device)
    data = build.build_data(cfg)
    model = build.build_model(cfg, data)
    run = RunDir(cfg.run_dir)
    loop = build.build_run(cfg, data, model, device, run, extra_callbacks(cfg, run, data)).loop
    loop._notify("on_fit_start")

    def epoch(i: int) -> int:
        loop._notify("on_epoch_start", epoch=i)
        result = loop.train_epoch(i)  # ends with .item(): synchronised on CUDA
        return int(result["images"])

    return epoch


def make_plain_loop(cfg: DictConfig, setting: Setting) -> Callable[[int], int]:
    """The hand-written loop on the same model, data size, batch, optimizer and precision."""
    seed_everything(cfg.trainer.seed)
    device = torch.device(cfg.trainer.device)
    data = build.build_data(cfg)
    model = build.build_model(cfg, data)
    memory = torch.channels_last if setting.channels_last else torch.preserve_format
    model = model.to(device, memory_format=memory)
    if cfg.trainer.compile:
        model = torch.compile(model)
    x_all, y_all = data.train.x.to(device), data.train.y.to(device)
    mean = torch.tensor(data.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(data.std, device=device).view(1, -1, 1, 1)
    opt = _plain_optimizer(cfg, model)
    dtype = _AUTOCAST.get(setting.precision)
    scaler = torch.amp.GradScaler(device.type, enabled=setting.precision == "16-mixed")
    batch, n = int(cfg.trainer.batch_size), len(y_all)

    def epoch(i: int) -> int:
        model.train()
        order = torch.randperm(n, device=device)
        for start in range(0, n, batch):
            idx = order[start : start + batch]
            x = (x_all[idx].float().div_(255) - mean) / std
            if setting.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                loss = F.cross_entropy(model(x).float(), y_all[idx])
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return n

    return epoch


def _plain_optimizer(cfg: DictConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    o = cfg.optimizer
    if o._target_ == "torch.optim.SGD":
        return torch.optim.SGD(
            model.parameters(), lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay
        )
    if o._target_ == "torch.optim.Adam":
        return torch.optim.Adam(model.parameters(), lr=o.lr, weight_decay=o.weight_decay)
    raise ValueError(f"the plain loop knows sgd and adam, not {o._target_}")


def timed(loop: Callable[[int], int], epoch: int) -> tuple[float, float]:
    """Images per wall-clock second and per CPU second (all threads) of one epoch of ``loop``.

    CPU seconds leave out the time other processes hold the cores, so on a shared
    machine their ratio is the steadier one (on CPU, with the same threads per loop).
    """
    wall, cpu = time.perf_counter(), time.process_time()
    images = loop(epoch)
    return images / (time.perf_counter() - wall), images / (time.process_time() - cpu)


def pick_steps(model: str, args: argparse.Namespace, setting: Setting) -> int:
    """Batches per timed epoch: ``--steps``, else enough for about ``--seconds`` of work."""
    if args.steps:
        return args.steps
    probe = make_plain_loop(runner_cfg(model, args, setting, 2), setting)
    probe(0)  # warm-up
    started = time.perf_counter()
    probe(1)
    per_step = (time.perf_counter() - started) / 2
    return max(2, min(200, math.ceil(args.seconds / max(per_step, 1e-4))))


def make_loops(
    model: str, args: argparse.Namespace
) -> tuple[dict[str, Callable[[int], int]], list[tuple[str, str]], int, str]:
    """The loops ``args.compare`` pits against each other, the (reference, other) pairs whose
    speed ratio is reported, the batches per epoch and the precision label."""
    base = Setting(args.precision, args.channels_last)
    if args.compare == "loops":
        steps = pick_steps(model, args, base)
        cfg = runner_cfg(model, args, base, steps)
        loops = {"runner": make_runner_loop(cfg), "plain": make_plain_loop(cfg, base)}
        return loops, [("plain", "runner")], steps, base.label
    if args.compare == "channels_last":  # the runner at --precision without and with it
        base, fast = Setting(args.precision, False), Setting(args.precision, True)
        steps = pick_steps(model, args, base)
        loops = {
            base.label: make_runner_loop(runner_cfg(model, args, base, steps)),
            fast.label: make_runner_loop(runner_cfg(model, args, fast, steps)),
        }
        return loops, [(base.label, fast.label)], steps, f"{base.label} vs {fast.label}"
    fast = Setting(args.precision if args.precision != "32" else "bf16", True)
    base = Setting("32", False)
    steps = pick_steps(model, args, base)
    loops = {
        "fp32": make_runner_loop(runner_cfg(model, args, base, steps)),
        fast.label: make_runner_loop(runner_cfg(model, args, fast, steps)),
        "plain fp32": make_plain_loop(runner_cfg(model, args, base, steps), base),
        f"plain {fast.label}": make_plain_loop(runner_cfg(model, args, fast, steps), fast),
    }
    pairs = [("fp32", fast.label), ("plain fp32", f"plain {fast.label}")]
    return loops, pairs, steps, f"32 vs {fast.label}"


def bench_model(model: str, args: argparse.Namespace) -> dict[str, object]:
    """Alternate the loops of ``args.compare`` on ``model``; medians and paired ratios."""
    loops, pairs, steps, precision = make_loops(model, args)
    names = list(loops)
    for name in names:  # warm-up: oneDNN/cuDNN kernel choice, allocator, compile
        loops[name](0)
    wall: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(args.repeats):
        for name in names if rep % 2 == 0 else names[::-1]:
            w, c = timed(loops[name], rep + 1)
            wall[name].append(w)
            cpu[name].append(c)
    _, size, batch = MODELS[model]
    batch = args.batch_size or batch
    row: dict[str, object] = {
        "model": model,
        "size": size,
        "batch": batch,
        "steps": steps,
        "device": args.device,
        "precision": precision,
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
    }
    row.update({f"{name} img/s": round(statistics.median(wall[name]), 1) for name in names})
    on_cpu = args.device == "cpu"
    if args.compare == "loops":  # the runner's own time per optimizer step
        speeds = cpu if on_cpu else wall
        extra = statistics.median(1 / v for v in speeds["runner"])
        extra -= statistics.median(1 / v for v in speeds["plain"])
        row["extra ms/step" + (" (CPU time)" if on_cpu else "")] = round(extra * batch * 1e3, 2)
    for ref, other in pairs:
        ratios = [o / r for o, r in zip(wall[other], wall[ref])]
        row[f"{other} / {ref}"] = round(statistics.median(ratios), 3)
        row[f"{other} / {ref} range"] = f"{min(ratios):.3f}-{max(ratios):.3f}"
        if on_cpu:
            cpu_ratios = [o / r for o, r in zip(cpu[other], cpu[ref])]
            row[f"{other} / {ref} (CPU time)"] = round(statistics.median(cpu_ratios), 3)
    return row


def machine() -> str:
    """CPU model, cores and load, or the GPU's name."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = " ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    text = f"{cpu}, {os.cpu_count()} cores, load average {load}, torch {torch.__version__}"
    if torch.cuda.is_available():
        text += f", {torch.cuda.get_device_name()}"
    return text


def markdown(rows: list[dict[str, object]]) -> str:
    keys = list(rows[0])
    for row in rows[1:]:
        keys += [k for k in row if k not in keys]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r.get(k, "")) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=DEFAULT_MODELS, choices=list(MODELS))
    p.add_argument("--repeats", type=int, default=5, help="timed epochs per loop (>= 5)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.add_argument("--precision", default="32", choices=PRECISIONS)
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile both models")
    p.add_argument("--compare", default="loops", choices=("loops", "precision", "channels_last"))
    p.add_argument("--optimizer", default="sgd", choices=("sgd", "adam"))
    p.add_argument("--batch-size", type=int, default=0, help="0 = the model's default")
    p.add_argument("--steps", type=int, default=0, help="batches per timed epoch; 0 = auto")
    p.add_argument("--seconds", type=float, default=2.0, help="auto steps: seconds per epoch")
    p.add_argument("--threads", type=int, default=0, help="CPU threads; 0 = all cores")
    p.add_argument("--progress-bar", default="true", choices=("true", "false", "auto"))
    p.add_argument("--out", default="", help="CSV path; default benchmarks/results/<auto>.csv")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    args = parse_args(argv)
    set_threads(args.threads)
    rows = []
    for model in args.models:
        row = bench_model(model, args)
        rows.append(row)
        print(markdown([row]).splitlines()[-1], flush=True)
    print(f"\n{machine()}\n")
    print(markdown(rows))
    tag = {"precision": "precision", "channels_last": f"{args.precision}_channels_last"}.get(
        args.compare, args.precision
    )
    tag += "_cl" if args.channels_last and args.compare == "loops" else ""
    tag += "_compile" if args.compile else ""
    out = Path(args.out) if args.out else RESULTS / f"bench_train_{args.device}_{tag}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    import pandas as pd

    frame = pd.DataFrame(rows)
    frame["machine"] = machine()
    frame.to_csv(out, index=False)
    print(f"\nwrote {out}")
    return rows


if __name__ == "__main__":
    main()

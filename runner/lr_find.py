"""``runner-lr-find``: a learning-rate range test (Smith 2015; fastai's ``lr_find``,
Lightning's ``Tuner.lr_find``).

Builds the configured model, data, optimizer and loss exactly as ``runner`` would, then
trains for ``--steps`` optimizer steps while the learning rate grows exponentially from
``--start-lr`` to ``--end-lr``, recording the loss of every step. It stops early once the
smoothed loss exceeds ``--diverge`` x its minimum. The suggested lr is where the smoothed
loss falls fastest (the steepest negative slope against log lr, as Lightning suggests);
fastai's other rule, the lr of the minimum divided by 10, is recorded too.

Writes, into its own directory (default ``outputs/lr_find/<time>_<model>_<dataset>_<id>/``;
never a run's directory — the weights it trained are thrown away):

    lr_find.csv    step, lr, loss, smoothed_loss
    lr_find.png    smoothed loss against lr (log scale), the suggestion marked
    lr_find.json   suggested_lr, min_loss_lr_div10, the range, steps run, the overrides

Usage::

    runner-lr-find                                       # the default experiment
    runner-lr-find model=resnet18 dataset=cifar10 optimizer=sgd --steps 200
    runner-lr-find --start-lr 1e-6 --end-lr 1 --out outputs/lr_find/mine optimizer=adamw

Then train with it: ``runner optimizer.lr=<suggested_lr> ...``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import logging
import math
import sys
import uuid
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from runner.errors import ConfigError, Exit, RunnerError

log = logging.getLogger("runner")

CSV, PNG, JSON = "lr_find.csv", "lr_find.png", "lr_find.json"


@dataclass
class RangeTest:
    """The test's settings: lrs from ``start_lr`` to ``end_lr`` over ``steps`` optimizer
    steps; ``smooth``: weight of the previous value in the loss's moving average;
    ``diverge``: stop when the smoothed loss exceeds this multiple of its minimum."""

    start_lr: float = 1e-7
    end_lr: float = 10.0
    steps: int = 100
    smooth: float = 0.98
    diverge: float = 4.0

    def lr(self, step: int) -> float:
        return self.start_lr * (self.end_lr / self.start_lr) ** (step / max(1, self.steps - 1))


@dataclass
class RangeResult:
    """Per-step records and the suggestions (None when too few steps ran)."""

    rows: list[dict[str, float]] = field(default_factory=list)
    suggested_lr: float | None = None
    min_loss_lr_div10: float | None = None


def suggest(lrs: Sequence[float], smoothed: Sequence[float]) -> tuple[float | None, float | None]:
    """(steepest descent lr, lr of the minimum / 10) of a smoothed loss curve.

    The slope is taken against log lr, skipping the first 10 % of the steps (the average
    is still warming up) and the last step; ``None`` when fewer than 5 points remain.
    """
    import numpy as np

    lrs, smoothed = np.asarray(lrs, dtype=float), np.asarray(smoothed, dtype=float)
    finite = np.isfinite(smoothed)
    lrs, smoothed = lrs[finite], smoothed[finite]
    skip = max(1, len(lrs) // 10)
    window = slice(skip, len(lrs) - 1)
    if len(lrs[window]) < 5:
        return None, None
    slope = np.gradient(smoothed[window], np.log(lrs[window]))
    steepest = float(lrs[window][int(np.argmin(slope))])
    at_min = float(lrs[int(np.argmin(smoothed))]) / 10
    return steepest, at_min


def range_test(cfg: Any, test: RangeTest) -> RangeResult:
    """Run the range test on the config ``cfg`` (composed, validated)."""
    from runner import build
    from runner.data.loader import LoaderOptions
    from runner.precision import resolve
    from runner.runtime import resolve_device, seed_everything, set_threads

    seed_everything(cfg.trainer.seed)
    set_threads(cfg.trainer.num_threads)
    device = resolve_device(cfg.trainer.device)
    data = build.build_data(cfg)
    model = build.build_model(cfg, data)
    precision, channels_last = resolve(cfg.trainer, device, data.kind, model)
    memory = torch.channels_last if channels_last else torch.preserve_format
    model = model.to(device, memory_format=memory)
    opts = LoaderOptions(int(cfg.trainer.eval_batch_size), device, channels_last=channels_last)
    parts = build.build_parts(cfg, data, model, device, opts, precision)
    optimizer, loader = parts.optimizer, parts.train_loader
    dtype = parts.autocast_dtype
    result, average, best = RangeResult(), 0.0, math.inf
    model.train()
    step, epoch = 0, 0
    while step < test.steps:
        epoch += 1
        for batch, (x, y) in enumerate(loader.epoch(epoch)):
            lr = test.lr(step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            mixed = None
            if parts.mixer is not None:
                x, mixed = parts.mixer.mix(x, y, (epoch, batch))
            with torch.autocast(device.type, dtype=dtype) if dtype else nullcontext():
                logits = parts.forward_model(x).float()
                loss = (
                    parts.criterion(logits, y)
                    if mixed is None
                    else mixed.loss(parts.criterion, logits)
                )
            optimizer.zero_grad(set_to_none=True)
            parts.scaler.scale(loss).backward()
            parts.scaler.step(optimizer)
            parts.scaler.update()
            value = float(loss.detach())
            average = test.smooth * average + (1 - test.smooth) * value
            smoothed = average / (1 - test.smooth ** (step + 1))  # bias-corrected
            result.rows.append({"step": step, "lr": lr, "loss": value, "smoothed_loss": smoothed})
            step += 1
            if not math.isfinite(smoothed) or smoothed > test.diverge * best:
                log.info("lr range test: loss diverged at lr %.3g (step %d)", lr, step)
                step = test.steps
            best = min(best, smoothed) if math.isfinite(smoothed) else best
            if step >= test.steps:
                break
    lrs = [r["lr"] for r in result.rows]
    result.suggested_lr, result.min_loss_lr_div10 = suggest(
        lrs, [r["smoothed_loss"] for r in result.rows]
    )
    return result


def check_out_dir(out: Path) -> None:
    """Refuse a directory that is, or lies inside, a run directory."""
    from runner.rundir import RunDir

    for folder in (out, *out.parents):
        if RunDir(folder).is_run():
            raise ConfigError(
                f"--out {out} is inside the run directory {folder}: the range test writes into "
                "its own directory and never touches a run's files; pick another --out"
            )


def write_outputs(out: Path, result: RangeResult, test: RangeTest, overrides: list[str]) -> None:
    """lr_find.csv, lr_find.json and lr_find.png in ``out``."""
    from runner.io import write_json, write_rows

    write_rows(out / CSV, result.rows)
    write_json(
        out / JSON,
        {
            "suggested_lr": result.suggested_lr,
            "rule": "steepest descent of the smoothed loss against log lr",
            "min_loss_lr_div10": result.min_loss_lr_div10,
            "start_lr": test.start_lr,
            "end_lr": test.end_lr,
            "steps_planned": test.steps,
            "steps_run": len(result.rows),
            "overrides": overrides,
        },
    )
    plot(out / PNG, result)


def plot(path: Path, result: RangeResult) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lrs = [r["lr"] for r in result.rows]
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.plot(lrs, [r["loss"] for r in result.rows], color="0.75", lw=0.8, label="loss")
    ax.plot(lrs, [r["smoothed_loss"] for r in result.rows], color="C0", label="smoothed loss")
    if result.suggested_lr is not None:
        ax.axvline(result.suggested_lr, color="C3", ls="--",
                   label=f"suggested lr {result.suggested_lr:.2g}")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    finite = [r["smoothed_loss"] for r in result.rows if math.isfinite(r["smoothed_loss"])]
    raw = [r["loss"] for r in result.rows if math.isfinite(r["loss"])]
    if finite:
        ax.set_ylim(min(raw) * 0.9, min(max(finite), 4 * min(finite)) * 1.1)
    ax.legend()
    ax.set_title("learning-rate range test")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def default_out(cfg: Any) -> Path:
    stamp = _dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    name = f"{stamp}_{cfg.model.name}_{cfg.dataset.name}_{uuid.uuid4().hex[:6]}"
    return Path.cwd() / "outputs" / "lr_find" / name


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog="runner-lr-find",
        description="Learning-rate range test: a short exponential lr sweep; writes "
        "lr_find.csv/.png/.json with the suggested lr. Other arguments are the config "
        "overrides of `runner` (model=..., dataset=..., optimizer=...).",
    )
    parser.add_argument("--start-lr", type=float, default=RangeTest.start_lr)
    parser.add_argument("--end-lr", type=float, default=RangeTest.end_lr)
    parser.add_argument("--steps", type=int, default=RangeTest.steps, help="optimizer steps")
    parser.add_argument("--smooth", type=float, default=RangeTest.smooth,
                        help="moving-average weight of the previous loss")  # fmt: skip
    parser.add_argument("--diverge", type=float, default=RangeTest.diverge,
                        help="stop when the smoothed loss exceeds this x its minimum")  # fmt: skip
    parser.add_argument("--out", default="", help="output directory (default outputs/lr_find/...)")
    return parser.parse_known_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args, overrides = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return run(args, overrides)
    except RunnerError as err:
        print(f"runner-lr-find: {err}", file=sys.stderr)
        return Exit.REFUSED


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    from omegaconf import open_dict

    from runner.api import compose
    from runner.validate import validate

    if not 0 < args.start_lr < args.end_lr:
        raise ConfigError(f"need 0 < --start-lr < --end-lr, got {args.start_lr}, {args.end_lr}")
    if args.steps < 5:
        raise ConfigError(f"--steps={args.steps}: the test needs at least 5 steps")
    cfg = compose(overrides)
    with open_dict(cfg):
        cfg.pop("hydra", None)
        cfg.run_dir = ""
    validate(cfg)
    out = Path(args.out).resolve() if args.out else default_out(cfg)
    check_out_dir(out)
    test = RangeTest(args.start_lr, args.end_lr, args.steps, args.smooth, args.diverge)
    result = range_test(cfg, test)
    write_outputs(out, result, test, overrides)
    shown = "none (too few steps)" if result.suggested_lr is None else f"{result.suggested_lr:.3g}"
    print(f"suggested lr: {shown}  ({len(result.rows)} steps; {out / PNG})")
    return Exit.OK


if __name__ == "__main__":
    sys.exit(main())

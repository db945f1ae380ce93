"""What a resume may change: the new config against the checkpoint's, key by key.

A resumed run continues the checkpoint's training, so what defines that training must
stay; what only steers the rest of it may change and is applied truthfully (the lr the
loop uses, ``.hydra/config.yaml``, ``summary.json`` and the report agree):

============================================  ==============================================
key                                           on resume
============================================  ==============================================
``model.*``                                   refused (the weights belong to that model)
``dataset.*`` (not its location keys nor     refused (another split or other data would
``augment``), ``trainer.seed``; the data's    mix two datasets in one run); ``path``,
classes, input shape and normalisation        ``root``, ``download``, ``cache``... may move
``optimizer._target_``                        refused (its state does not carry over)
``scheduler.*``                               refused (the schedule's state is the run's)
``optimizer.lr``                              applied: the schedule goes on from where it
                                              was, scaled by new lr / old lr; refused for
                                              ``onecycle``/``cyclic`` (their lr range is set
                                              by the schedule itself)
other ``optimizer.*`` (weight decay,          applied from the first resumed step
momentum, betas, eps...)
``trainer.max_epochs``                        applied; a cosine schedule sized by it
                                              (``T_max: 0``) is rebuilt over the remaining
                                              epochs starting at the last epoch's lr, so the
                                              lr curve goes on without a jump; refused for
                                              ``onecycle``, ``linear`` (one schedule spans
                                              the whole run)
``trainer.batch_size``,                       applied; refused for step-interval schedules
``trainer.limit_train_batches``               (``onecycle``, ``cyclic``, ``linear``: sized
                                              in steps)
``dataset.augment.*``, other ``trainer.*``,  applied (they are read when the run is built)
``diagnostics``,
``logger``, ``notes``
============================================  ==============================================
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from runner.errors import CheckpointError

log = logging.getLogger(__name__)

# keys that only say where or how this process runs: never refused, never reported
RUNTIME = (
    "run_dir",
    "task_name",
    "notes",
    "trainer.resume",
    "trainer.progress_bar",
    "trainer.num_threads",
    "trainer.device",
    "trainer.log_every_n_steps",
    "trainer.eval_batch_size",
    "trainer.save",
    "trainer.checkpointing",  # the first runner's on/off form of trainer.save
    "logger",
    "diagnostics",
)
# dataset keys that say where the data lives or how it is read, not what it is
DATA_LOCATION = (
    "path",
    "root",
    "download",
    "cache",
    "num_workers",
    "streaming",
    "streaming_threshold_mb",
    "check_duplicates",
)
STEP_SCHEDULES = ("onecycle", "cyclic")
RUN_SIZED = ("onecycle", "linear")  # one schedule sized to the whole run, in steps
ABSENT = "<absent>"


@dataclass
class ResumePlan:
    """The changes a resume applies (``changes``: key → (checkpoint's value, new value))."""

    path: Path
    epoch: int
    changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    lr_ratio: float = 1.0
    optimizer_values: dict[str, Any] = field(default_factory=dict)
    rebuild_cosine: dict[str, float] | None = None  # {"eta_min": ...} when rebuilt

    def apply(self, loop: Any) -> None:
        """Put the changed hyper-parameters into the restored optimizer and schedule."""
        optimizer = loop.optimizer
        for group in optimizer.param_groups:
            for key, value in self.optimizer_values.items():
                if key in group:
                    group[key] = tuple(value) if isinstance(group[key], tuple) else value
        if self.lr_ratio != 1.0:
            _scale_lr(optimizer, loop.parts.scheduler, self.lr_ratio)
        if self.rebuild_cosine is not None and loop.state.history:
            last_lr = float(loop.state.history[-1]["lr"]) * self.lr_ratio
            remaining = loop.settings.max_epochs - loop.state.epoch
            eta_min = self.rebuild_cosine["eta_min"]
            loop.parts.scheduler = _cosine_from(optimizer, last_lr, remaining, eta_min)
            log.info(
                "resume: cosine schedule rebuilt over epochs %d-%d, from lr %.3g",
                loop.state.epoch + 1,
                loop.settings.max_epochs,
                last_lr,
            )
        loop.lr = optimizer.param_groups[0]["lr"]
        for key, (old, new) in self.changes.items():
            log.info("resume: %s changed from %s to %s (applied)", key, old, new)

    def describe(self) -> dict[str, Any]:
        """For summary.json: where the run resumed and what changed."""
        return {
            "checkpoint": str(self.path),
            "epoch": self.epoch,
            "changed": {k: {"checkpoint": o, "now": n} for k, (o, n) in self.changes.items()},
            "cosine_rebuilt": self.rebuild_cosine is not None,
        }


def plan(cfg: DictConfig, ckpt: dict[str, Any], path: Path) -> ResumePlan:
    """Compare ``cfg`` with the checkpoint's config; raise :class:`CheckpointError` naming
    every key that cannot change on resume, else the changes to apply."""
    from runner.checkpoint import CONFIG, EPOCH, stored_config

    stored = stored_config(ckpt, path)
    new = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    old_flat, new_flat = flatten(stored), flatten(new)
    differing = {
        key: (old_flat.get(key, ABSENT), new_flat.get(key, ABSENT))
        for key in sorted(set(old_flat) | set(new_flat))
        if old_flat.get(key, ABSENT) != new_flat.get(key, ABSENT) and not _runtime(key)
    }
    if not ckpt.get(CONFIG):  # a checkpoint without its config: nothing to compare
        differing = {}
    scheduler = str(new["scheduler"].get("name"))
    refused = {k: v for k, v in differing.items() if _refusal(k, scheduler, new)}
    if refused:
        listed = "; ".join(
            f"{k}: {_show(o)} in the checkpoint, {_show(n)} now" for k, (o, n) in refused.items()
        )
        raise CheckpointError(
            f"cannot resume from {path}: {listed}. These keys define the run being resumed "
            "(README: What a resume may change); resume with the checkpoint's values, or "
            "start a new run in another hydra.run.dir"
        )
    result = ResumePlan(Path(path), int(ckpt.get(EPOCH, 0)), differing)
    old_lr, new_lr = old_flat.get("optimizer.lr"), new_flat.get("optimizer.lr")
    if "optimizer.lr" in differing and old_lr:
        result.lr_ratio = float(new_lr) / float(old_lr)
    result.optimizer_values = {
        k.split(".", 1)[1]: n
        for k, (_, n) in differing.items()
        if k.startswith("optimizer.") and k != "optimizer.lr" and n != ABSENT
    }
    sized_by_epochs = scheduler == "cosine" and not new["scheduler"].get("T_max")
    if "trainer.max_epochs" in differing and sized_by_epochs:
        result.rebuild_cosine = {"eta_min": float(new["scheduler"].get("eta_min") or 0.0)}
    return result


def check_data(ckpt: dict[str, Any], data: Any, path: Path) -> None:
    """Refuse to resume on data whose classes, input shape or normalisation differ."""
    from runner.checkpoint import CLASSES, DATA, Preprocessing

    stored = ckpt.get(DATA) or {}
    now = Preprocessing.from_data(data).stored()
    problems = []
    if CLASSES in ckpt and [str(c) for c in ckpt[CLASSES]] != [str(c) for c in data.classes]:
        stored_classes = list(ckpt[CLASSES])
        problems.append(f"classes {stored_classes} in the checkpoint, {list(data.classes)} now")
    for key in ("kind", "input_shape", "mean", "std"):
        if key in stored and not _same(stored[key], now[key]):
            problems.append(f"{key} {stored[key]} in the checkpoint, {now[key]} now")
    if problems:
        raise CheckpointError(
            f"cannot resume from {path} on this data: {'; '.join(problems)}. Resume on the "
            "data the run was trained on, or start a new run in another hydra.run.dir"
        )


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}`` (lists stay values)."""
    if not isinstance(node, dict):
        return {prefix: node}
    out: dict[str, Any] = {}
    for key, value in node.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            out.update(flatten(value, name))
        else:
            out[name] = value
    return out


def _runtime(key: str) -> bool:
    return any(key == r or key.startswith(r + ".") for r in RUNTIME)


def _refusal(key: str, scheduler: str, new: dict[str, Any]) -> bool:
    """Whether a change of ``key`` cannot be applied to a resumed run."""
    group, _, name = key.partition(".")
    if group == "model" or key == "trainer.seed" or key == "optimizer._target_":
        return True
    if group == "dataset":  # augmentation steers training; the rest is the data itself
        return name.split(".")[0] not in (*DATA_LOCATION, "augment")
    if group == "scheduler":
        return True
    if key == "optimizer.lr" and scheduler in STEP_SCHEDULES:
        return True
    if key == "trainer.max_epochs" and scheduler in RUN_SIZED:
        return True
    return key in ("trainer.batch_size", "trainer.limit_train_batches") and (
        scheduler in (*STEP_SCHEDULES, *RUN_SIZED)
    )


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        try:
            return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-9)
        except (TypeError, ValueError):
            return False
    return a == b


def _show(value: Any) -> str:
    return ABSENT if value == ABSENT else repr(value)


def _scale_lr(optimizer: Any, scheduler: Any, ratio: float) -> None:
    """Scale the current and base lr of every group (and the scheduler's copies)."""
    for group in optimizer.param_groups:
        group["lr"] *= ratio
        if "initial_lr" in group:
            group["initial_lr"] *= ratio
    if scheduler is not None:
        if getattr(scheduler, "base_lrs", None) is not None:
            scheduler.base_lrs = [lr * ratio for lr in scheduler.base_lrs]
        if getattr(scheduler, "_last_lr", None) is not None:
            scheduler._last_lr = [g["lr"] for g in optimizer.param_groups]


def _cosine_from(optimizer: Any, start_lr: float, remaining: int, eta_min: float) -> Any:
    """A cosine schedule over ``remaining`` epochs that starts just below ``start_lr`` (the
    last trained epoch's lr) and decays towards ``eta_min``."""
    import torch

    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] = start_lr
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # stepping a fresh scheduler before optimizer.step()
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=max(1, remaining) + 1, eta_min=min(eta_min, start_lr)
        )
        scheduler.step()
    return scheduler

"""What every tracker shares: where the run sits, the flattened config, the final metrics."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from runner.callbacks import Callback

CONFIG_GROUPS = ("model", "dataset", "optimizer", "scheduler", "trainer")


@dataclass
class RunContext:
    """Where a run sits: its directory and, inside a Hydra multirun, its sweep and job."""

    run_dir: Path
    sweep_dir: Path | None = None
    job_num: int | None = None
    overrides: list[str] = field(default_factory=list)
    logger_choice: str | None = None  # the `logger=` option Hydra picked (single name)

    @property
    def outputs_dir(self) -> Path:
        """The nearest ancestor named ``outputs``, else the sweep's (or run's) parent."""
        run = self.run_dir.resolve()
        for parent in (run, *run.parents):
            if parent.name == "outputs":
                return parent
        return (self.sweep_dir.resolve() if self.sweep_dir else run).parent


def run_context(run_dir: Path) -> RunContext:
    """The :class:`RunContext` of the current Hydra job (plain when not under Hydra)."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
    except (ImportError, ValueError):
        return RunContext(Path(run_dir))
    choice = hc.runtime.choices.get("logger")
    ctx = RunContext(
        Path(run_dir),
        overrides=list(hc.overrides.task),
        logger_choice=choice if isinstance(choice, str) else None,
    )
    if hc.mode == RunMode.MULTIRUN:
        ctx.sweep_dir, ctx.job_num = Path(hc.sweep.dir), int(hc.job.num)
    return ctx


def flat_params(cfg: DictConfig) -> dict[str, Any]:
    """The run's config as ``{"model.filters": "[32, 64]", "optimizer.lr": 0.001, ...}``.

    Values are int, float, bool or str (lists and None as text), as trackers want them.
    """
    out: dict[str, Any] = {}
    for group in CONFIG_GROUPS:
        node = OmegaConf.select(cfg, group)
        if node is None:
            continue
        try:
            container = OmegaConf.to_container(node, resolve=True)
        except Exception:  # an interpolation that only resolves under Hydra
            container = OmegaConf.to_container(node, resolve=False)
        _flatten(group, container, out)
    return out


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for key, sub in value.items():
            if key != "_partial_":
                _flatten(f"{prefix}.{key}", sub, out)
    elif isinstance(value, (bool, int, float, str)):
        out[prefix] = value
    else:
        out[prefix] = str(value)


def final_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """Every finite number of ``summary.json`` (best_val_acc, test_acc, params, ...)."""
    return {
        key: float(value)
        for key, value in summary.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    }


def epoch_scalars(row: dict[str, float]) -> dict[str, float]:
    """The finite values of one metrics row, without the epoch number."""
    return {
        key: float(value)
        for key, value in row.items()
        if key != "epoch" and isinstance(value, (int, float)) and math.isfinite(value)
    }


class Tracker(Callback):
    """A callback with a per-step cadence (``every_n_steps``, 0 = trainer.log_every_n_steps)."""

    def __init__(self, conf: DictConfig, cfg: DictConfig, ctx: RunContext) -> None:
        self.conf, self.cfg, self.ctx = conf, cfg, ctx

    def step_due(self, loop: Any) -> bool:
        """Whether the optimizer step just taken should be logged."""
        if not self.conf.log_steps:
            return False
        every = self.conf.every_n_steps or self.cfg.trainer.log_every_n_steps
        return loop.state.global_step % max(1, every) == 0

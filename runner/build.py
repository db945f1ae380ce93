"""The one place that instantiates objects from config (and logs each ``_target_``)."""

from __future__ import annotations

import inspect
import logging
from typing import Any

import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from runner.data.base import DataBundle
from runner.errors import ConfigError, DataError

log = logging.getLogger(__name__)

# Keys of the scheduler group that belong to the runner, not to torch's constructor.
_SCHEDULER_RUNNER_KEYS = ("name", "interval", "warmup_epochs", "warmup_start_factor", "monitor")


def build_data(cfg: DictConfig) -> DataBundle:
    """Instantiate ``cfg.dataset`` (its builder gets ``seed`` from the trainer)."""
    log.info("dataset: %s (%s)", cfg.dataset.name, cfg.dataset._target_)
    try:
        data = instantiate(cfg.dataset, seed=cfg.trainer.seed, _convert_="object")
    except Exception as err:  # Hydra wraps builder errors; surface ours unchanged
        raise _unwrap(err) from None
    if len(data.train) == 0:
        raise DataError(f"dataset {data.name!r} has no training samples")
    return data


def _accepted(target: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    params = inspect.signature(target).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return kwargs
    return {k: v for k, v in kwargs.items() if k in params}


def build_model(model_cfg: DictConfig, data: DataBundle) -> torch.nn.Module:
    """``instantiate(cfg.model, num_classes=…, in_channels=…, image_size=…)`` from the dataset."""
    target = get_class(model_cfg._target_)
    kwargs = _accepted(target, data.model_kwargs())
    log.info("model: %s (%s) with %s", model_cfg.name, model_cfg._target_, kwargs)
    try:
        return instantiate(model_cfg, **kwargs, _convert_="all")
    except Exception as err:
        raise _unwrap(err, ConfigError) from None


_FUSED_DEVICES = {"cpu", "cuda"}  # devices every fused optimizer kernel supports


def check_fused(target: str) -> None:
    """Raise :class:`ConfigError` if the optimizer class ``target`` has no fused kernel."""
    if "fused" not in inspect.signature(get_class(target)).parameters:
        raise ConfigError(
            f"trainer.optimizer_impl=fused is invalid: {target} has no fused kernel in "
            f"torch {torch.__version__}; use auto, foreach or for_loop"
        )


def build_optimizer(
    opt_cfg: DictConfig, model: torch.nn.Module, impl: str = "auto"
) -> torch.optim.Optimizer:
    """The optimizer over trainable parameters (weight decay on all of them, as in the studies).

    ``impl`` picks torch's kernel: ``fused`` (one kernel for all parameters; SGD, Adam,
    AdamW, Adagrad on CPU and CUDA), ``foreach`` (batched per-parameter ops),
    ``for_loop`` (one op per parameter) or ``auto`` — fused where the optimizer and the
    parameters' device have it, else torch's default. Fused and unfused results differ
    only in float rounding; on this project's CPU fused cuts ResNet-18's SGD step from
    13 to 6 ms and Adam's from 24 to 8 ms (benchmarks/README.md).
    """
    log.info("optimizer: %s", opt_cfg._target_)
    params = [p for p in model.parameters() if p.requires_grad]
    factory = instantiate(opt_cfg, _convert_="all")
    accepted = inspect.signature(factory.func).parameters
    kwargs: dict[str, Any] = {}
    if impl == "auto":
        devices = {p.device.type for p in params}
        floating = all(p.is_floating_point() for p in params)
        if "fused" in accepted and floating and devices <= _FUSED_DEVICES:
            kwargs["fused"] = True
    elif impl == "fused":
        check_fused(opt_cfg._target_)
        kwargs["fused"] = True
    elif "foreach" in accepted:
        kwargs["foreach"] = impl == "foreach"
    return factory(params, **kwargs)


def build_scheduler(
    sched_cfg: DictConfig, optimizer: torch.optim.Optimizer, max_epochs: int, steps_per_epoch: int
) -> Any | None:
    """The torch scheduler of ``sched_cfg`` (``None`` for ``none``), sized to the run."""
    if sched_cfg._target_ is None:
        return None
    log.info("scheduler: %s (every %s)", sched_cfg._target_, sched_cfg.interval)
    node = OmegaConf.to_container(sched_cfg, resolve=True)
    for key in _SCHEDULER_RUNNER_KEYS:
        node.pop(key, None)
    lr = optimizer.param_groups[0]["lr"]
    name = sched_cfg.name
    if name == "cosine" and not node.get("T_max"):
        node["T_max"] = max_epochs
    if name == "onecycle":
        node["max_lr"] = node.get("max_lr") or lr
        node["total_steps"] = max_epochs * steps_per_epoch
    if name == "cyclic":
        node["max_lr"] = node.get("max_lr") or lr
        node["step_size_up"] = node.get("step_size_up") or 2 * steps_per_epoch
    if name == "plateau":
        node["mode"] = _mode(sched_cfg.monitor, sched_cfg.mode)
    return instantiate(node)(optimizer)


def _mode(monitor: str, mode: str) -> str:
    if mode != "auto":
        return mode
    return "min" if monitor.endswith("loss") else "max"


class Warmup:
    """Linear learning-rate warm-up over the first ``steps`` optimizer steps.

    Around each step it scales every group's scheduled lr by a factor rising from
    ``start_factor`` to 1, then puts the scheduled lr back, so the main scheduler
    never sees the warm-up values.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, steps: int, start_factor: float) -> None:
        self.optimizer, self.steps, self.start = optimizer, steps, start_factor
        self._saved: list[float] | None = None

    def factor(self, step: int) -> float:
        if step >= self.steps:
            return 1.0
        return self.start + (1.0 - self.start) * step / self.steps

    def apply(self, step: int) -> None:
        if step >= self.steps:
            return
        self._saved = [g["lr"] for g in self.optimizer.param_groups]
        for g in self.optimizer.param_groups:
            g["lr"] = g["lr"] * self.factor(step)

    def restore(self) -> None:
        if self._saved is not None:
            for g, lr in zip(self.optimizer.param_groups, self._saved):
                g["lr"] = lr
            self._saved = None


def monitor_mode(monitor: str, mode: str = "auto") -> str:
    """min for losses, max for accuracies/F1 when ``mode`` is auto."""
    return _mode(monitor, mode)


def _unwrap(err: Exception, wrap: type[Exception] | None = None) -> Exception:
    """Hydra's InstantiationException hides our own errors; dig them out."""
    from runner.errors import RunnerError

    seen = err
    while seen is not None:
        if isinstance(seen, RunnerError):
            return seen
        seen = seen.__cause__ or seen.__context__
    if wrap is not None and isinstance(err.__cause__ or err, (ValueError, TypeError)):
        return wrap(str(err.__cause__ or err))
    return err

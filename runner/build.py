"""Build, then run: the one place that turns the config into objects, logging each.

:func:`build_run` makes everything one run trains with — optimizer, scheduler, warm-up,
EMA, loss, scaler, loaders and callbacks — and hands them to the loop
(:class:`runner.engine.Loop`), which never reads the config. Models and datasets come
from their registries (:mod:`runner.zoo`, :mod:`runner.data.registry`); optimizers and
schedulers are the torch classes their groups name (``_target_``), checked to be such
classes before they are called (:func:`runner.registry.resolve_class`); nothing is built
with ``hydra.utils.instantiate``.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass, replace
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from runner.callbacks import Callback, Checkpointing, EarlyStopping, MetricsCSV
from runner.data.base import DataBundle
from runner.data.loader import BatchLoader, LoaderOptions
from runner.data.mixing import build_mixer
from runner.engine import Loop
from runner.errors import ConfigError
from runner.parts import LoopSettings, RunParts
from runner.rundir import RunDir

log = logging.getLogger(__name__)

# Keys of the scheduler group that belong to the runner, not to torch's constructor.
SCHEDULER_RUNNER_KEYS = ("name", "interval", "warmup_epochs", "warmup_start_factor", "monitor")
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "16-mixed": torch.float16}
FUSED_DEVICES = {"cpu", "cuda"}  # devices every fused optimizer kernel supports


def build_data(cfg: DictConfig) -> DataBundle:
    """The dataset of ``cfg.dataset``, split with ``trainer.seed``; with
    ``model.preprocessing=weights``, sized and normalised as the model's weights were
    (:mod:`runner.hub.preprocess`; it writes the size it sets into ``cfg.dataset``)."""
    from runner.data.registry import build_data as from_registry
    from runner.hub import preprocess

    following = preprocess.follow_weights(cfg)
    data = from_registry(cfg.dataset, seed=int(cfg.trainer.seed))
    return preprocess.apply(following, data) if following is not None else data


def build_model(cfg: DictConfig, data: DataBundle) -> torch.nn.Module:
    """The model of ``cfg.model`` with ``num_classes``/``in_channels``/... from ``data``,
    and any weights its family sets from the training data (``data_init``, once, logged)."""
    from runner import zoo

    model = zoo.build_model(cfg.model, data.model_kwargs())
    zoo.init_from_data(str(cfg.model.family), model, data)
    return model


@dataclass
class BuiltRun:
    """What :func:`build_run` returns: the loop, the callback that tracks the best epoch,
    how evaluation batches are made (for the test pass after training), and the precision
    and memory format ``auto`` resolved to (:mod:`runner.precision`)."""

    loop: Loop
    checkpointing: Checkpointing
    eval_options: LoaderOptions
    precision: str = "32"
    channels_last: bool = False


def build_run(
    cfg: DictConfig,
    data: DataBundle,
    model: torch.nn.Module,
    device: torch.device,
    run: RunDir,
    extra_callbacks: list[Callback] = (),
) -> BuiltRun:
    """Everything the loop needs, built from ``cfg`` (callbacks: metrics.csv, ``extra``,
    early stopping, then checkpointing, which must come last)."""
    from runner.precision import resolve

    t = cfg.trainer
    precision, channels_last = resolve(t, device, data.kind, model)
    log.info("precision %s (trainer.precision=%s), channels_last %s (trainer.channels_last=%s)",
             precision, t.precision, channels_last, t.channels_last)  # fmt: skip
    memory = torch.channels_last if channels_last else torch.preserve_format
    model = model.to(device, memory_format=memory)
    set_batchnorm(model, t.bn_momentum, t.bn_eps)
    eval_opts = LoaderOptions(int(t.eval_batch_size), device, channels_last=channels_last)
    parts = build_parts(cfg, data, model, device, eval_opts, precision)
    config = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    callbacks = build_callbacks(cfg, data, run, config, list(extra_callbacks))
    log.info("callbacks: %s", ", ".join(type(cb).__name__ for cb in callbacks))
    loop = Loop(parts, loop_settings(cfg, data), callbacks)
    return BuiltRun(loop, callbacks[-1], eval_opts, precision, channels_last)


def build_parts(
    cfg: DictConfig,
    data: DataBundle,
    model: torch.nn.Module,
    device: torch.device,
    eval_opts: LoaderOptions,
    precision: str | None = None,
) -> RunParts:
    """Loaders, optimizer, scheduler, warm-up, EMA, loss, scaler and batch mixer of
    ``model`` (already on ``device``, in its memory format); ``precision``: the resolved
    ``trainer.precision`` (None: the setting itself, which must not be auto)."""
    t = cfg.trainer
    precision = str(t.precision) if precision is None else precision
    train_opts = replace(
        eval_opts,
        batch_size=int(t.batch_size),
        train=True,
        seed=int(t.seed),
        limit_batches=int(t.limit_train_batches),
    )
    val_opts = replace(eval_opts, limit_batches=int(t.limit_eval_batches))
    train_loader = BatchLoader(data.train, data, train_opts)
    from runner.finetune import param_groups

    groups = param_groups(cfg, model)
    optimizer = build_optimizer(cfg.optimizer, model, str(t.optimizer_impl), groups)
    # schedules count optimizer steps: one per accumulate_grad_batches batches
    steps = -(-len(train_loader) // int(t.accumulate_grad_batches))
    scheduler = build_scheduler(cfg.scheduler, optimizer, int(t.max_epochs), steps)
    warmup_steps = int(round(cfg.scheduler.warmup_epochs * steps))
    start = cfg.scheduler.warmup_start_factor
    warmup = Warmup(optimizer, warmup_steps, start) if warmup_steps else None
    return RunParts(
        model=model,
        forward_model=_forward_model(model, device, compile_on(t.compile, device)),
        optimizer=optimizer,
        scheduler=scheduler,
        warmup=warmup,
        ema=build_ema(model, float(t.ema_decay)),
        criterion=build_loss(t, data, device),
        scaler=torch.amp.GradScaler(device.type, enabled=precision == "16-mixed"),
        autocast_dtype=AUTOCAST_DTYPES.get(precision),
        train_loader=train_loader,
        val_loader=BatchLoader(data.val, data, val_opts),
        device=device,
        mixer=_mixer(t, data),
    )


def _mixer(t: DictConfig, data: DataBundle) -> Any:
    mixer = build_mixer(t, data.kind, int(t.seed))
    if mixer is not None:
        log.info("batch mixing: %s", mixer)
    return mixer


def loop_settings(cfg: DictConfig, data: DataBundle) -> LoopSettings:
    """The plain values the loop reads."""
    t = cfg.trainer
    tta = str(t.tta) if data.kind == "image" else "none"
    if str(t.tta) != tta:
        log.warning("trainer.tta=%s ignored: it transforms images; data: %s", t.tta, data.kind)
    elif tta != "none":
        log.info("test-time augmentation: %s (validation and test)", tta)
    plateau = cfg.scheduler.name == "plateau"
    return LoopSettings(
        max_epochs=int(t.max_epochs),
        num_classes=data.num_classes,
        grad_clip=float(t.grad_clip),
        divergence_check=bool(t.divergence_check),
        log_every_n_steps=int(t.log_every_n_steps),
        progress_bar=t.progress_bar,
        tta=tta,
        scheduler_per_step=str(cfg.scheduler.interval) == "step",
        plateau_monitor=str(cfg.scheduler.monitor) if plateau else None,
        accumulate_grad_batches=int(t.accumulate_grad_batches),
    )


def build_callbacks(
    cfg: DictConfig, data: DataBundle, run: RunDir, config: dict[str, Any], extra: list[Callback]
) -> list[Callback]:
    """metrics.csv, the ``extra`` callbacks, early stopping, the time limit,
    checkpointing (last)."""
    from runner import checkpoint
    from runner.time_limit import TimeLimit, parse_duration

    t = cfg.trainer
    callbacks: list[Callback] = [MetricsCSV(run.write_metrics), *extra]
    stopping = t.early_stopping
    if stopping.enabled:
        callbacks.append(
            EarlyStopping(
                str(stopping.monitor),
                str(stopping.mode),
                int(stopping.patience),
                float(stopping.min_delta),
            )
        )

    budget = parse_duration(t.max_time)
    if budget is not None:
        log.info("time limit: %g s (trainer.max_time=%s)", budget, t.max_time)
        callbacks.append(TimeLimit(budget))

    def payload(loop: Loop) -> dict[str, Any]:
        return checkpoint.payload(loop, loop.callbacks, config, data)

    files = checkpoint.CheckpointFiles.of(run, str(t.save))
    callbacks.append(Checkpointing(str(t.monitor), files, payload))
    return callbacks


def compile_on(setting: Any, device: torch.device) -> bool:
    """``trainer.compile``: true | false | auto (compile on CUDA only, where it pays off
    and a compiler toolchain is part of the install)."""
    text = str(setting).lower()
    return text == "true" or (text == "auto" and device.type == "cuda")


def _forward_model(model: torch.nn.Module, device: torch.device, compile: bool) -> Any:
    """What the training step calls: DistributedDataParallel under torchrun, compiled
    with ``trainer.compile``."""
    from runner.distributed import wrap

    wrapped = wrap(model, device)
    if compile:
        log.info("torch.compile: the first steps compile the model")
        return torch.compile(wrapped)
    return wrapped


def build_loss(t: DictConfig, data: DataBundle, device: torch.device) -> torch.nn.Module:
    """Cross-entropy with ``trainer.label_smoothing`` and ``trainer.class_weights``."""
    weights = class_weights(t.class_weights, data)
    log.info(
        "loss: cross-entropy (label smoothing %s, class weights %s)",
        t.label_smoothing,
        "none" if weights is None else [round(w, 4) for w in weights.tolist()],
    )
    return torch.nn.CrossEntropyLoss(
        weight=None if weights is None else weights.to(device),
        label_smoothing=float(t.label_smoothing),
    )


def class_weights(setting: Any, data: DataBundle) -> torch.Tensor | None:
    """Per-class loss weights: None | balanced (n_samples / (n_classes * count), as
    scikit-learn's "balanced") | a list with one weight per class."""
    if setting is None:
        return None
    if setting == "balanced":
        counts = torch.bincount(data.train.y, minlength=data.num_classes).float()
        return len(data.train.y) / (data.num_classes * counts.clamp(min=1))
    weights = torch.tensor([float(w) for w in setting], dtype=torch.float32)
    if len(weights) != data.num_classes:
        raise ConfigError(
            f"trainer.class_weights lists {len(weights)} weights but the dataset has "
            f"{data.num_classes} classes ({', '.join(data.classes)}): list one per class"
        )
    present = torch.bincount(data.train.y, minlength=data.num_classes) > 0
    if not bool((weights[present] > 0).any()):
        raise ConfigError(
            f"trainer.class_weights={list(setting)} gives weight 0 to every class in the "
            "training split: the loss would be undefined; give some class a weight > 0"
        )
    return weights


def build_ema(model: torch.nn.Module, decay: float) -> Any:
    """torch's exponential moving average of the weights and buffers (BatchNorm statistics
    included), or None for ``decay`` 0: the first update copies the weights, each later
    one moves the average by ``1 - decay`` towards them."""
    if decay <= 0:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    log.info("EMA of the weights, decay %s", decay)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
    return ema.eval().requires_grad_(False)


def set_batchnorm(model: torch.nn.Module, momentum: float | None, eps: float | None) -> None:
    """Override every BatchNorm layer's ``momentum``/``eps`` (``None`` keeps the model's).

    Fast-training recipes use heavier running-statistics updates than torch's 0.1 (airbench:
    0.4 in torch's convention) so the statistics keep up with few, large steps.
    """
    if momentum is None and eps is None:
        return
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        log.warning("trainer.bn_momentum/bn_eps ignored: the model has no BatchNorm layer")
    for module in norms:
        if momentum is not None:
            module.momentum = float(momentum)
        if eps is not None:
            module.eps = float(eps)


def optimizer_class(target: str) -> type:
    """The optimizer class ``optimizer._target_`` names: a torch optimizer class or one of
    the runner's own (:data:`runner.optim.RUNNER_OPTIMIZERS`); anything else is refused."""
    from runner.optim import RUNNER_OPTIMIZERS
    from runner.registry import resolve_class

    if str(target) in RUNNER_OPTIMIZERS:
        return RUNNER_OPTIMIZERS[str(target)]
    return resolve_class(target, torch.optim.Optimizer, "torch optimizer", "optimizer._target_")


def scheduler_class(target: str) -> type:
    """The torch lr scheduler class ``scheduler._target_`` names (anything else is refused)."""
    from runner.registry import resolve_class

    bases = (torch.optim.lr_scheduler.LRScheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    return resolve_class(target, bases, "torch lr scheduler", "scheduler._target_")


def _kwargs(node: DictConfig) -> dict[str, Any]:
    """A group's keyword arguments for its torch class: plain values, ``_target_`` and
    ``_partial_`` dropped."""
    values = OmegaConf.to_container(node, resolve=True, enum_to_str=True)
    return {k: v for k, v in values.items() if k not in ("_target_", "_partial_")}


def check_fused(target: str) -> None:
    """Raise :class:`ConfigError` if the optimizer class ``target`` has no fused kernel."""
    if "fused" not in inspect.signature(optimizer_class(target)).parameters:
        raise ConfigError(
            f"trainer.optimizer_impl=fused is invalid: {target} has no fused kernel in "
            f"torch {torch.__version__}; use auto, foreach or for_loop"
        )


def build_optimizer(
    opt_cfg: DictConfig,
    model: torch.nn.Module,
    impl: str = "auto",
    param_groups: list[dict[str, Any]] | None = None,
) -> torch.optim.Optimizer:
    """The optimizer over trainable parameters (weight decay on all of them, as in the studies),
    or over ``param_groups`` — fine-tuning's groups with their own learning rates
    (:func:`runner.finetune.param_groups`; frozen parameters included, see there).

    ``impl`` picks torch's kernel: ``fused`` (one kernel for all parameters; SGD, Adam,
    AdamW, Adagrad on CPU and CUDA), ``foreach`` (batched per-parameter ops),
    ``for_loop`` (one op per parameter) or ``auto`` — fused where the optimizer and the
    parameters' device have it, else torch's default. Fused and unfused results differ
    only in float rounding; on this project's CPU fused cuts ResNet-18's SGD step from
    13 to 6 ms and Adam's from 24 to 8 ms (benchmarks/README.md).
    """
    if param_groups is None:
        params = [p for p in model.parameters() if p.requires_grad]
    else:
        params = [p for group in param_groups for p in group["params"]]
    cls = optimizer_class(opt_cfg._target_)
    accepted = inspect.signature(cls).parameters
    kwargs: dict[str, Any] = {}
    if impl == "auto":
        devices = {p.device.type for p in params}
        floating = all(p.is_floating_point() for p in params)
        if "fused" in accepted and floating and devices <= FUSED_DEVICES:
            kwargs["fused"] = True
    elif impl == "fused":
        check_fused(opt_cfg._target_)
        kwargs["fused"] = True
    elif "foreach" in accepted:
        kwargs["foreach"] = impl == "foreach"
    log.info(
        "optimizer: %s (lr %s, %s)",
        opt_cfg._target_,
        opt_cfg.lr,
        "fused" if kwargs.get("fused") else impl,
    )
    return cls(params if param_groups is None else param_groups, **_kwargs(opt_cfg), **kwargs)


def build_scheduler(
    sched_cfg: DictConfig, optimizer: torch.optim.Optimizer, max_epochs: int, steps_per_epoch: int
) -> Any | None:
    """The torch scheduler of ``sched_cfg`` (``None`` for ``none``), sized to the run."""
    if sched_cfg._target_ is None:
        log.info("scheduler: none (constant lr)")
        return None
    cls = scheduler_class(sched_cfg._target_)
    node = _kwargs(sched_cfg)
    for key in SCHEDULER_RUNNER_KEYS:
        node.pop(key, None)
    lrs = [g["lr"] for g in optimizer.param_groups]
    name = sched_cfg.name
    if name == "cosine" and not node.get("T_max"):
        node["T_max"] = max_epochs
    if name == "onecycle":
        node["max_lr"] = _per_group(node.get("max_lr") or lrs[0], lrs)
        node["total_steps"] = max_epochs * steps_per_epoch
    if name == "linear" and not node.get("total_iters"):
        per_step = str(sched_cfg.interval) == "step"
        node["total_iters"] = max_epochs * (steps_per_epoch if per_step else 1)
    if name == "cyclic":
        node["max_lr"] = _per_group(node.get("max_lr") or lrs[0], lrs)
        node["base_lr"] = _per_group(node["base_lr"], lrs)
        node["step_size_up"] = node.get("step_size_up") or 2 * steps_per_epoch
    if name == "plateau":
        from runner.metrics import resolve_mode

        node["mode"] = resolve_mode(str(sched_cfg.monitor), str(sched_cfg.mode))
    log.info("scheduler: %s (every %s)", sched_cfg._target_, sched_cfg.interval)
    return cls(optimizer, **node)


def _per_group(value: float, lrs: list[float]) -> float | list[float]:
    """A scheduler's lr setting for each parameter group: ``value`` for the first group,
    scaled for the others by their lr relative to the first's, so discriminative learning
    rates keep their ratios (one group: ``value`` itself)."""
    if len(lrs) == 1:
        return value
    return [value * lr / lrs[0] for lr in lrs]


class Warmup:
    """Linear learning-rate warm-up over the first ``steps`` optimizer steps.

    Around each step it scales every group's scheduled lr by a factor rising from
    ``start_factor`` to 1, then puts the scheduled lr back, so the main scheduler never
    sees the warm-up values. Not torch's ``LinearLR`` + ``SequentialLR``: those need one
    stepping interval for both, but the warm-up counts optimizer steps while StepLR,
    cosine (T_max in epochs), MultiStepLR and ReduceLROnPlateau (which SequentialLR
    cannot hold at all) step per epoch; and SequentialLR would delay the main schedule
    by the warm-up instead of overlapping it, changing every existing schedule.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, steps: int, start_factor: float) -> None:
        self.optimizer, self.steps, self.start = optimizer, steps, start_factor
        self._saved: list[float] | None = None
        log.info("warm-up: %d steps from %s x lr", steps, start_factor)

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

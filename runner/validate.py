"""Range checks run before any work; types and key names are checked by the schemas."""

from __future__ import annotations

import re

from omegaconf import DictConfig

from runner.errors import ConfigError

PRECISIONS = ("32", "bf16", "16-mixed")
OPTIMIZER_IMPLS = ("auto", "fused", "foreach", "for_loop")
TTAS = ("none", "flip")
MONITORS = ("val_loss", "val_acc", "val_macro_f1", "train_loss", "train_acc")


def _check(ok: bool, key: str, value: object, rule: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is invalid: {rule}")


def validate(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` naming the first out-of-range value and the fix."""
    _reject_added_keys(cfg, "")
    t = cfg.trainer
    _check(t.max_epochs > 0, "trainer.max_epochs", t.max_epochs, "must be a positive integer")
    _check(t.batch_size > 0, "trainer.batch_size", t.batch_size, "must be a positive integer")
    _check(t.eval_batch_size > 0, "trainer.eval_batch_size", t.eval_batch_size, "must be > 0")
    _check(
        str(t.precision) in PRECISIONS,
        "trainer.precision",
        t.precision,
        f"valid values: {', '.join(PRECISIONS)}",
    )
    _check(
        bool(re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", t.device)),
        "trainer.device",
        t.device,
        "valid values: auto, cpu, cuda, cuda:N, mps",
    )
    _check(t.monitor in MONITORS, "trainer.monitor", t.monitor, f"valid: {', '.join(MONITORS)}")
    es = t.early_stopping
    _check(
        es.monitor in MONITORS,
        "trainer.early_stopping.monitor",
        es.monitor,
        f"valid: {', '.join(MONITORS)}",
    )
    _check(
        es.mode in ("auto", "min", "max"),
        "trainer.early_stopping.mode",
        es.mode,
        "valid values: auto, min, max",
    )
    _check(es.patience >= 0, "trainer.early_stopping.patience", es.patience, "must be >= 0")
    _check(es.min_delta >= 0, "trainer.early_stopping.min_delta", es.min_delta, "must be >= 0")
    _check(
        t.limit_train_batches >= 0,
        "trainer.limit_train_batches",
        t.limit_train_batches,
        "must be >= 0 (0 = all batches)",
    )
    _check(t.num_threads >= 0, "trainer.num_threads", t.num_threads, "must be >= 0 (0 = auto)")
    _check(
        0 <= t.label_smoothing < 1,
        "trainer.label_smoothing",
        t.label_smoothing,
        "must be in [0, 1)",
    )
    _check(t.grad_clip >= 0, "trainer.grad_clip", t.grad_clip, "must be >= 0 (0 = off)")
    _check(
        t.class_weights is None
        or t.class_weights == "balanced"
        or not isinstance(t.class_weights, str),
        "trainer.class_weights",
        t.class_weights,
        "use null, balanced or a list of per-class weights",
    )
    _check(
        t.optimizer_impl in OPTIMIZER_IMPLS,
        "trainer.optimizer_impl",
        t.optimizer_impl,
        f"valid values: {', '.join(OPTIMIZER_IMPLS)}",
    )
    if t.optimizer_impl == "fused":
        from runner.build import check_fused

        check_fused(cfg.optimizer._target_)
    _check(
        0 <= t.ema_decay < 1,
        "trainer.ema_decay",
        t.ema_decay,
        "must be in [0, 1): 0 = off, e.g. 0.999 for an average over the last ~1000 steps",
    )
    _check(t.tta in TTAS, "trainer.tta", t.tta, f"valid values: {', '.join(TTAS)}")
    _check(
        t.bn_momentum is None or 0 <= t.bn_momentum <= 1,
        "trainer.bn_momentum",
        t.bn_momentum,
        "must be null (keep the model's) or in [0, 1] (torch convention: weight of the new batch)",
    )
    _check(
        t.bn_eps is None or t.bn_eps > 0,
        "trainer.bn_eps",
        t.bn_eps,
        "must be null (keep the model's) or > 0",
    )
    _validate_optimizer(cfg.optimizer)
    _validate_scheduler(cfg.scheduler)
    _validate_model(cfg.model)
    _validate_dataset(cfg.dataset)


def _reject_added_keys(node: DictConfig, prefix: str) -> None:
    """``+group.key=value`` slips past struct mode; refuse keys the schema does not define."""
    import dataclasses

    from omegaconf import OmegaConf

    schema = OmegaConf.get_type(node)
    if schema is not None and dataclasses.is_dataclass(schema):
        fields = {f.name for f in dataclasses.fields(schema)}
        extra = [k for k in node if k not in fields and k != "hydra"]
        if extra:
            raise ConfigError(
                f"unknown key {prefix}{extra[0]}; valid keys: {', '.join(sorted(fields))}"
            )
    for key in node:
        child = node._get_node(key)
        if isinstance(child, DictConfig) and not child._is_none() and not child._is_missing():
            _reject_added_keys(child, f"{prefix}{key}.")


def _validate_optimizer(opt: DictConfig) -> None:
    _check(opt.lr > 0, "optimizer.lr", opt.lr, "the learning rate must be > 0 (e.g. 1e-3)")
    _check(opt.weight_decay >= 0, "optimizer.weight_decay", opt.weight_decay, "must be >= 0")
    if "momentum" in opt:
        _check(0 <= opt.momentum < 1, "optimizer.momentum", opt.momentum, "must be in [0, 1)")


def _validate_scheduler(s: DictConfig) -> None:
    _check(
        s.interval in ("epoch", "step"),
        "scheduler.interval",
        s.interval,
        "valid values: epoch, step",
    )
    _check(s.warmup_epochs >= 0, "scheduler.warmup_epochs", s.warmup_epochs, "must be >= 0")
    _check(
        0 < s.warmup_start_factor <= 1,
        "scheduler.warmup_start_factor",
        s.warmup_start_factor,
        "must be in (0, 1]",
    )
    if "gamma" in s:
        _check(s.gamma > 0, "scheduler.gamma", s.gamma, "must be > 0")
    if "step_size" in s:
        _check(s.step_size > 0, "scheduler.step_size", s.step_size, "must be a positive integer")
    if "monitor" in s:
        _check(
            s.monitor in MONITORS, "scheduler.monitor", s.monitor, f"valid: {', '.join(MONITORS)}"
        )


def _validate_model(m: DictConfig) -> None:
    if "dropout" in m:
        _check(0 <= m.dropout < 1, "model.dropout", m.dropout, "must be in [0, 1)")
    if "kernel_size" in m:
        _check(m.kernel_size > 0, "model.kernel_size", m.kernel_size, "must be a positive integer")
    if "filters" in m:
        _check(
            len(m.filters) > 0 and all(f > 0 for f in m.filters),
            "model.filters",
            list(m.filters),
            "list one positive channel count per conv block, e.g. [32, 64]",
        )
    if "pooling" in m and "filters" in m:  # CNN pooling (text models pool differently)
        _check(m.pooling in ("max", "avg"), "model.pooling", m.pooling, "valid values: max, avg")
    if "padding" in m:
        _check(
            m.padding in ("same", "valid"), "model.padding", m.padding, "valid values: same, valid"
        )
    if "init" in m:
        from models.layers import INITS

        _check(m.init in INITS, "model.init", m.init, f"valid values: {', '.join(INITS)}")
    if "activation" in m:
        from models.layers import ACTIVATIONS

        _check(
            m.activation in ACTIVATIONS,
            "model.activation",
            m.activation,
            f"valid values: {', '.join(ACTIVATIONS)}",
        )


def _validate_dataset(d: DictConfig) -> None:
    for key in ("val_fraction", "test_fraction"):
        if key in d:
            _check(0 <= d[key] < 1, f"dataset.{key}", d[key], "must be in [0, 1)")
    if "val_fraction" in d and "test_fraction" in d:
        total = d.val_fraction + d.test_fraction
        _check(
            total < 1,
            "dataset.val_fraction + dataset.test_fraction",
            total,
            "must leave a training share: the fractions must sum to less than 1",
        )
    _check(
        d.subset >= 0,
        "dataset.subset",
        d.subset,
        "must be >= 0 (0 = all; <= 1 a fraction; > 1 a count per class)",
    )
    for key in ("num_samples", "image_size", "channels", "num_classes"):
        if key in d:
            _check(d[key] > 0, f"dataset.{key}", d[key], "must be a positive integer")
    if "normalize" in d:
        valid = ("dataset", "half", "imagenet", "none")
        _check(d.normalize in valid, "dataset.normalize", d.normalize, f"valid: {', '.join(valid)}")

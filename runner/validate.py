"""Ranges and checks across keys, run before any work.

Key names, types and enumerated choices are checked while Hydra composes the config
(the schemas of :mod:`runner.schema`); what a type cannot express is checked here, and
every refusal names the key, the value and the rule.
"""

from __future__ import annotations

import dataclasses
import math
import re

from omegaconf import DictConfig, OmegaConf

from runner.errors import ConfigError


def _check(ok: bool, key: str, value: object, rule: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is invalid: {rule}")


def validate(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` naming the first out-of-range value and the fix."""
    _reject_added_keys(cfg, "")
    _reject_non_finite(cfg, "")
    _validate_trainer(cfg.trainer)
    _validate_classes(cfg)
    if str(cfg.trainer.optimizer_impl) == "fused":
        from runner.build import check_fused

        check_fused(cfg.optimizer._target_)
    _validate_optimizer(cfg.optimizer)
    _validate_own_groups(cfg)
    _validate_scheduler(cfg.scheduler)
    _validate_model(cfg.model)
    _validate_finetune(cfg.model, cfg.trainer)
    _validate_dataset(cfg.dataset)
    from runner import zoo

    zoo.check_model(cfg.model)  # the family's own check (e.g. an unknown model.arch)


def _validate_trainer(t: DictConfig) -> None:
    _check(t.max_epochs > 0, "trainer.max_epochs", t.max_epochs, "must be a positive integer")
    _check(t.batch_size > 0, "trainer.batch_size", t.batch_size, "must be a positive integer")
    _check(t.eval_batch_size > 0, "trainer.eval_batch_size", t.eval_batch_size, "must be > 0")
    _check(
        str(t.compile).lower() in ("auto", "true", "false"),
        "trainer.compile",
        t.compile,
        "must be auto (CUDA only), true or false",
    )
    _check(
        bool(re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", t.device)),
        "trainer.device",
        t.device,
        "valid values: auto, cpu, cuda, cuda:N, mps",
    )
    stopping = t.early_stopping
    _check(
        stopping.patience >= 0,
        "trainer.early_stopping.patience",
        stopping.patience,
        "must be >= 0",
    )
    _check(
        stopping.min_delta >= 0,
        "trainer.early_stopping.min_delta",
        stopping.min_delta,
        "must be >= 0",
    )
    for key in ("limit_train_batches", "limit_eval_batches", "num_threads"):
        _check(t[key] >= 0, f"trainer.{key}", t[key], "must be >= 0 (0 = all / auto)")
    _check(
        0 <= t.seed < 2**32,
        "trainer.seed",
        t.seed,
        "must be in [0, 2**32 - 1] (numpy's seed range), e.g. 42",
    )
    _check(t.log_every_n_steps > 0, "trainer.log_every_n_steps", t.log_every_n_steps, "must be > 0")
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
        str(t.progress_bar).lower() in ("auto", "true", "false"),
        "trainer.progress_bar",
        t.progress_bar,
        "valid values: auto, true, false",
    )
    _check(
        0 <= t.ema_decay < 1,
        "trainer.ema_decay",
        t.ema_decay,
        "must be in [0, 1): 0 = off, e.g. 0.999 for an average over the last ~1000 steps",
    )
    _check(
        t.bn_momentum is None or 0 <= t.bn_momentum <= 1,
        "trainer.bn_momentum",
        t.bn_momentum,
        "must be null (keep the model's) or in [0, 1] (torch convention: weight of the new batch)",
    )
    _check(t.bn_eps is None or t.bn_eps > 0, "trainer.bn_eps", t.bn_eps, "must be null or > 0")
    _check(
        str(t.channels_last).lower() in ("auto", "true", "false"),
        "trainer.channels_last",
        t.channels_last,
        "valid values: auto, true, false",
    )
    for key in ("mixup_alpha", "cutmix_alpha"):
        _check(t[key] >= 0, f"trainer.{key}", t[key], "must be >= 0 (0 = off)")
    for key in ("mix_switch_prob", "mix_prob"):
        _check(0 <= t[key] <= 1, f"trainer.{key}", t[key], "must be a probability in [0, 1]")
    _check(
        t.accumulate_grad_batches >= 1,
        "trainer.accumulate_grad_batches",
        t.accumulate_grad_batches,
        "must be a positive integer (1 = an optimizer step every batch)",
    )
    from runner.time_limit import parse_duration

    parse_duration(t.max_time)  # raises ConfigError naming the key
    _check(
        t.unfreeze_at_epoch >= 0,
        "trainer.unfreeze_at_epoch",
        t.unfreeze_at_epoch,
        "must be >= 0 (0 = never; k = every frozen parameter trains from epoch k)",
    )
    _check(
        t.backbone_lr_ratio > 0,
        "trainer.backbone_lr_ratio",
        t.backbone_lr_ratio,
        "must be > 0 (1 = one learning rate; e.g. 0.1: the feature stages at optimizer.lr / 10)",
    )
    _check(
        all(m > 0 for m in t.stage_lr_multipliers),
        "trainer.stage_lr_multipliers",
        list(t.stage_lr_multipliers),
        "list one positive multiple of optimizer.lr per feature stage, or [] for off",
    )
    _check(
        not len(t.stage_lr_multipliers) or t.backbone_lr_ratio == 1,
        "trainer.backbone_lr_ratio",
        t.backbone_lr_ratio,
        "set backbone_lr_ratio or stage_lr_multipliers, not both",
    )


def _reject_non_finite(node: DictConfig, prefix: str) -> None:
    """``inf`` or ``nan`` is never a setting (``optimizer.lr=inf`` would only diverge)."""
    for key in node:
        if key == "hydra":
            continue
        child = node._get_node(key)
        if isinstance(child, DictConfig):
            if not child._is_none() and not child._is_missing():
                _reject_non_finite(child, f"{prefix}{key}.")
            continue
        try:
            value = node[key]
        except Exception:  # an interpolation only Hydra resolves (run_dir), or ???
            continue
        values = list(value) if OmegaConf.is_list(value) else [value]
        for v in values:
            if isinstance(v, float) and not math.isfinite(v):
                _check(False, f"{prefix}{key}", value, "must be a finite number")


def _validate_classes(cfg: DictConfig) -> None:
    """Class weights and an optimizer/scheduler that are what their keys say."""
    weights = cfg.trainer.class_weights
    if weights is not None and weights != "balanced" and not isinstance(weights, str):
        listed = list(weights)
        _check(
            len(listed) > 0 and all(isinstance(w, (int, float)) for w in listed),
            "trainer.class_weights",
            listed,
            "list one number per class, e.g. [1.0, 2.5], or use null or balanced",
        )
        _check(
            all(w >= 0 for w in listed) and any(w > 0 for w in listed),
            "trainer.class_weights",
            listed,
            "weights must be >= 0 and at least one > 0 (all-zero or negative weights make "
            "the loss undefined or reward mistakes)",
        )
    from runner.build import optimizer_class, scheduler_class

    optimizer_class(cfg.optimizer._target_)
    if cfg.scheduler._target_ is not None:
        scheduler_class(cfg.scheduler._target_)


def _reject_added_keys(node: DictConfig, prefix: str) -> None:
    """``+group.key=value`` slips past struct mode; refuse keys the schema does not define."""
    schema = OmegaConf.get_type(node)
    if schema is not None and dataclasses.is_dataclass(schema):
        fields = {f.name for f in dataclasses.fields(schema)}
        extra = [k for k in node if k not in fields and k != "hydra"]
        if extra:
            from runner.suggest import closest

            close = [f"{prefix}{name}" for name in closest(extra[0], fields)]
            guess = f"did you mean {' or '.join(close)}? " if close else ""
            raise ConfigError(
                f"unknown key {prefix}{extra[0]}; {guess}valid keys: {', '.join(sorted(fields))}"
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
    for key in ("bias_lr", "head_lr"):
        if key in opt:
            _check(opt[key] > 0, f"optimizer.{key}", opt[key], "the learning rate must be > 0")
    if "sgd_momentum" in opt:
        _check(0 <= opt.sgd_momentum < 1, "optimizer.sgd_momentum", opt.sgd_momentum,
               "must be in [0, 1)")  # fmt: skip
    if "ns_steps" in opt:
        _check(1 <= opt.ns_steps < 100, "optimizer.ns_steps", opt.ns_steps,
               "Newton-Schulz iterations: a whole number in 1..99 (3-5 is usual)")  # fmt: skip


def _validate_own_groups(cfg: DictConfig) -> None:
    """An optimizer that makes its own parameter groups (MuonSGD) cannot take fine-tuning's
    learning-rate groups."""
    if "bias_lr" not in cfg.optimizer:
        return
    t = cfg.trainer
    _check(
        float(t.backbone_lr_ratio) == 1.0 and not len(t.stage_lr_multipliers),
        "trainer.backbone_lr_ratio / stage_lr_multipliers",
        [t.backbone_lr_ratio, list(t.stage_lr_multipliers)],
        f"{cfg.optimizer._target_} sets its own lr per kind of parameter (lr, bias_lr, "
        "head_lr): keep 1.0 / [] with it",
    )


def _validate_scheduler(s: DictConfig) -> None:
    _check(s.warmup_epochs >= 0, "scheduler.warmup_epochs", s.warmup_epochs, "must be >= 0")
    _check(
        0 < s.warmup_start_factor <= 1,
        "scheduler.warmup_start_factor",
        s.warmup_start_factor,
        "must be in (0, 1]",
    )
    for key, ok, rule in _SCHEDULER_RULES:
        if key in s:
            _check(ok(s[key]), f"scheduler.{key}", s[key], rule)
    if "milestones" in s:
        steps = list(s.milestones)
        _check(
            all(m > 0 for m in steps) and steps == sorted(set(steps)),
            "scheduler.milestones",
            steps,
            "list positive epochs in increasing order, e.g. [30, 60, 90]",
        )
    if "base_lr" in s and s.get("max_lr"):
        _check(
            s.base_lr < s.max_lr,
            "scheduler.base_lr",
            s.base_lr,
            f"must be below scheduler.max_lr ({s.max_lr})",
        )


# (key, test, rule) for every scheduler key with a range; 0 means "derived" where noted
_SCHEDULER_RULES = (
    ("gamma", lambda v: v > 0, "must be > 0"),
    ("step_size", lambda v: v > 0, "must be a positive integer"),
    ("T_max", lambda v: v >= 0, "must be >= 0 (0 = trainer.max_epochs)"),
    ("eta_min", lambda v: v >= 0, "must be >= 0"),
    ("max_lr", lambda v: v >= 0, "must be >= 0 (0 = optimizer.lr)"),
    ("base_lr", lambda v: v > 0, "must be > 0"),
    ("step_size_up", lambda v: v >= 0, "must be >= 0 (0 = two epochs of steps)"),
    ("pct_start", lambda v: 0 < v < 1, "must be in (0, 1): the share of the cycle spent rising"),
    ("div_factor", lambda v: v > 0, "must be > 0"),
    ("final_div_factor", lambda v: v > 0, "must be > 0"),
    ("factor", lambda v: 0 < v < 1, "must be in (0, 1): the lr is multiplied by it"),
    ("patience", lambda v: v >= 0, "must be >= 0 epochs"),
    ("threshold", lambda v: v >= 0, "must be >= 0"),
    ("min_lr", lambda v: v >= 0, "must be >= 0"),
    ("start_factor", lambda v: 0 < v <= 1, "must be in (0, 1]"),
    ("end_factor", lambda v: 0 <= v <= 1, "must be in [0, 1]"),
    ("total_iters", lambda v: v >= 0, "must be >= 0 (0 = the whole run)"),
)


def _validate_model(m: DictConfig) -> None:
    for key in ("dropout", "rnn_dropout", "embed_dropout"):
        if key in m:
            _check(0 <= m[key] < 1, f"model.{key}", m[key], "must be in [0, 1)")
    for key in ("kernel_size", "hidden_size", "embed_dim", "num_layers", "width", "se_reduction"):
        if key in m:
            _check(m[key] > 0, f"model.{key}", m[key], "must be a positive integer")
    if "filters" in m:
        _check(
            len(m.filters) > 0 and all(f > 0 for f in m.filters),
            "model.filters",
            list(m.filters),
            "list one positive channel count per conv block, e.g. [32, 64]",
        )
    if "fc_neurons" in m:
        _check(
            all(f > 0 for f in m.fc_neurons),
            "model.fc_neurons",
            list(m.fc_neurons),
            "list positive widths of the hidden fc layers, e.g. [512], or [] for none",
        )


def _validate_finetune(m: DictConfig, t: DictConfig) -> None:
    freeze = str(m.freeze).strip().lower() if "freeze" in m else "none"
    _check(
        freeze in ("none", "backbone") or freeze.isdigit(),
        "model.freeze",
        m.get("freeze"),
        "valid values: none, backbone, or N (the first N feature stages)",
    )
    if "input_size" in m:
        _check(m.input_size >= 0, "model.input_size", m.input_size, "must be >= 0 (0 = auto)")
    if t.unfreeze_at_epoch:
        _check(
            freeze not in ("none", "0"),
            "trainer.unfreeze_at_epoch",
            t.unfreeze_at_epoch,
            "there is nothing to unfreeze: set model.freeze (backbone or N)",
        )
        import os

        _check(
            int(os.environ.get("WORLD_SIZE", "1")) == 1,
            "trainer.unfreeze_at_epoch",
            t.unfreeze_at_epoch,
            "is not supported under torchrun (DistributedDataParallel registers the trainable "
            "parameters once); train the frozen and the unfrozen phase as two runs "
            "(the second with model.weights=<the first run>)",
        )
    uniform = t.backbone_lr_ratio == 1 and not len(t.stage_lr_multipliers)
    _check(
        uniform or "weights" in m,
        "trainer.backbone_lr_ratio",
        t.backbone_lr_ratio,
        f"the {m.family} family has no feature stages for discriminative learning rates",
    )


def _validate_dataset(d: DictConfig) -> None:
    for key in ("val_fraction", "test_fraction"):
        _check(0 <= d[key] < 1, f"dataset.{key}", d[key], "must be in [0, 1)")
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
    _check(d.folds >= 0 and d.folds != 1, "dataset.folds", d.folds, "must be 0 (off) or >= 2")
    if d.folds:
        _check(0 <= d.fold < d.folds, "dataset.fold", d.fold, f"must be in 0..{d.folds - 1}")
        _check(
            not d.subset,
            "dataset.subset",
            d.subset,
            "cannot be combined with dataset.folds (the folds divide the whole train + val)",
        )
    a = d.augment
    _check(0 <= a.policy_magnitude <= 30, "dataset.augment.policy_magnitude", a.policy_magnitude,
           "must be a bin in 0..30")  # fmt: skip
    _check(a.policy_ops >= 0, "dataset.augment.policy_ops", a.policy_ops, "must be >= 0")
    _check(0 <= a.random_erasing <= 1, "dataset.augment.random_erasing", a.random_erasing,
           "must be a probability in [0, 1]")  # fmt: skip
    _check(a.translate >= 0, "dataset.augment.translate", a.translate, "pixels: must be >= 0")
    _check(not (a.translate and a.crop_padding), "dataset.augment.translate", a.translate,
           "pads by reflection where crop_padding pads with zeros: set one of them, the "
           "other to 0")  # fmt: skip
    for key in ("num_samples", "image_size", "channels", "num_classes"):
        if key in d:
            _check(d[key] > 0, f"dataset.{key}", d[key], "must be a positive integer")
